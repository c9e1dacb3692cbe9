#!/usr/bin/env python3
"""Keeps the function definitions of an upgrade script equal to their sources.

An upgrade script (sql/billing--A--B.sql) is a hand-written delta: it alters
tables and creates what is new. A function whose definition changed is
re-created there with CREATE OR REPLACE FUNCTION, and that definition must be
the one in sql/*.sql, not a copy edited by hand. This script rewrites every
function definition of the script (CREATE OR REPLACE FUNCTION for a changed
one, CREATE FUNCTION for a new one, each with the COMMENT ON FUNCTION that
follows it) from the source file that defines the function.

    scripts/upgrade-functions.py sql/billing--0.2.0--0.3.0.sql          # rewrite
    scripts/upgrade-functions.py --check sql/billing--0.2.0--0.3.0.sql  # fail if stale (make lint)
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = re.compile(r"^CREATE (?:OR REPLACE )?FUNCTION ([\w@.]+)\(", re.M)


def skip_literal(text, i):
    """text[i] is a quote: the index after the closing quote ('' is an escaped quote)."""
    i += 1
    while True:
        j = text.index("'", i)
        if text.startswith("''", j):
            i = j + 2
            continue
        return j + 1


def statement_end(text, i):
    """The index after the ';' that ends the statement starting at i (quotes and
    dollar quotes respected)."""
    while i < len(text):
        c = text[i]
        if c == "'":
            i = skip_literal(text, i)
        elif c == "$":
            m = re.match(r"\$(\w*)\$", text[i:])
            if m:
                close = text.index(m.group(0), i + len(m.group(0)))
                i = close + len(m.group(0))
            else:
                i += 1
        elif c == "-" and text.startswith("--", i):
            i = text.index("\n", i)
        elif c == ";":
            return i + 1
        else:
            i += 1
    raise ValueError("statement does not end")


def blocks(text):
    """(name, arguments, start, end) of every function definition, with the
    COMMENT ON FUNCTION of the same function right after it."""
    out = []
    for m in HEAD.finditer(text):
        name = m.group(1)
        args_end = statement_end_paren(text, m.end() - 1)
        arguments = re.sub(r"\s+", " ", text[m.end():args_end - 1])
        end = statement_end(text, m.start())
        rest = text[end:]
        c = re.match(r"\s*COMMENT ON FUNCTION " + re.escape(name) + r"\(", rest)
        if c:
            end = statement_end(text, end + c.start())
        out.append((name, arguments, m.start(), end))
    return out


def statement_end_paren(text, i):
    """text[i] is '(': the index after its matching ')'."""
    depth = 0
    while True:
        c = text[i]
        if c == "'":
            i = skip_literal(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def sources():
    defs = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "sql", "*.sql"))):
        if os.path.basename(path).startswith("billing--"):
            continue
        text = open(path).read()
        for name, arguments, start, end in blocks(text):
            defs.setdefault((name, arguments), []).append(text[start:end])
    return defs


def rewrite(script_text, defs):
    out, last = [], 0
    for name, arguments, start, end in blocks(script_text):
        replace = script_text.startswith("CREATE OR REPLACE", start)
        found = defs.get((name, arguments))
        if not found:
            sys.exit(f"{name}({arguments}): no source in sql/*.sql defines it")
        if len(found) > 1:
            sys.exit(f"{name}({arguments}): defined more than once in sql/*.sql")
        out.append(script_text[last:start])
        out.append(found[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1) if replace else found[0])
        last = end
    out.append(script_text[last:])
    return "".join(out)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if not paths:
        sys.exit(__doc__)
    defs = sources()
    stale = False
    for path in paths:
        text = open(path).read()
        new = rewrite(text, defs)
        if new != text:
            if check:
                print(f"{path}: a CREATE OR REPLACE FUNCTION differs from its source in sql/; "
                      f"run scripts/upgrade-functions.py {path}")
                stale = True
            else:
                open(path, "w").write(new)
                print(f"{path}: rewritten from the sources")
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
