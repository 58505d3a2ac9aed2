//! Saved searches of the events explorer: a name and the explorer's query
//! string, per user, optionally shared with everyone who may search. Plain
//! mutable rows (not evidence); every change is recorded in the ledger by
//! the request's self-audit.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[r#"CREATE TABLE saved_searches (
        id TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        query TEXT NOT NULL,
        shared INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        UNIQUE (owner, name)
    )"#];

const POSTGRES: &[&str] = &[r#"CREATE TABLE saved_searches (
        id TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        query TEXT NOT NULL,
        shared BOOLEAN NOT NULL DEFAULT FALSE,
        created_at BIGINT NOT NULL,
        UNIQUE (owner, name)
    )"#];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => crate::run_all(manager, SQLITE).await,
            DbBackend::Postgres => crate::run_all(manager, POSTGRES).await,
            other => Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        }
    }
}
