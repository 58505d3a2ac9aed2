//! The dashboards' counts on PostgreSQL, added in bulk (issue 21).
//!
//! Each PostgreSQL commit upserted its batch's counts into
//! `audit_rollups` (`INSERT … ON CONFLICT DO UPDATE`, a few hundred keys
//! per 1,000 events): 2.6-2.9 ms of each commit, a sixth of it, spent
//! while holding the chain head's lock, which admits one writer at a time.
//! A commit now inserts one row in `audit_rollup_deltas` instead, in the
//! same transaction as its entries: the batch's (dimension, value, bucket,
//! count) as four arrays of equal length (`vals`, since `VALUES` is a
//! keyword). Every replica folds those rows into `audit_rollups` about once
//! a second, in transactions of their own (a fold deletes the rows it adds,
//! in one statement), and a removal folds them inside its own transaction
//! before it takes its entries' counts away. So an entry is counted in
//! `audit_rollups` or in exactly one row of `audit_rollup_deltas`, whatever
//! stops when: no crash story beyond the transaction.
//!
//! Readers read the view `audit_rollups_current`: on PostgreSQL
//! `audit_rollups` and the waiting rows, unnested (one snapshot, so exact
//! whatever folds meanwhile, with no lock and no write); on SQLite
//! `audit_rollups` alone (its writer holds its counts in memory instead:
//! `ledger_rollup_pending`, migration 17, and readers have it write them
//! first). The same key may appear more than once in the view: readers add
//! up.
//!
//! `id` orders the rows for a fold of the oldest first, and gives the table
//! the primary key that logical replication of deletes needs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both databases: stopped halfway, nothing is left
    /// behind.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                manager
                    .get_connection()
                    .execute_unprepared(
                        "CREATE VIEW audit_rollups_current AS SELECT dimension, value, bucket, count FROM audit_rollups",
                    )
                    .await?;
                Ok(())
            }
            DbBackend::Postgres => {
                let conn = manager.get_connection();
                conn.execute_unprepared(
                    "CREATE TABLE audit_rollup_deltas (
                        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        dimensions TEXT[] NOT NULL,
                        vals TEXT[] NOT NULL,
                        buckets BIGINT[] NOT NULL,
                        counts BIGINT[] NOT NULL
                    )",
                )
                .await?;
                conn.execute_unprepared(
                    "CREATE VIEW audit_rollups_current AS \
                     SELECT dimension, value, bucket, count FROM audit_rollups \
                     UNION ALL \
                     SELECT u.d, u.v, u.b, u.n FROM audit_rollup_deltas, \
                       UNNEST(dimensions, vals, buckets, counts) AS u(d, v, b, n)",
                )
                .await?;
                Ok(())
            }
            other => Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        }
    }
}
