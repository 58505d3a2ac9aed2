//! `custos keys …`.

use custos_model::Channel;
use std::process::ExitCode;

use clap::Subcommand;
use custos_engine::clock::OsRandom;
use custos_engine::keys::{FileKek, KekError};
use custos_engine::ledger::note::NoteVerifier;
use custos_engine::storage::get_array;
use sea_orm::ConnectionTrait;

use super::failed;
use crate::config::Config;

/// Key management.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the KEK file (mode 0600) if it does not exist yet.
    Init,
    /// Start a new data key now; older keys stay for reading.
    Rotate,
    /// Print the checkpoint verifier key (publish it to auditors).
    PublicKey,
}

/// Runs a `keys` subcommand.
pub async fn keys(config: &Config, cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Init => init(config),
        KeysCommand::Rotate => rotate(config).await,
        KeysCommand::PublicKey => public_key(config).await,
    }
}

fn init(config: &Config) -> ExitCode {
    let path = config.kek_file();
    match FileKek::generate(&path, &OsRandom) {
        Ok(_) => {
            println!("created a new key-encryption key in {} (mode 0600)", path.display());
            println!("back it up somewhere safe: without it the ledger's payloads cannot be read or extended");
            ExitCode::SUCCESS
        }
        Err(KekError::Exists(_)) => {
            println!("the key-encryption key {} already exists; left unchanged", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => failed("cannot create the key-encryption key", &e),
    }
}

async fn rotate(config: &Config) -> ExitCode {
    let (ledger, tasks) = match super::open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    // The same record as the API's (`ledger.key.rotate`), written before
    // the key is made, by the operator at the command line.
    let result = match custos_engine::events::Events::open(ledger.clone(), config.ingest.limits()).await {
        Ok(events) => {
            let operator = custos_engine::events::own::cli_operator();
            events.rotate_key(&operator, Channel::Cli, None).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let _ = ledger.shutdown(tasks).await;
    match result {
        Ok(key_id) => {
            println!("data key {key_id} is now sealing new events; earlier keys remain for reading");
            ExitCode::SUCCESS
        }
        Err(e) => failed("key rotation failed", &e),
    }
}

async fn public_key(config: &Config) -> ExitCode {
    let db = match crate::open_database(config).await {
        Ok(db) => db,
        Err(e) => return failed("cannot open the database", &e),
    };
    let row = db
        .conn()
        .query_one_raw(db.stmt(
            "SELECT k.public_key, m.value AS origin FROM ledger_keys k, ledger_meta m \
             WHERE k.purpose = 'signing' AND m.name = 'origin' ORDER BY k.key_id DESC LIMIT 1",
            vec![],
        ))
        .await;
    let row = match row {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failed("no signing key", &"the ledger has not been created yet (start the server once)");
        }
        Err(e) => return failed("cannot read the signing key", &e),
    };
    let (public, origin) = match (get_array::<32>(&row, "public_key"), row.try_get::<String>("", "origin")) {
        (Ok(p), Ok(o)) => (p, o),
        (Err(e), _) | (_, Err(e)) => return failed("cannot read the signing key", &e),
    };
    match NoteVerifier::from_public_key(&origin, &public) {
        Ok(v) => {
            println!("{}", v.to_vkey());
            ExitCode::SUCCESS
        }
        Err(e) => failed("stored signing key is invalid", &e),
    }
}
