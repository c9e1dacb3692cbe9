"""Every SQLSTATE of docs/errors.md provoked for real and mapped to its class;
other database errors pass through unchanged."""

from __future__ import annotations

import pickle
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import IsolationLevel, sql

import pgbilling
from pgbilling import Billing, BillingError

from .conftest import APP_ROLE, NOBODY_ROLE

D = Decimal


def funded(conn: psycopg.Connection[Any], user: str, amount: int = 100) -> Billing:
    billing = Billing(conn)
    billing.add(user, amount, "RECHARGE_INC", "RECHARGE", "order-1")
    return billing


def check(error: BillingError, cls: type[BillingError], sqlstate: str) -> None:
    assert type(error) is cls
    assert error.sqlstate == sqlstate == cls.SQLSTATE
    assert isinstance(error.__cause__, psycopg.Error) and error.__cause__.sqlstate == sqlstate
    assert error.pgerror is error.__cause__
    assert error.message and sqlstate in str(error)


def test_pb001_insufficient_power_with_requested_and_available(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user, 90)
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        billing.deduct(user, 1000, "CHAT_DEC", "CHAT", "chat-8")
    e = raised.value
    check(e, pgbilling.InsufficientPower, "PB001")
    assert (e.requested, e.available, e.user_id, e.held) == (D(1000), D(90), user, None)
    assert e.detail == "Requested 1000, available 90."
    assert e.hint and "billing_add" in e.hint
    copy = pickle.loads(pickle.dumps(e))
    assert (type(copy), copy.requested, copy.available, copy.detail) == (pgbilling.InsufficientPower, D(1000), D(90), e.detail)
    # a settle above its hold: the part above the hold is what was requested
    hold = billing.hold(user, 10, "CHAT_DEC", "CHAT", "x")
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        billing.settle(hold.hold_id, D("100.5"))
    assert (raised.value.held, raised.value.requested, raised.value.available) == (D(10), D("90.5"), D(80))
    assert billing.power(user) == 80, "the hold stays as it was"


def test_pb001_hides_available_from_a_role_that_may_not_read_balances(connect_to: Any, conn: psycopg.Connection[Any], user: str) -> None:
    funded(conn, user, 7)
    app = Billing(connect_to(autocommit=True, user=APP_ROLE))
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        app.deduct(user, 1000, "CHAT_DEC", "CHAT", "x")
    assert (raised.value.requested, raised.value.available) == (D(1000), None)
    assert "7" not in (raised.value.detail or "")


