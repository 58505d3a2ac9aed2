//! The dashboards' counts on PostgreSQL, added in bulk (issue 21).
//!
//! Each PostgreSQL commit upserted its batch's counts into
//! `audit_rollups` (`INSERT … ON CONFLICT DO UPDATE`, a few hundred keys
//! per 1,000 events): 2.6-2.9 ms of each commit, a sixth of it, spent
//! while holding the chain head's lock, which admits one writer at a time.
//! A commit now inserts one row in `audit_rollup_deltas` instead, in the
//! same transaction as its entries: the batch's (dimension, value, bucket,
//! count) as four arrays of equal length (`vals`, since `VALUES` is a
//! keyword). Every replica folds those rows into `audit_rollups` four times
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
//! the primary key that logical replication of deletes needs; the arrays
//! of a row must be of one length (a row that is not would stop every
//! fold).
//!
//! A removal by a version before this one would take its entries' counts
//! away without folding first: the subtraction would find no row for counts
//! still waiting, and the fold would then add the removed entries back (an
//! erased name back in the actor counts). So on PostgreSQL a removal's
//! record (`ledger_retentions`) is refused unless the transaction says it
//! folds (`SET LOCAL custos.removal_folds = 'on'`, which only this version
//! and later say): during a rolling upgrade, an older replica's retention
//! run or erasure fails with nothing removed.

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
                        counts BIGINT[] NOT NULL,
                        CHECK (cardinality(dimensions) = cardinality(vals)
                               AND cardinality(vals) = cardinality(buckets)
                               AND cardinality(buckets) = cardinality(counts))
                    )",
                )
                .await?;
                conn.execute_unprepared(
                    r#"CREATE FUNCTION custos_guard_removal_folds() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN
                         IF current_setting('custos.removal_folds', true) IS DISTINCT FROM 'on' THEN
                           RAISE EXCEPTION 'custos: a removal must fold the waiting dashboard counts first (a replica older than migration 20?)'
                             USING ERRCODE = 'P0001';
                         END IF;
                         RETURN NEW;
                       END $$"#,
                )
                .await?;
                // Named to fire before the record's other checks (PostgreSQL
                // fires a table's BEFORE triggers in name order).
                conn.execute_unprepared(
                    "CREATE TRIGGER ledger_retentions_fold_first BEFORE INSERT ON ledger_retentions \
                     FOR EACH ROW EXECUTE FUNCTION custos_guard_removal_folds()",
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
