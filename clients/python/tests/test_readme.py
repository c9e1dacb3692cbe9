"""README's quick start, run as written (so the README cannot rot), and the
docs page's copy of it kept identical."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from pgbilling import Billing

from .conftest import connect

HERE = Path(__file__).resolve().parent.parent
README = HERE / "README.md"
DOCS_PAGE = HERE.parent.parent / "docs" / "clients" / "python.md"


def quick_start(markdown: str) -> tuple[str, str]:
    """The first python block after '## Quick start', and the text block after it."""
    section = markdown.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    output = re.search(r"```text\n(.*?)```", section, re.S)
    assert code and output, "the quick start has a python block and its output"
    return code.group(1), output.group(1)


def test_the_quick_start_runs_as_written(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = quick_start(README.read_text())
    assert 10 <= len(code.strip().splitlines()) <= 15
    database = fresh_database()
    monkeypatch.setenv("PGDATABASE", database)
    exec(compile(code, str(README), "exec"), {"__name__": "quick_start"})
    assert capsys.readouterr().out == expected
    with connect(database, autocommit=True) as conn:
        billing = Billing(conn)
        assert billing.power("alice") == Decimal("80.25")
        assert [(e.account_type, str(e.amount)) for e in billing.history("alice")] == [
            ("CHAT_DEC", "7.25"),
            ("CHAT_DEC", "12.5"),
            ("RECHARGE_INC", "100"),
        ]


def test_the_docs_page_has_the_same_quick_start() -> None:
    assert quick_start(DOCS_PAGE.read_text()) == quick_start(README.read_text())
