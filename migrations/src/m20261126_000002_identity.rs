//! Identity and access: users, roles, recovery codes, API keys, sessions.
//!
//! Secrets are never stored in clear: passwords as argon2id PHC strings, TOTP
//! secrets sealed under a key derived from the KEK, recovery codes and API
//! key secrets as SHA-256 digests (they are long random strings).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    r#"CREATE TABLE roles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        builtin INTEGER NOT NULL DEFAULT 0,
        require_mfa INTEGER NOT NULL DEFAULT 0,
        permissions TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )"#,
    r#"CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        email TEXT,
        display_name TEXT,
        password_hash TEXT NOT NULL,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        mfa_secret BLOB,
        mfa_enabled INTEGER NOT NULL DEFAULT 0,
        mfa_last_step INTEGER,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER,
        password_changed_at INTEGER NOT NULL,
        last_login_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )"#,
    r#"CREATE TABLE user_roles (
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, role_id)
    )"#,
    r#"CREATE TABLE recovery_codes (
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash BLOB NOT NULL,
        used_at INTEGER,
        PRIMARY KEY (user_id, code_hash)
    )"#,
    r#"CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        prefix TEXT NOT NULL UNIQUE,
        secret_hash BLOB NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        last_used_at INTEGER
    )"#,
    r#"CREATE TABLE sessions (
        id TEXT PRIMARY KEY NOT NULL,
        data BLOB NOT NULL,
        expiry_date INTEGER NOT NULL
    )"#,
    "CREATE INDEX sessions_expiry ON sessions (expiry_date)",
];

const POSTGRES: &[&str] = &[
    r#"CREATE TABLE roles (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        builtin SMALLINT NOT NULL DEFAULT 0,
        require_mfa SMALLINT NOT NULL DEFAULT 0,
        permissions TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT,
        display_name TEXT,
        password_hash TEXT NOT NULL,
        must_change_password SMALLINT NOT NULL DEFAULT 0,
        disabled SMALLINT NOT NULL DEFAULT 0,
        mfa_secret BYTEA,
        mfa_enabled SMALLINT NOT NULL DEFAULT 0,
        mfa_last_step BIGINT,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until BIGINT,
        password_changed_at BIGINT NOT NULL,
        last_login_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE user_roles (
        user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role_id BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, role_id)
    )"#,
    r#"CREATE TABLE recovery_codes (
        user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash BYTEA NOT NULL,
        used_at BIGINT,
        PRIMARY KEY (user_id, code_hash)
    )"#,
    r#"CREATE TABLE api_keys (
        id BIGSERIAL PRIMARY KEY,
        prefix TEXT NOT NULL UNIQUE,
        secret_hash BYTEA NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT,
        last_used_at BIGINT
    )"#,
    r#"CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        data BYTEA NOT NULL,
        expiry_date BIGINT NOT NULL
    )"#,
    "CREATE INDEX sessions_expiry ON sessions (expiry_date)",
];

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
