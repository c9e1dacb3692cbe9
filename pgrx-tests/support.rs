//! What the in-database test modules (pgrx-tests/*.rs) share: running a statement
//! to see how it fails, reading one value, and a few common set-ups and checks
//! (recharges, gifts, holds, time passing).

use pgrx::prelude::*;

/// (SQLSTATE, message, detail, hint) of running `statement` in a subtransaction;
/// ("00000", "", "", "") if it worked.
pub fn outcome(statement: &str) -> (String, String, String, String) {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.outcome(statement text,
             OUT state text, OUT message text, OUT detail text, OUT hint text)
         LANGUAGE plpgsql AS $$
         BEGIN
             EXECUTE statement;
             state := '00000'; message := ''; detail := ''; hint := '';
         EXCEPTION WHEN OTHERS THEN
             GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                                     detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
         END $$",
    )
    .unwrap();
    Spi::connect(|client| {
        let row = client
            .select("SELECT * FROM pg_temp.outcome($1)", None, &[statement.into()])
            .unwrap()
            .first();
        let field = |n| row.get::<String>(n).unwrap().unwrap_or_default();
        (field(1), field(2), field(3), field(4))
    })
}

/// The SQLSTATE a statement fails with, or "00000".
pub fn sqlstate(statement: &str) -> String {
    outcome(statement).0
}

/// SQLSTATE and message of a statement ("00000" and "" if it worked).
pub fn failure(statement: &str) -> (String, String) {
    let (state, message, _, _) = outcome(statement);
    (state, message)
}

/// One value, as text ("NULL" for NULL).
pub fn text(query: &str) -> String {
    Spi::get_one::<String>(query).unwrap().unwrap_or_else(|| "NULL".into())
}

pub fn power(user: &str) -> String {
    text(&format!("SELECT billing_power('{user}')::text"))
}

/// The number of the user's ledger entries, as text.
pub fn entries(user: &str) -> String {
    text(&format!("SELECT count(*)::text FROM billing.account_log WHERE user_id = '{user}'"))
}

pub fn recharge(user: &str, amount: &str) {
    Spi::run(&format!("SELECT billing_add('{user}', {amount}, 'RECHARGE_INC', 'RECHARGE', 'shop')")).unwrap();
}

/// Replays the ledger: the number of things that disagree with the stored state.
pub fn ledger_disagreements() -> i64 {
    Spi::get_one::<i64>("SELECT count(*) FROM billing_verify()").unwrap().unwrap()
}

pub fn gift(user: &str, amount: &str, expires_in: &str) -> i64 {
    Spi::get_one::<i64>(&format!(
        "SELECT (detail->'grants'->0->>'id')::bigint FROM billing_add('{user}', {amount}, 'MEMBERSHIP_GIFT_INC',
                 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '{expires_in}', subscription_id => 'sub-1')"
    ))
    .unwrap()
    .unwrap()
}

pub fn chat(user: &str, amount: &str) -> String {
    text(&format!(
        "SELECT detail::text FROM billing_deduct('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'report')"
    ))
}

/// Moves every grant of the user `by` into the past, as time passing would.
pub fn travel(user: &str, by: &str) {
    Spi::run(&format!(
        "UPDATE billing.grant_store SET expire_at = expire_at - interval '{by}' WHERE user_id = '{user}';
         UPDATE billing.accounts SET next_expiry = next_expiry - interval '{by}' WHERE user_id = '{user}'"
    ))
    .unwrap();
}

/// Reserves `amount` for `user`; returns the hold id.
pub fn hold(user: &str, amount: &str) -> i64 {
    Spi::get_one::<i64>(&format!("SELECT hold_id FROM billing_hold('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'gpt-4')"))
        .unwrap()
        .unwrap()
}

/// Makes the hold's ttl pass, as time passing would.
pub fn lapse(hold_id: i64) {
    Spi::run(&format!(
        "UPDATE billing.holds SET expires_at = now() - interval '1 second' WHERE hold_id = {hold_id};
         UPDATE billing.accounts a SET holds_due_at = now() - interval '1 second'
           FROM billing.holds h WHERE h.hold_id = {hold_id} AND a.user_id = h.user_id"
    ))
    .unwrap();
}

pub fn remaining(grant_id: i64) -> String {
    text(&format!("SELECT remaining::text FROM billing.grants WHERE id = {grant_id}"))
}