def test_pb002_unknown_type(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    with pytest.raises(pgbilling.UnknownType) as raised:
        billing.deduct(user, 1, "RECHARGE_INC", "CHAT", "x")
    check(raised.value, pgbilling.UnknownType, "PB002")
    with pytest.raises(pgbilling.UnknownType):
        billing.price("claude", 10)


def test_pb003_idempotency_conflict(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    billing.deduct(user, 1, "CHAT_DEC", "CHAT", "x", idempotency_key="used")
    with pytest.raises(pgbilling.IdempotencyConflict) as raised:
        billing.deduct(user, 2, "CHAT_DEC", "CHAT", "x", idempotency_key="used")
    check(raised.value, pgbilling.IdempotencyConflict, "PB003")


def test_pb004_hold_state(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    hold = billing.hold(user, 5, "CHAT_DEC", "CHAT", "x")
    billing.release(hold.hold_id)
    with pytest.raises(pgbilling.HoldStateError) as raised:
        billing.settle(hold.hold_id, 1)
    check(raised.value, pgbilling.HoldStateError, "PB004")


def test_pb005_over_refund(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    spent = billing.deduct(user, 10, "CHAT_DEC", "CHAT", "x")
    billing.refund(spent.id, amount=4)
    with pytest.raises(pgbilling.OverRefund) as raised:
        billing.refund(spent.id, amount=7)
    check(raised.value, pgbilling.OverRefund, "PB005")
    assert raised.value.refundable == 6


def test_pb006_ledger_append_only(conn: psycopg.Connection[Any], user: str) -> None:
    funded(conn, user)
    with pytest.raises(pgbilling.LedgerAppendOnly) as raised, conn.transaction(force_rollback=True):
        with pgbilling.map_errors():
            conn.execute("UPDATE billing.account_log SET amount = 1 WHERE user_id = %s", (user,))
    check(raised.value, pgbilling.LedgerAppendOnly, "PB006")


def test_pb007_type_code_fixed(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(pgbilling.TypeCodeFixed) as raised, conn.transaction(force_rollback=True):
        with pgbilling.map_errors():
            conn.execute("UPDATE billing.account_types SET code = 'TALK_DEC' WHERE code = 'CHAT_DEC'")
    check(raised.value, pgbilling.TypeCodeFixed, "PB007")


def test_pb008_limit_exceeded_with_its_counters(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    scope = 'key:"sk-123"'  # quoted in the message, Rust-style: read back as it was
    billing.set_limit(user, scope, D("10.5"))
    billing.deduct(user, 6, "CHAT_DEC", "CHAT", "x", scopes=[scope])
    billing.hold(user, 2, "CHAT_DEC", "CHAT", "x", scopes=[scope])
    with pytest.raises(pgbilling.LimitExceeded) as raised:
        billing.deduct(user, 3, "CHAT_DEC", "CHAT", "x", scopes=[scope])
    e = raised.value
    check(e, pgbilling.LimitExceeded, "PB008")
    assert (e.scope, e.user_id, e.cap, e.spent, e.held, e.requested, e.period_end) == (
        scope, user, D("10.5"), D(6), D(2), D(3), None
    )
    billing.set_limit(user, "*", 1, period="day")
    with pytest.raises(pgbilling.LimitExceeded) as raised:
        billing.deduct(user, 2, "CHAT_DEC", "CHAT", "x")
    assert raised.value.scope == "*" and raised.value.period_end is not None
    assert raised.value.period_end.tzinfo is not None


def test_pb008_shows_only_requested_to_a_role_that_may_not_read_limits(connect_to: Any, conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    billing.set_limit(user, "key:a", 5)
    app = Billing(connect_to(autocommit=True, user=APP_ROLE))
    with pytest.raises(pgbilling.LimitExceeded) as raised:
        app.deduct(user, 6, "CHAT_DEC", "CHAT", "x", scopes=["key:a"])
    e = raised.value
    assert (e.detail, e.requested, e.cap, e.spent, e.held, e.period_end, e.scope) == (
        "requested=6", D(6), None, None, None, None, "key:a"
    )


ID_SEQUENCES = ["billing.account_log_id_seq", "billing.grants_id_seq", "billing.holds_id_seq",
                "billing.low_balance_events_id_seq"]


def distribution_state(conn: psycopg.Connection[Any]) -> Any:
    """What billing_distribute would change: the extensions, the id sequences (a range per
    node) and the billing tables' rows (it empties the local tables it distributes)."""
    extensions = conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY extname").fetchall()
    sequences = conn.execute(
        "SELECT s, pg_sequence_last_value(s::regclass) FROM unnest(%s::text[]) AS s ORDER BY s", (ID_SEQUENCES,)
    ).fetchall()
    names = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'billing'::regnamespace AND relkind = 'r' ORDER BY 1"
    ).fetchall()
    tables = [
        (name, conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("billing", name))).fetchall())
        for (name,) in names
    ]
    return extensions, sequences, tables


def test_pb009_citus_unavailable(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    billing = funded(conn, user)
    billing.hold(user, 5, "CHAT_DEC", "CHAT", "x")
    before = distribution_state(conn)
    assert not any(name == "citus" for name, _ in before[0])
    with pytest.raises(pgbilling.CitusUnavailable) as raised:
        billing.distribute()
    check(raised.value, pgbilling.CitusUnavailable, "PB009")
    assert raised.value.message == (
        "billing_distribute needs Citus, and the citus extension is not installed in this database"
    )
    assert raised.value.hint and "CREATE EXTENSION citus" in raised.value.hint
    assert distribution_state(conn) == before, "nothing is distributed"
    assert billing.power(user) == 95 and billing.deduct(user, 1, "CHAT_DEC", "CHAT", "x").balance_after == 94
    # PUBLIC may not execute it: other roles get 42501, not PB009
    for role in (APP_ROLE, NOBODY_ROLE):
        with pytest.raises(pgbilling.InsufficientPrivilege):
            Billing(connect_to(autocommit=True, user=role)).distribute()


def test_2bp01_dependent_objects(conn: psycopg.Connection[Any], user: str) -> None:
    funded(conn, user)
    with pytest.raises(pgbilling.DependentObjects) as raised, conn.transaction(force_rollback=True):
        with pgbilling.map_errors():
            conn.execute("DROP EXTENSION billing")
    check(raised.value, pgbilling.DependentObjects, "2BP01")
    assert Billing(conn).power(user) == 100


def test_22023_invalid_argument(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user)
    with pytest.raises(pgbilling.InvalidArgument) as raised:
        billing.deduct(user, D("0.000000001"), "CHAT_DEC", "CHAT", "x")
    check(raised.value, pgbilling.InvalidArgument, "22023")
    assert raised.value.message.startswith("amount")
    with pytest.raises(pgbilling.InvalidArgument):
        billing.history(user, page_size=1001)


def test_22004_null_argument(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(pgbilling.NullArgument) as raised:
        Billing(conn).power(None)  # type: ignore[arg-type]
    check(raised.value, pgbilling.NullArgument, "22004")


def test_22003_out_of_range(conn: psycopg.Connection[Any], user: str) -> None:
    billing = funded(conn, user, 1)
    # a balance at the edge of what the extension computes in (rust_decimal's maximum), then one more
    with pytest.raises(pgbilling.OutOfRange) as raised, conn.transaction(force_rollback=True):
        conn.execute("UPDATE billing.accounts SET permanent = 79228162514264337593543950335 WHERE user_id = %s", (user,))
        billing.add(user, 1, "RECHARGE_INC", "RECHARGE", "x")
    check(raised.value, pgbilling.OutOfRange, "22003")
    assert billing.power(user) == 1


TRIGGER_ARGS = "'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=report', 'association_column=task_no'"


def test_42703_undefined_column_from_a_charging_trigger(conn: psycopg.Connection[Any], user: str) -> None:
    funded(conn, user)
    with pytest.raises(pgbilling.UndefinedColumn) as raised, conn.transaction(force_rollback=True):
        conn.execute("CREATE TABLE tasks_42703 (task_no text PRIMARY KEY, user_id text NOT NULL)")
        conn.execute(
            "CREATE TRIGGER charge AFTER INSERT ON tasks_42703 FOR EACH ROW "
            f"EXECUTE FUNCTION billing_charge('user_column=usr', {TRIGGER_ARGS})"
        )
        with pgbilling.map_errors():
            conn.execute("INSERT INTO tasks_42703 VALUES ('t-1', %s)", (user,))
    check(raised.value, pgbilling.UndefinedColumn, "42703")
    assert "usr" in raised.value.message


def test_39p01_trigger_protocol_violated(conn: psycopg.Connection[Any], user: str) -> None:
    funded(conn, user)
    with pytest.raises(pgbilling.TriggerProtocolViolated) as raised, conn.transaction(force_rollback=True):
        conn.execute("CREATE TABLE tasks_39p01 (task_no text PRIMARY KEY, user_id text NOT NULL)")
        conn.execute(
            "CREATE TRIGGER charge BEFORE INSERT ON tasks_39p01 FOR EACH ROW "
            f"EXECUTE FUNCTION billing_charge('user_column=user_id', {TRIGGER_ARGS})"
        )
        with pgbilling.map_errors():
            conn.execute("INSERT INTO tasks_39p01 VALUES ('t-1', %s)", (user,))
    check(raised.value, pgbilling.TriggerProtocolViolated, "39P01")


def test_a_charging_trigger_maps_pb001_too(conn: psycopg.Connection[Any], user: str) -> None:
    with pytest.raises(pgbilling.InsufficientPower) as raised, conn.transaction(force_rollback=True):
        conn.execute("CREATE TABLE tasks_pb001 (task_no text PRIMARY KEY, user_id text NOT NULL)")
        conn.execute(
            "CREATE TRIGGER charge AFTER INSERT ON tasks_pb001 FOR EACH ROW "
            f"EXECUTE FUNCTION billing_charge('user_column=user_id', {TRIGGER_ARGS})"
        )
        with pgbilling.map_errors():
            conn.execute("INSERT INTO tasks_pb001 VALUES ('t-1', %s)", (user,))
    assert (raised.value.requested, raised.value.available) == (D(5), D(0))


def test_42501_insufficient_privilege(connect_to: Any) -> None:
    nobody = Billing(connect_to(autocommit=True, user=NOBODY_ROLE))
    with pytest.raises(pgbilling.InsufficientPrivilege) as raised:
        nobody.power("alice")
    check(raised.value, pgbilling.InsufficientPrivilege, "42501")
    # EXECUTE on billing_metrics_reset is not enough: only a superuser may reset
    app = Billing(connect_to(autocommit=True, user=APP_ROLE))
    with pytest.raises(pgbilling.InsufficientPrivilege):
        app.metrics_reset()


def test_40001_serialization_failure_for_an_account_created_after_the_snapshot(connect_to: Any, user: str) -> None:
    a = connect_to(isolation_level=IsolationLevel.REPEATABLE_READ)
    b = Billing(connect_to(autocommit=True))
    billing = Billing(a)
    assert billing.power("someone-else") == 0  # the snapshot is taken here
    b.add(user, 10, "RECHARGE_INC", "RECHARGE", "shop")
    with pytest.raises(pgbilling.SerializationFailure) as raised:
        billing.deduct(user, 5, "CHAT_DEC", "CHAT", "x")
    a.rollback()
    check(raised.value, pgbilling.SerializationFailure, "40001")
    assert raised.value.retryable and isinstance(raised.value, pgbilling.RetryableError)
    assert pgbilling.is_retryable(raised.value)
    # rerun, the transaction sees the account
    with a.transaction():
        assert billing.deduct(user, 5, "CHAT_DEC", "CHAT", "x").balance_after == 5


def wait_until_blocked(observer: psycopg.Connection[Any], pid: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        row = observer.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "the other transaction never waited for the lock"
        time.sleep(0.02)


def test_40p01_deadlock_detected(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    one, two = f"{user}-1", f"{user}-2"
    funded(conn, one)
    funded(conn, two)
    a, b = connect_to(), connect_to()
    for c in (a, b):
        c.execute("SET deadlock_timeout = '100ms'")
        c.commit()
    billing_a, billing_b = Billing(a), Billing(b)
    billing_a.deduct(one, 1, "CHAT_DEC", "CHAT", "x")  # a locks one
    billing_b.deduct(two, 1, "CHAT_DEC", "CHAT", "x")  # b locks two
    outcome: dict[str, object] = {}

    def a_takes_two() -> None:
        try:
            billing_a.deduct(two, 1, "CHAT_DEC", "CHAT", "x")
            outcome["a"] = "ok"
        except Exception as error:  # noqa: BLE001 - recorded and checked below
            outcome["a"] = error
            a.rollback()

    thread = threading.Thread(target=a_takes_two)
    thread.start()
    wait_until_blocked(conn, a.info.backend_pid)
    try:
        billing_b.deduct(one, 1, "CHAT_DEC", "CHAT", "x")  # b waits for one: a deadlock
        outcome["b"] = "ok"
    except Exception as error:  # noqa: BLE001
        outcome["b"] = error
        b.rollback()
    thread.join(30)
    assert not thread.is_alive()
    failed = [e for e in outcome.values() if isinstance(e, Exception)]
    assert len(failed) == 1 and sorted(outcome.values(), key=str).count("ok") == 1, outcome
    victim = failed[0]
    assert isinstance(victim, pgbilling.DeadlockDetected)
    check(victim, pgbilling.DeadlockDetected, "40P01")
    assert victim.retryable and isinstance(victim, pgbilling.RetryableError)
    a.rollback()
    b.rollback()


def test_other_errors_pass_through_unchanged(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    funded(conn, user)
    holder = connect_to()
    Billing(holder).deduct(user, 1, "CHAT_DEC", "CHAT", "x")  # holds the account row's lock
    waiter = connect_to()
    waiter.execute("SET lock_timeout = '50ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable) as raised:
        Billing(waiter).deduct(user, 1, "CHAT_DEC", "CHAT", "x")
    assert not isinstance(raised.value, BillingError) and raised.value.sqlstate == "55P03"
    holder.rollback()
    waiter.rollback()
    with pytest.raises(psycopg.errors.UndefinedTable), pgbilling.map_errors():
        conn.execute("SELECT * FROM no_such_table")
    assert pgbilling.from_psycopg(raised.value) is None
