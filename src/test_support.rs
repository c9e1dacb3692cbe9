//! What the in-database test modules (tests.rs, reports_tests.rs,
//! triggers_tests.rs) share: running a statement to see how it fails, reading
//! one value, and a few common set-ups and checks.

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
