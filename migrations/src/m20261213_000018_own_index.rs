//! Custos's own entries, indexed apart (issue 21).
//!
//! Looking for Custos's own records without a time bound (the policy
//! store's start-up reconciliation reads every activation from the first;
//! so does the trail of versions rebuilt from the ledger) walked the whole
//! table: 20 s at each start on a ledger of 10M demo events. A partial index holds only the
//! entries Custos sealed itself (`source_app = 'custos'`, a name clients
//! may not use), by category and seq: an application's event adds nothing
//! to it, so ingest does not pay for it. On an existing ledger the index
//! is built once, in the migration (one pass over the table: 12.8 s for
//! 10M entries on SQLite here). On PostgreSQL the build holds off writes
//! to the ledger meanwhile (a plain `CREATE INDEX`: the migration runs in
//! a transaction, where `CONCURRENTLY` may not), so replicas still on the
//! previous version wait for it during an upgrade. The same statement
//! serves both databases.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ledger_entries_own ON ledger_entries (category, seq) WHERE source_app = 'custos'",
            )
            .await?;
        Ok(())
    }
}
