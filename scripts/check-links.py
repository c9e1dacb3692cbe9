#!/usr/bin/env python3
"""Checks that every relative link in README.md, CONTRIBUTING.md, BENCHMARKS.md,
docs/**/*.md and each client's README (clients/*/README.md) resolves: the file exists and, for `#anchor`, a heading of that file has that
GitHub anchor. Run from the repository root: python3 scripts/check-links.py (make lint does)"""
import glob, os, re, sys

def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r'[^\w\- ]', '', s)          # GitHub drops punctuation but keeps _ and -
    return s.replace(' ', '-')

def anchors(path):
    seen, out = {}, set()
    in_code = False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r'#{1,6} (.*)', line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f'{base}-{n}')
            seen[base] = n + 1
    return out

files = (['README.md', 'CONTRIBUTING.md', 'BENCHMARKS.md'] + sorted(glob.glob('docs/**/*.md', recursive=True))
         + sorted(glob.glob('clients/*/README.md')))
bad = checked = 0
for f in files:
    text = open(f, encoding='utf-8').read()
    text = re.sub(r'```.*?```', '', text, flags=re.S)      # links inside code blocks are not links
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        checked += 1
        if not os.path.exists(dest):
            print(f'{f}: {target}: no file {dest}'); bad += 1
        elif anchor and (not dest.endswith('.md') or anchor not in anchors(dest)):
            print(f'{f}: {target}: no heading #{anchor} in {dest}'); bad += 1
print(f'{checked} links checked, {bad} broken')
sys.exit(1 if bad else 0)
