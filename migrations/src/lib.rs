//! Custos database schema, for SQLite (embedded default) and PostgreSQL.
//!
//! Migrations are written as plain SQL per backend: the ledger's append-only
//! guarantees live in triggers, which no schema builder expresses, and keeping
//! each table's SQL next to its triggers makes the protection reviewable.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_ledger;
mod m20261126_000002_identity;
mod m20261126_000003_events;
mod m20261127_000004_saved_searches;
mod m20261127_000005_rollups_by_time;
mod m20261201_000006_trust_boundary;
mod m20261202_000007_policies;
mod m20261203_000008_alerts;
mod m20261204_000009_notifications;
mod m20261205_000010_forwarding;
mod m20261206_000011_retention;
mod m20261207_000012_compaction;
mod m20261208_000013_reports;
mod m20261209_000014_report_runs;
mod m20261210_000015_throttles;
mod m20261211_000016_jobs;
mod m20261212_000017_rollup_pending;
mod m20261213_000018_own_index;
mod m20261214_000019_time_index_order;
mod m20261215_000020_rollup_deltas;
mod m20261216_000021_rollup_progress;

/// Every migration, in the order it is applied.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_ledger::Migration),
            Box::new(m20261126_000002_identity::Migration),
            Box::new(m20261126_000003_events::Migration),
            Box::new(m20261127_000004_saved_searches::Migration),
            Box::new(m20261127_000005_rollups_by_time::Migration),
            Box::new(m20261201_000006_trust_boundary::Migration),
            Box::new(m20261202_000007_policies::Migration),
            Box::new(m20261203_000008_alerts::Migration),
            Box::new(m20261204_000009_notifications::Migration),
            Box::new(m20261205_000010_forwarding::Migration),
            Box::new(m20261206_000011_retention::Migration),
            Box::new(m20261207_000012_compaction::Migration),
            Box::new(m20261208_000013_reports::Migration),
            Box::new(m20261209_000014_report_runs::Migration),
            Box::new(m20261210_000015_throttles::Migration),
            Box::new(m20261211_000016_jobs::Migration),
            Box::new(m20261212_000017_rollup_pending::Migration),
            Box::new(m20261213_000018_own_index::Migration),
            Box::new(m20261214_000019_time_index_order::Migration),
            Box::new(m20261215_000020_rollup_deltas::Migration),
            Box::new(m20261216_000021_rollup_progress::Migration),
        ]
    }
}

/// Runs `statements` one by one (SQLite's driver takes one statement per call).
pub(crate) async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for sql in statements {
        conn.execute_unprepared(sql).await?;
    }
    Ok(())
}
