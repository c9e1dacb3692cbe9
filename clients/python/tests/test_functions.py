"""Every SQL function through Billing, with its result checked against the server."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, namedtuple_row

import pgbilling
from pgbilling import AccountLog, Billing, Distribution, Funding, GrantAmount

D = Decimal


def later(**delta: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(**delta)


def test_power_add_deduct_are_exact_decimals(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    assert billing.power(user) == 0
    entry = billing.add(user, D("100.00000001"), "RECHARGE_INC", "RECHARGE", "order-1", idempotency_key="order-1")
    assert isinstance(entry, AccountLog)
    assert (entry.user_id, entry.seq, entry.direction, entry.account_type) == (user, 1, 1, "RECHARGE_INC")
    assert entry.amount == D("100.00000001") and type(entry.amount) is Decimal
    assert entry.balance_after == D("100.00000001")
    assert entry.detail == Funding(permanent=D("100.00000001"))
    assert entry.idempotency_key == "order-1" and entry.refund_of is None
    assert entry.session_role == entry.calling_role == conn.info.user
    spent = billing.deduct(
        user, D("0.1"), "CHAT_DEC", "CHAT", "chat-7", association_no="task-7", remark="r", idempotency_key="chat-7"
    )
    assert (spent.direction, spent.amount, spent.balance_after) == (-1, D("0.1"), D("99.90000001"))
    assert (spent.association_no, spent.remark, spent.source) == ("task-7", "r", "chat-7")
    # a repeat with the same key returns the same entry and charges nothing
    again = billing.deduct(user, D("0.1"), "CHAT_DEC", "CHAT", "chat-7", idempotency_key="chat-7")
    assert (again.id, again.seq) == (spent.id, spent.seq)
    power = billing.power(user)
    assert power == D("99.90000001") and type(power) is Decimal
    assert billing.has_power(user, D("99.90000001")) is True
    assert billing.has_power(user, D("99.90000002")) is False
    # an int is an exact amount too
    assert billing.deduct(user, 9, "CHAT_DEC", "CHAT", "x").balance_after == D("90.90000001")


def test_floats_are_refused_before_any_sql(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    with pytest.raises(TypeError, match="never a float"):
        billing.add(user, 1.5, "RECHARGE_INC", "RECHARGE", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        billing.has_power(user, True)
    with pytest.raises(ValueError, match="timezone-aware"):
        billing.add(user, 1, "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "x", expire_at=datetime(2999, 1, 1))
    with pytest.raises(TypeError, match="never a float"):
        billing.deduct_with_options({"userId": user, "amount": 1.5, "accountType": "CHAT_DEC",
                                     "source": {"type": "CHAT", "source": "x"}})
    assert billing.power(user) == 0


def test_grants_are_spent_first_and_revoked_by_subscription(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    sub = f"sub-{user}"
    gift = billing.add(
        user, 30, "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "vip", expire_at=later(days=30), subscription_id=sub
    )
    assert gift.subscription_id == sub and gift.expire_at is not None
    assert len(gift.detail.grants) == 1 and gift.detail.grants[0].amount == 30 and gift.detail.permanent is None
    grant_id = gift.detail.grants[0].id
    spent = billing.deduct(user, 40, "CHAT_DEC", "CHAT", "chat-7")
    assert spent.detail == Funding(permanent=D(10), grants=(GrantAmount(grant_id, D(30)),))
    # a second gift, then its subscription revoked: one MEMBERSHIP_GIFT_DEC entry for what is left
    billing.add(user, 5, "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "vip", expire_at=later(days=30), subscription_id=sub)
    revoked = billing.revoke_subscription(sub, remark="cancelled")
    assert [(e.account_type, e.amount, e.remark, e.source) for e in revoked] == [
        ("MEMBERSHIP_GIFT_DEC", D(5), "cancelled", "revoke")
    ]
    assert billing.revoke_subscription(sub) == []
    assert billing.power(user) == 90


def test_hold_settle_release(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    hold = billing.hold(
        user, 50, "CHAT_DEC", "CHAT", "gpt-4", association_no="task-7", ttl=timedelta(minutes=5),
        idempotency_key=f"hold-{user}", scopes=["model:gpt-4"],
    )
    assert (hold.status, hold.amount, hold.user_id, hold.scopes) == ("held", D(50), user, ("model:gpt-4",))
    assert hold.funding == Funding(permanent=D(50))
    assert hold.expires_at - hold.created_at == timedelta(minutes=5)
    assert billing.power(user) == 50
    # the same key returns the same hold
    assert billing.hold(user, 50, "CHAT_DEC", "CHAT", "gpt-4", idempotency_key=f"hold-{user}").hold_id == hold.hold_id
    entry = billing.settle(hold.hold_id, D("12.5"), remark="metered")
    assert entry is not None
    assert (entry.amount, entry.balance_after, entry.remark, entry.association_no) == (D("12.5"), D("87.5"), "metered", "task-7")
    assert entry.detail.hold == hold.hold_id and entry.detail.permanent == D("12.5")
    assert entry.scopes == ("model:gpt-4",)
    # settling again for the same amount returns the same entry
    again = billing.settle(hold.hold_id, D("12.5"))
    assert again is not None and again.id == entry.id
    # a settle for 0 is a release and returns None
    other = billing.hold(user, 10, "CHAT_DEC", "CHAT", "x")
    assert billing.settle(other.hold_id, 0) is None
    assert billing.power(user) == D("87.5")
    third = billing.hold(user, 20, "CHAT_DEC", "CHAT", "x")
    released = billing.release(third.hold_id, reason="upstream timeout")
    assert (released.status, released.reason, released.hold_id) == ("released", "upstream timeout", third.hold_id)
    assert billing.power(user) == D("87.5")


def test_settle_into_debt_and_the_debt_floor(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 10, "RECHARGE_INC", "RECHARGE", "order-1")
    assert billing.set_debt_limit(user, 5) == 5
    hold = billing.hold(user, 10, "CHAT_DEC", "CHAT", "x")
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        billing.settle(hold.hold_id, 16, allow_debt=True)
    assert "debt limit" in raised.value.message
    assert (raised.value.held, raised.value.requested, raised.value.available) == (D(10), D(6), D(5))
    entry = billing.settle(hold.hold_id, 15, allow_debt=True)
    assert entry is not None and entry.balance_after == -5
    assert billing.power(user) == -5
    assert billing.set_debt_limit(user, None) is None


def test_refund_all_and_part(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    spent = billing.deduct(user, 40, "CHAT_DEC", "CHAT", "chat-7", association_no="task-7")
    part = billing.refund(spent.id, amount=D("2.5"), remark="partial failure", idempotency_key=f"rf-{spent.id}")
    assert (part.account_type, part.amount, part.refund_of, part.remark) == ("REFUND_INC", D("2.5"), spent.id, "partial failure")
    assert (part.source_type, part.source, part.association_no) == ("CHAT", "chat-7", "task-7")
    assert billing.refund(spent.id, amount=D("2.5"), idempotency_key=f"rf-{spent.id}").id == part.id
    rest = billing.refund(spent.id)
    assert rest.amount == D("37.5")
    assert billing.power(user) == 100


def settled_or_refunded(entry: AccountLog | None) -> tuple[Any, ...]:
    """What an entry says, without what differs between two users' runs of the same calls
    (the ids, the user, the times, the key's text)."""
    assert entry is not None
    return (
        entry.seq, entry.direction, entry.amount, entry.balance_after, entry.account_type, entry.source_type,
        entry.source, entry.remark, entry.association_no, entry.detail.permanent,
        tuple(g.amount for g in entry.detail.grants), entry.detail.hold is None, entry.refund_of is None,
        entry.idempotency_key is None, entry.scopes,
    )


def test_user_settle_is_settle_keyed_by_the_user(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    by_id, by_user = f"{user}-id", f"{user}-user"
    holds = {}
    for u in (by_id, by_user):
        billing.add(u, 100, "RECHARGE_INC", "RECHARGE", "order-1")
        holds[u] = billing.hold(u, 50, "CHAT_DEC", "CHAT", "gpt-4", association_no="task-7", scopes=["model:gpt-4"])
    expected = billing.settle(holds[by_id].hold_id, D("12.5"), remark="metered")
    entry = billing.user_settle(by_user, holds[by_user].hold_id, D("12.5"), remark="metered")
    assert isinstance(entry, AccountLog)
    assert (entry.user_id, entry.amount, entry.balance_after, entry.remark, entry.association_no) == (
        by_user, D("12.5"), D("87.5"), "metered", "task-7"
    )
    assert entry.detail == Funding(permanent=D("12.5"), hold=holds[by_user].hold_id)
    assert settled_or_refunded(entry) == settled_or_refunded(expected)
    assert billing.power(by_user) == billing.power(by_id) == D("87.5")
    # settling again for the same amount returns the same entry
    again = billing.user_settle(by_user, holds[by_user].hold_id, D("12.5"))
    assert again is not None and again.id == entry.id
    # a settle for 0 is a release and returns None
    other = billing.hold(by_user, 10, "CHAT_DEC", "CHAT", "x")
    assert billing.user_settle(by_user, other.hold_id, 0) is None
    assert billing.user_release(by_user, other.hold_id).status == "released"
    assert billing.power(by_user) == D("87.5")
    # above the hold: PB001 leaves the hold open; allow_debt takes the rest into debt
    big = billing.hold(by_user, 10, "CHAT_DEC", "CHAT", "x")
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        billing.user_settle(by_user, big.hold_id, 100)
    assert (raised.value.held, raised.value.requested, raised.value.available) == (D(10), D(90), D("77.5"))
    debt = billing.user_settle(by_user, big.hold_id, 100, allow_debt=True)
    assert debt is not None and (debt.amount, debt.balance_after) == (D(100), D("-12.5"))
    assert billing.power(by_user) == D("-12.5")


def test_user_release_is_release_keyed_by_the_user(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    by_id, by_user = f"{user}-id", f"{user}-user"
    holds = {}
    for u in (by_id, by_user):
        billing.add(u, 100, "RECHARGE_INC", "RECHARGE", "order-1")
        holds[u] = billing.hold(u, 30, "CHAT_DEC", "CHAT", "gpt-4")
        assert billing.power(u) == 70
    expected = billing.release(holds[by_id].hold_id, reason="upstream timeout")
    released = billing.user_release(by_user, holds[by_user].hold_id, reason="upstream timeout")
    assert (released.user_id, released.hold_id, released.status, released.reason, released.amount) == (
        by_user, holds[by_user].hold_id, "released", "upstream timeout", D(30)
    )
    assert (released.funding, released.settled_amount, released.log_id) == (
        expected.funding, expected.settled_amount, expected.log_id
    ) == (Funding(permanent=D(30)), None, None)
    assert billing.power(by_user) == billing.power(by_id) == 100
    # repeating a release returns the hold; settling it after raises PB004
    assert billing.user_release(by_user, holds[by_user].hold_id).status == "released"
    with pytest.raises(pgbilling.HoldStateError):
        billing.user_settle(by_user, holds[by_user].hold_id, 1)
    assert [e.account_type for e in billing.history(by_user)] == ["RECHARGE_INC"], "a release writes no entry"


def test_user_refund_is_refund_keyed_by_the_user(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    by_id, by_user = f"{user}-id", f"{user}-user"
    spent = {}
    for u in (by_id, by_user):
        billing.add(u, 100, "RECHARGE_INC", "RECHARGE", "order-1")
        spent[u] = billing.deduct(u, 40, "CHAT_DEC", "CHAT", "chat-7", association_no="task-7")
    expected = billing.refund(spent[by_id].id, amount=D("2.5"), remark="partial failure", idempotency_key="rf-1")
    part = billing.user_refund(by_user, spent[by_user].id, amount=D("2.5"), remark="partial failure", idempotency_key="rf-1")
    assert (part.user_id, part.account_type, part.amount, part.refund_of, part.remark, part.balance_after) == (
        by_user, "REFUND_INC", D("2.5"), spent[by_user].id, "partial failure", D("62.5")
    )
    assert (part.source_type, part.source, part.association_no) == ("CHAT", "chat-7", "task-7")
    assert settled_or_refunded(part) == settled_or_refunded(expected)
    # the same key returns the same refund
    assert billing.user_refund(by_user, spent[by_user].id, amount=D("2.5"), idempotency_key="rf-1").id == part.id
    rest = billing.user_refund(by_user, spent[by_user].id)
    assert (rest.amount, rest.balance_after, rest.refund_of) == (D("37.5"), D(100), spent[by_user].id)
    with pytest.raises(pgbilling.OverRefund):
        billing.user_refund(by_user, spent[by_user].id, amount=1)
    assert billing.power(by_user) == 100


def user_state(conn: psycopg.Connection[Any], billing: Billing, users: list[str], hold_id: int) -> Any:
    """Everything a user form could have changed: the users' accounts (is there one), power and
    ledger, and the hold."""
    accounts = conn.execute(
        "SELECT user_id FROM billing.accounts WHERE user_id = ANY(%s) ORDER BY user_id", (users,)
    ).fetchall()
    hold = conn.execute(
        "SELECT status, settled_amount::text, log_id, reason, closed_at FROM billing.holds WHERE hold_id = %s",
        (hold_id,),
    ).fetchall()
    return accounts, hold, [(billing.power(u), billing.history(u)) for u in users]


def test_user_forms_refuse_a_hold_or_entry_of_another_user(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    owner, other, stranger = f"{user}-owner", f"{user}-other", f"{user}-none"  # stranger has no account
    billing.add(owner, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    billing.add(other, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    hold = billing.hold(owner, 30, "CHAT_DEC", "CHAT", "gpt-4")
    spent = billing.deduct(owner, 10, "CHAT_DEC", "CHAT", "chat-7")
    before = user_state(conn, billing, [owner, other, stranger], hold.hold_id)
    assert len(before[0]) == 2 and before[1][0][0] == "held"
    for u in (other, stranger):
        for settle_amount, allow_debt in ((D(5), None), (D(0), None), (D(500), True)):
            with pytest.raises(pgbilling.InvalidArgument) as raised:
                billing.user_settle(u, hold.hold_id, settle_amount, allow_debt=allow_debt)
            assert raised.value.sqlstate == "22023"
            assert raised.value.message == f'hold_id {hold.hold_id} is not a hold of user "{u}"'
        with pytest.raises(pgbilling.InvalidArgument) as raised:
            billing.user_release(u, hold.hold_id, reason="not mine")
        assert raised.value.message == f'hold_id {hold.hold_id} is not a hold of user "{u}"'
        for refund_amount in (D(1), None):
            with pytest.raises(pgbilling.InvalidArgument) as raised:
                billing.user_refund(u, spent.id, amount=refund_amount, idempotency_key="rf-1")
            assert raised.value.message == f'log_id {spent.id} is not an entry of user "{u}"'
    assert user_state(conn, billing, [owner, other, stranger], hold.hold_id) == before
    # the hold and the entry are the owner's, untouched: settled and refunded in full
    entry = billing.user_settle(owner, hold.hold_id, 30)
    assert entry is not None and entry.amount == 30
    assert billing.user_refund(owner, spent.id, idempotency_key="rf-1").amount == 10
    assert billing.power(owner) == 70


def test_options_object_forms(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    added = billing.add_with_options({
        "userId": user, "amount": D("12.50"), "accountType": "MEMBERSHIP_GIFT_INC",
        "source": {"type": "MEMBERSHIP_GIFT", "source": "vip"}, "expireAt": later(days=1),
        "subscriptionId": 42, "remark": None,
    })
    assert (added.amount, added.subscription_id, added.remark) == (D("12.5"), "42", None)
    spent = billing.deduct_with_options({
        "userId": user, "amount": "2.25", "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "chat-7"},
        "associationNo": "task-7", "associationUserId": "bob", "idempotencyKey": "k-1", "scopes": ["key:sk-123"],
    })
    assert (spent.amount, spent.balance_after, spent.association_user_id, spent.scopes) == (
        D("2.25"), D("10.25"), "bob", ("key:sk-123",)
    )
    with pytest.raises(pgbilling.InvalidArgument, match="colour"):
        billing.deduct_with_options({"userId": user, "amount": 1, "accountType": "CHAT_DEC",
                                     "source": {"type": "CHAT", "source": "x"}, "colour": 1})


def test_reports_history_association_statement_verify(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    start = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    for n in range(5):
        billing.deduct(user, n + 1, "CHAT_DEC", "CHAT", f"chat-{n}", association_no="task-a" if n % 2 else "task-b")
    page = billing.history(user, page_size=4)
    assert [e.seq for e in page] == [6, 5, 4, 3]
    assert [e.seq for e in billing.history(user, page_size=4, before_seq=page[-1].seq)] == [2, 1]
    assert [e.seq for e in billing.history(user)] == [6, 5, 4, 3, 2, 1]
    assert [e.amount for e in billing.by_association(user, "task-a")] == [D(2), D(4)]
    rows = billing.statement(user, start, later(hours=1))
    assert [(r.account_type, r.entries, r.credited, r.debited, r.net) for r in rows] == [
        ("CHAT_DEC", 5, D(0), D(15), D(-15)),
        ("RECHARGE_INC", 1, D(100), D(0), D(100)),
        (None, 6, D(100), D(15), D(85)),
    ]
    assert {(r.opening_balance, r.closing_balance) for r in rows} == {(D(0), D(85))}
    assert billing.verify(user_id=user) == []
    assert billing.verify() == []
    # a balance changed behind the ledger's back (then rolled back): billing_verify names it
    with conn.transaction(force_rollback=True):
        conn.execute("UPDATE billing.accounts SET permanent = permanent + 1 WHERE user_id = %s", (user,))
        found = billing.verify(user_id=user)
    assert found and all(v.user_id == user for v in found)
    assert any("permanent" in v.check and (v.expected, v.actual) == ("85", "86") for v in found), found


def test_price(conn: psycopg.Connection[Any]) -> None:
    billing = Billing(conn)
    assert billing.price("gpt", 12000) == 36
    assert billing.price("gpt", 1001) == 4
    assert billing.price("gpt", 0) == 0


def test_expire_sweeps_a_lapsed_grant(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 10, "RECHARGE_INC", "RECHARGE", "order-1")
    expires = conn.execute("SELECT clock_timestamp() + interval '300 milliseconds'").fetchone()[0]  # type: ignore[index]
    billing.add(user, 5, "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "vip", expire_at=expires)
    deadline = time.monotonic() + 10
    while billing.power(user) != 10:  # wait until the grant has expired
        assert time.monotonic() < deadline, "the grant did not expire"
        time.sleep(0.05)
    assert billing.expire(batch_size=1000) >= 1
    expired = billing.history(user, page_size=1)[0]
    assert (expired.account_type, expired.amount, expired.source) == ("MEMBERSHIP_GIFT_EXPIRED", D(5), "expiry")
    assert billing.expire(as_of=datetime.now(timezone.utc) - timedelta(days=1)) >= 0


def test_adjust(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    up = billing.adjust(user, 12, "ticket 4411: goodwill")
    assert (up.account_type, up.source_type, up.source, up.association_user_id) == (
        "SYSTEM_MANUAL_INC", "SYSTEM", "manual", conn.info.user
    )
    down = billing.adjust(user, D("-2.5"), "ticket 4411: double charge", operator="support-7")
    assert (down.account_type, down.direction, down.amount, down.association_user_id) == (
        "SYSTEM_MANUAL_DEC", -1, D("2.5"), "support-7"
    )
    assert billing.power(user) == D("9.5")


def test_low_balance_events(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    assert billing.set_low_balance(user, D("50.5")) == D("50.5")
    before = max((e.event_id for e in billing.low_balance_events()), default=0)
    billing.deduct(user, 60, "CHAT_DEC", "CHAT", "x")
    events = [e for e in billing.low_balance_events(after_id=before) if e.user_id == user]
    assert [(e.threshold, e.available) for e in events] == [(D("50.5"), D(40))]
    assert events[0].event_id > before
    assert billing.set_low_balance(user, None) is None


def test_spending_limits(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    limit = billing.set_limit(user, "key:sk-123", 10)
    assert limit is not None
    assert (limit.scope, limit.cap, limit.period, limit.time_zone, limit.period_end) == ("key:sk-123", D(10), None, "UTC", None)
    daily = billing.set_limit(user, "*", 500, period="month", time_zone="Europe/Berlin")
    assert daily is not None and daily.period == "month" and daily.period_end is not None
    billing.deduct(user, D("7.25"), "CHAT_DEC", "CHAT", "x", scopes=["key:sk-123"])
    billing.hold(user, 1, "CHAT_DEC", "CHAT", "x", scopes=["key:sk-123"])
    rows = billing.limits(user)
    assert [(r.scope, r.spent, r.held, r.remaining) for r in rows] == [
        ("*", D("7.25"), D(1), D("491.75")),
        ("key:sk-123", D("7.25"), D(1), D("1.75")),
    ]
    assert billing.set_limit(user, "key:sk-123", None) is None
    assert [r.scope for r in billing.limits(user)] == ["*"]


def test_metrics(conn: psycopg.Connection[Any], user: str) -> None:
    billing = Billing(conn)
    billing.add(user, 5, "RECHARGE_INC", "RECHARGE", "x")
    billing.hold(user, 1, "CHAT_DEC", "CHAT", "x")
    rows = billing.metrics()
    by_name = {m.metric: m for m in rows if not m.labels}
    assert by_name["billing_counters_active"].kind == "gauge"
    assert by_name["billing_counters_active"].value in (0, 1)
    assert type(by_name["billing_holds_open"].value) is Decimal and by_name["billing_holds_open"].value >= 1
    assert billing.metrics_reset() is None


def test_distribute_rows_are_typed() -> None:
    # billing_distribute needs a Citus coordinator (without Citus: test_errors.py's PB009 test);
    # here the statement and the decoding of its rows, without a server
    call = pgbilling._calls.distribute()
    assert (call.sql, call.params) == ('SELECT r."object", r."distribution" FROM billing_distribute() AS r', ())
    rows = call.decode([("billing.accounts", "distributed by user_id"), ("billing.account_types", "reference table")])
    assert rows == [
        Distribution("billing.accounts", "distributed by user_id"),
        Distribution(object="billing.account_types", distribution="reference table"),
    ]


def test_methods_never_commit(database: str, connect_to: Any, user: str) -> None:
    conn = connect_to()  # not autocommit: the first statement opens a transaction
    billing = Billing(conn)
    billing.add(user, 10, "RECHARGE_INC", "RECHARGE", "x")
    billing.deduct(user, 3, "CHAT_DEC", "CHAT", "x")
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    other = Billing(connect_to(autocommit=True))
    assert other.power(user) == 0, "another connection sees nothing before the caller commits"
    conn.rollback()
    assert other.power(user) == 0 and billing.power(user) == 0
    conn.rollback()
    with conn.transaction():
        billing.add(user, 10, "RECHARGE_INC", "RECHARGE", "x")
    assert other.power(user) == 10


@pytest.mark.parametrize("row_factory", [dict_row, namedtuple_row])
def test_any_row_factory(connect_to: Any, user: str, row_factory: Any) -> None:
    billing = Billing(connect_to(autocommit=True, row_factory=row_factory))
    entry = billing.add(user, 3, "RECHARGE_INC", "RECHARGE", "x")
    assert entry.amount == 3 and entry.detail.permanent == 3
    assert billing.power(user) == 3
    assert [e.seq for e in billing.history(user)] == [1]


def prepared(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_prepared_statements", prepare=False).fetchone()
    assert row is not None
    return int(row[0])


def test_prepare_is_passed_to_the_cursor(connect_to: Any, user: str) -> None:
    conn = connect_to(autocommit=True)
    billing = Billing(conn, prepare=True)  # prepared at once, not after prepare_threshold (5) runs
    billing.add(user, 3, "RECHARGE_INC", "RECHARGE", "x")
    for _ in range(3):
        assert billing.power(user) == 3
    assert prepared(conn) == 2  # the add and the power statements
    eager = connect_to(autocommit=True, prepare_threshold=0)
    never = Billing(eager, prepare=False)
    for _ in range(3):
        assert never.power(user) == 3
    assert prepared(eager) == 0
