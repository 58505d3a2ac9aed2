//! `custos user …`: manage users from the command line (recorded in the
//! ledger with channel `cli`).

use custos_model::Channel;
use std::io::Read as _;
use std::process::ExitCode;

use clap::Subcommand;
use custos_engine::identity::service::{Acting, NewUser};
use secrecy::{ExposeSecret as _, SecretString};

use super::failed;
use crate::config::Config;

/// User management.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Without --password-stdin a random password is printed once.
    Create {
        /// User name (3-64: letters, digits, . _ - @).
        #[arg(long)]
        username: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// A role (repeat for several), e.g. --role compliance_officer.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (the user must change it at next sign-in); lifts a lockout.
    ResetPassword {
        /// User name.
        username: String,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user (sessions end at their next request).
    Disable {
        /// User name.
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        /// User name.
        username: String,
    },
}

fn password(from_stdin: bool) -> Result<(SecretString, bool), String> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| e.to_string())?;
        let line = s.lines().next().unwrap_or_default().to_owned();
        return Ok((SecretString::from(line), false));
    }
    let pw = custos_engine::identity::password::generate(&custos_engine::clock::OsRandom).map_err(|e| e.to_string())?;
    Ok((pw, true))
}

/// Runs a `user` subcommand.
pub async fn user(config: &Config, cmd: UserCommand) -> ExitCode {
    let (ledger, tasks) = match super::open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let events = match custos_engine::events::Events::open(ledger.clone(), config.ingest.limits()).await {
        Ok(e) => std::sync::Arc::new(e),
        Err(e) => {
            let _ = ledger.shutdown(tasks).await;
            return failed("cannot open the events service", &e);
        }
    };
    let identity = match crate::open_identity(config, events).await {
        Ok(i) => i,
        Err(e) => {
            let _ = ledger.shutdown(tasks).await;
            return failed("cannot open identities", &e);
        }
    };
    let actor = Acting::system(Channel::Cli);
    let result: Result<String, String> = async {
        match cmd {
            UserCommand::Create { username, email, display_name, roles, password_stdin } => {
                let (pw, generated) = password(password_stdin)?;
                let new = NewUser {
                    username: username.clone(),
                    email,
                    display_name,
                    password: pw.clone(),
                    roles,
                    must_change_password: generated,
                };
                identity.create_user(&actor, new).await.map_err(|e| e.to_string())?;
                Ok(if generated {
                    format!(
                        "user `{username}` created; password (shown only now, to be changed at first sign-in): {}",
                        pw.expose_secret()
                    )
                } else {
                    format!("user `{username}` created")
                })
            }
            UserCommand::ResetPassword { username, password_stdin } => {
                let (pw, generated) = password(password_stdin)?;
                identity.reset_password(&actor, &username, &pw, true).await.map_err(|e| e.to_string())?;
                Ok(if generated {
                    format!(
                        "new password for `{username}` (shown only now, to be changed at next sign-in): {}",
                        pw.expose_secret()
                    )
                } else {
                    format!("password of `{username}` reset; it must be changed at next sign-in")
                })
            }
            UserCommand::Disable { username } => {
                identity.set_disabled(&actor, &username, true).await.map_err(|e| e.to_string())?;
                Ok(format!("user `{username}` disabled"))
            }
            UserCommand::Enable { username } => {
                identity.set_disabled(&actor, &username, false).await.map_err(|e| e.to_string())?;
                Ok(format!("user `{username}` enabled"))
            }
        }
    }
    .await;
    let _ = ledger.shutdown(tasks).await;
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => failed("user command failed", &e),
    }
}
