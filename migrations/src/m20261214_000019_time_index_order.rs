//! The filter index in the order of search pages (issue 21).
//!
//! `GET /api/audit` pages in event time, `(occurred_at, seq)`. The filter
//! index, `ledger_entries_time_filters`, led by `occurred_at` and ending
//! with `seq`, left every run of entries sharing one `occurred_at` to be
//! sorted, on every page: a client sending a million events with one
//! timestamp (or second-precision times at a high rate) made each page
//! over that time read and sort the whole run. It is replaced by
//! `ledger_entries_by_time (occurred_at, seq, …the same filter columns)`,
//! in the pages' exact order; the filter columns after the range column
//! were only ever tested inside the index, which they still are. (A new
//! name, built before the old index goes. Dropping the old one and
//! creating it again under its name failed on SQLite, `already exists`
//! right after the drop, when this migration still ran without a
//! transaction: likely the two statements went to two pooled connections,
//! the second with a stale schema; not investigated further.)
//!
//! On an existing ledger the index is built again once, in the migration
//! (one pass over the table); on PostgreSQL that build holds off writes to
//! the ledger meanwhile (the migration runs in a transaction, where
//! `CONCURRENTLY` may not), as for migration 018.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both databases (sea-orm runs SQLite's without
    /// one by default): stopped halfway, the migration leaves nothing
    /// behind and runs whole at the next start.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX ledger_entries_by_time ON ledger_entries \
             (occurred_at, seq, action, outcome, category, tenant, actor_id, resource_type)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX ledger_entries_time_filters").await?;
        Ok(())
    }
}
