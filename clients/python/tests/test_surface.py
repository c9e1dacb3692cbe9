"""The surface against the installed extension: one method per SQL function,
with the SQL function's argument names, in order; required arguments
positional-or-keyword, the ones with SQL defaults keyword-only."""

from __future__ import annotations

import inspect
from typing import Any

import psycopg

from pgbilling import AsyncBilling, Billing
from pgbilling._calls import BUILDERS

OPTIONS_FORMS = {"add_with_options": "billing_add", "deduct_with_options": "billing_deduct"}


def sql_functions(conn: psycopg.Connection[Any]) -> list[tuple[str, list[str], int]]:
    """(name, input argument names, how many have defaults) of every billing_* function
    in the extension's schema, trigger functions left out."""
    rows = conn.execute(
        """
        SELECT p.proname, p.pronargs, p.pronargdefaults,
               coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[], '{}')
          FROM pg_proc AS p
          JOIN pg_extension AS e ON e.extname = 'billing' AND p.pronamespace = e.extnamespace
         WHERE p.proname LIKE 'billing\\_%' AND p.prorettype <> 'trigger'::regtype
         ORDER BY p.proname, p.pronargs
        """
    ).fetchall()
    out = []
    for name, nargs, ndefaults, names, modes in rows:
        if modes:
            names = [n for n, m in zip(names, modes) if m in ("i", "b", "v")]
        out.append((name, list(names)[:nargs], ndefaults))
    return out


def method_for(name: str, args: list[str]) -> str:
    short = name.removeprefix("billing_")
    if args == ["options"]:
        return f"{short}_with_options"
    return short


def test_every_sql_function_has_a_method_with_its_arguments(conn: psycopg.Connection[Any]) -> None:
    functions = sql_functions(conn)
    covered = set()
    for name, args, ndefaults in functions:
        method = method_for(name, args)
        assert method in BUILDERS, f"{name}({', '.join(args)}) has no method {method}: add a builder to pgbilling/_calls.py"
        covered.add(method)
        params = inspect.signature(BUILDERS[method]).parameters
        assert list(params) == args, f"{method}: {list(params)} != SQL {args}"
        required = len(args) - ndefaults
        kinds = [p.kind for p in params.values()]
        assert kinds[:required] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * required, method
        assert kinds[required:] == [inspect.Parameter.KEYWORD_ONLY] * ndefaults, method
        assert all(params[a].default is None for a in args[required:]), method
        assert hasattr(Billing, method) and hasattr(AsyncBilling, method)
    assert covered == set(BUILDERS), f"methods without a SQL function: {set(BUILDERS) - covered}"
    assert len(functions) == len(BUILDERS) == 29
