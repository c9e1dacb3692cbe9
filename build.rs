//! Assembles the SQL statements the functions prepare (sql/statements/*.sql).
//!
//! Each file is one statement, headed by comments: its name, what it does,
//! `-- kind: read` (prepared read-only: it sees the calling statement's
//! snapshot) or `-- kind: write` (prepared as mutating: a fresh snapshot, so it
//! sees what a transaction we waited for wrote), and one `-- $N name type` line
//! per parameter, in order. A line `--@ include shared/NAME.sql` (optionally
//! `with VAR = EXPR, VAR2 = EXPR2`, replacing each `{VAR}` in the piece) takes a piece shared by
//! several statements, so each rule they share is written once; a piece may
//! take other pieces the same way.
//!
//! This writes `$OUT_DIR/statements.rs` (one `Statement` constant per file,
//! included by src/statements.rs) and the assembled statements to
//! `$OUT_DIR/statements/*.sql`, which `make lint` runs pgspot over. A header
//! that does not match the statement (a parameter used but not declared, or
//! declared but not used, an unknown type or kind) fails the build.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

const DIR: &str = "sql/statements";

/// SQL type name -> the constant src/statements.rs declares for it.
const TYPES: &[(&str, &str)] = &[
    ("text", "TEXT"),
    ("bigint", "INT8"),
    ("smallint", "INT2"),
    ("boolean", "BOOL"),
    ("numeric", "NUMERIC"),
    ("timestamptz", "TIMESTAMPTZ"),
    ("interval", "INTERVAL"),
    ("bigint[]", "INT8_ARRAY"),
    ("numeric[]", "NUMERIC_ARRAY"),
    ("text[]", "TEXT_ARRAY"),
];

struct Statement {
    name: String,
    write: bool,
    types: Vec<&'static str>,
    sql: String,
}

fn fail(file: &str, problem: impl std::fmt::Display) -> ! {
    panic!("{DIR}/{file}: {problem}");
}

fn piece(file: &str, directive: &str, depth: usize) -> String {
    if depth > 3 {
        fail(file, format!("pieces include each other too deep: {directive}"));
    }
    let rest = directive.trim_start_matches("--@ include").trim();
    let (path, binding) = match rest.split_once(" with ") {
        Some((path, binding)) => (path.trim(), Some(binding)),
        None => (rest, None),
    };
    let mut text = fs::read_to_string(Path::new(DIR).join(path))
        .unwrap_or_else(|e| fail(file, format!("cannot include {path}: {e}")));
    // `with A = x, B = y`: each expression may not itself contain ", "
    for binding in binding.into_iter().flat_map(|b| b.split(", ")) {
        let (var, expr) = binding.split_once('=').unwrap_or_else(|| fail(file, format!("bad include: {directive}")));
        let placeholder = format!("{{{}}}", var.trim());
        if !text.contains(&placeholder) {
            fail(file, format!("{path} has no {placeholder}"));
        }
        text = text.replace(&placeholder, expr.trim());
    }
    if let Some(left) = text.lines().filter(|l| !l.starts_with("--")).find(|l| l.contains('{') && l.contains('}')) {
        if let Some(start) = left.find('{') {
            let name = &left[start + 1..];
            if name.split('}').next().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_')) {
                fail(file, format!("{path}: a placeholder is not bound: {left}"));
            }
        }
    }
    // a piece may take other pieces; its comment lines are left out
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("--@ include") {
            out.push_str(&piece(file, line, depth + 1));
        } else if !line.starts_with("--") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn parse(file: &str, text: &str) -> Statement {
    let mut lines = text.lines().peekable();
    let name = lines
        .next()
        .and_then(|l| l.strip_prefix("-- "))
        .map(str::to_owned)
        .unwrap_or_else(|| fail(file, "the first line must be -- <name>"));
    if format!("{name}.sql") != file {
        fail(file, format!("named {name}, but the file is {file}"));
    }
    let mut write = None;
    let mut types = Vec::new();
    let mut sql = String::new();
    for line in lines {
        if let Some(kind) = line.strip_prefix("-- kind: ") {
            write = Some(match kind.trim() {
                "write" => true,
                "read" => false,
                other => fail(file, format!("kind is read or write, not {other}")),
            });
        } else if let Some(param) = line.strip_prefix("-- $") {
            let mut parts = param.splitn(3, ' ');
            let (n, _name, ty) = (parts.next(), parts.next(), parts.next());
            let n: usize = n.and_then(|n| n.parse().ok()).unwrap_or_else(|| fail(file, format!("bad parameter line: {line}")));
            if n != types.len() + 1 {
                fail(file, format!("parameter ${n} is out of order"));
            }
            let ty = ty.unwrap_or_else(|| fail(file, format!("parameter ${n} has no type")));
            let constant = TYPES
                .iter()
                .find(|(sql_type, _)| *sql_type == ty.trim())
                .map(|(_, c)| *c)
                .unwrap_or_else(|| fail(file, format!("unknown type {ty} (add it to build.rs)")));
            types.push(constant);
        } else if line.starts_with("--@ include") {
            sql.push_str(&piece(file, line, 1));
        } else if line.starts_with("--") && sql.is_empty() {
            // the description
        } else {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    let write = write.unwrap_or_else(|| fail(file, "no -- kind: line"));
    let sql = sql.trim().trim_end_matches(';').trim_end().to_owned();
    // every declared parameter is used, and no other
    let mut used = 0;
    let bytes = sql.as_bytes();
    for (i, _) in sql.match_indices('$') {
        let digits: String = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
        if let Ok(n) = digits.parse::<usize>() {
            used = used.max(n);
        }
    }
    if used != types.len() {
        fail(file, format!("the statement uses parameters up to ${used}, the header declares {}", types.len()));
    }
    Statement { name, write, types, sql }
}

fn main() {
    println!("cargo:rerun-if-changed={DIR}");
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let assembled = Path::new(&out).join("statements");
    let _ = fs::remove_dir_all(&assembled);
    fs::create_dir_all(&assembled).expect("OUT_DIR is writable");
    let mut files: Vec<String> = fs::read_dir(DIR)
        .expect("sql/statements exists")
        .map(|e| e.expect("readable").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".sql"))
        .collect();
    files.sort();
    for dir in [DIR.to_owned(), format!("{DIR}/shared")] {
        println!("cargo:rerun-if-changed={dir}");
    }
    let mut rust = String::from("// Generated by build.rs from sql/statements/*.sql: do not edit.\n");
    for file in &files {
        println!("cargo:rerun-if-changed={DIR}/{file}");
        let text = fs::read_to_string(Path::new(DIR).join(file)).expect("readable");
        let statement = parse(file, &text);
        if statement.sql.contains("\"#") {
            fail(file, "the statement contains \"#");
        }
        fs::write(assembled.join(file), format!("{};\n", statement.sql)).expect("OUT_DIR is writable");
        writeln!(
            rust,
            "/// sql/statements/{file}\npub const {}: Statement = Statement {{ name: {:?}, write: {}, args: &[{}], sql: r#\"{}\"# }};",
            statement.name.to_uppercase(),
            statement.name,
            statement.write,
            statement.types.join(", "),
            statement.sql
        )
        .unwrap();
    }
    if let Ok(shared) = fs::read_dir(format!("{DIR}/shared")) {
        for entry in shared {
            println!("cargo:rerun-if-changed={DIR}/shared/{}", entry.expect("readable").file_name().to_string_lossy());
        }
    }
    fs::write(Path::new(&out).join("statements.rs"), rust).expect("OUT_DIR is writable");
}
