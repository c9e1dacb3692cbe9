//! The quick start of docs/clients/rust.md is the README's (which runs as the
//! crate's doctest), and the README names every public method of `Billing`.

use std::fs;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The first ```rust block after the heading `## Quick start`.
fn quick_start(markdown: &str) -> String {
    let section = markdown.split_once("\n## Quick start\n").expect("a Quick start section").1;
    let block = section.split_once("```rust\n").expect("a rust block").1;
    block.split_once("\n```").expect("the block's end").0.to_string()
}

#[test]
fn the_docs_page_shows_the_readmes_quick_start() {
    let readme = quick_start(&read("README.md"));
    assert!(readme.contains("Billing::new") && readme.contains("InsufficientPower"), "{readme}");
    assert_eq!(quick_start(&read("../../docs/clients/rust.md")), readme);
}

#[test]
fn the_readme_and_the_docs_page_map_every_method() {
    let source = read("src/billing.rs");
    let methods: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub async fn "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert!(methods.len() >= 25, "{methods:?}");
    for page in ["README.md", "../../docs/clients/rust.md"] {
        let text = read(page);
        for method in &methods {
            assert!(text.contains(&format!("`{method}(")), "{page} does not list {method}");
        }
    }
}
