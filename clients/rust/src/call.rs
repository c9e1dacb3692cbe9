//! How a method calls its SQL function: by name, with named arguments, each
//! parameter cast to the exact SQL type so that overloads resolve exactly, and
//! sent with its type in one round trip (an unnamed statement: no prepared
//! statement outlives the call, so it works through pgbouncer's transaction
//! pooling). Only the names written in this crate's code go into the SQL text;
//! every value is a parameter.

use std::time::Duration;

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{GenericClient, Row};

use crate::error::BillingError;
use crate::types::FromRow;

type Param<'a> = &'a (dyn ToSql + Sync);

/// One call of a billing function.
pub(crate) struct Call<'a> {
    function: &'static str,
    args: Vec<(&'static str, Param<'a>, Type)>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(function: &'static str) -> Self {
        Call { function, args: Vec::new() }
    }

    /// A named argument, always passed.
    pub(crate) fn arg(mut self, name: &'static str, value: Param<'a>, ty: Type) -> Self {
        self.args.push((name, value, ty));
        self
    }

    /// A named argument passed only when set: left out, the SQL default applies.
    pub(crate) fn opt<T: ToSql + Sync>(self, name: &'static str, value: &'a Option<T>, ty: Type) -> Self {
        match value {
            Some(v) => self.arg(name, v, ty),
            None => self,
        }
    }

    fn arguments(&self) -> String {
        self.args
            .iter()
            .enumerate()
            .map(|(i, (name, _, ty))| format!("{name} => ${}::{}", i + 1, cast(ty)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn params(&self) -> Vec<(Param<'a>, Type)> {
        self.args.iter().map(|(_, v, t)| (*v, t.clone())).collect()
    }

    /// `SELECT * FROM f(...)`: the rows of a set-returning or composite function.
    async fn rows<C: GenericClient + Sync>(&self, client: &C, filter: &str) -> Result<Vec<Row>, BillingError> {
        let sql = format!("SELECT * FROM {}({}) AS r{filter}", self.function, self.arguments());
        Ok(client.query_typed(&sql, &self.params()).await?)
    }

    /// Every row, decoded.
    pub(crate) async fn all<C: GenericClient + Sync, T: FromRow>(&self, client: &C) -> Result<Vec<T>, BillingError> {
        let rows = self.rows(client, "").await?;
        Ok(rows.iter().map(T::from_row).collect::<Result<_, _>>()?)
    }

    /// Exactly one row (a function returning one composite value).
    pub(crate) async fn one<C: GenericClient + Sync, T: FromRow>(&self, client: &C) -> Result<T, BillingError> {
        let sql = format!("SELECT * FROM {}({}) AS r", self.function, self.arguments());
        let row = client.query_typed_one(&sql, &self.params()).await?;
        Ok(T::from_row(&row)?)
    }

    /// A composite value that may be NULL (`key` is a NOT NULL column of it),
    /// or a set of at most one row.
    pub(crate) async fn opt_row<C: GenericClient + Sync, T: FromRow>(
        &self,
        client: &C,
        key: &'static str,
    ) -> Result<Option<T>, BillingError> {
        let rows = self.rows(client, &format!(" WHERE r.{key} IS NOT NULL")).await?;
        Ok(rows.first().map(T::from_row).transpose()?)
    }

    /// `SELECT f(...)` of a function returning void.
    pub(crate) async fn run<C: GenericClient + Sync>(&self, client: &C) -> Result<(), BillingError> {
        let sql = format!("SELECT {}({})", self.function, self.arguments());
        client.query_typed(&sql, &self.params()).await?;
        Ok(())
    }

    /// `SELECT f(...)`: a scalar function's value.
    pub(crate) async fn value<C, T>(&self, client: &C) -> Result<T, BillingError>
    where
        C: GenericClient + Sync,
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        let sql = format!("SELECT {}({})", self.function, self.arguments());
        let row = client.query_typed_one(&sql, &self.params()).await?;
        Ok(row.try_get(0)?)
    }
}

/// The SQL type a parameter is cast to.
fn cast(ty: &Type) -> &'static str {
    match *ty {
        Type::TEXT => "text",
        Type::NUMERIC => "numeric",
        Type::INT8 => "bigint",
        Type::INT4 => "integer",
        Type::BOOL => "boolean",
        Type::TIMESTAMPTZ => "timestamptz",
        Type::INTERVAL => "interval",
        Type::JSONB => "jsonb",
        Type::TEXT_ARRAY => "text[]",
        _ => unreachable!("no cast for {ty}"),
    }
}

/// A `std::time::Duration` as an SQL interval (microseconds; days and months 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interval(pub Duration);

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::try_from(self.0.as_micros()).map_err(|_| "interval out of range")?;
        out.extend_from_slice(&micros.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // days
        out.extend_from_slice(&0i32.to_be_bytes()); // months
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}
