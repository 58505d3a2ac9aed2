//! Spawning Custos like a client would meet it.

use custos_model::Channel;
use std::path::Path;

use custos_engine::clock::OsRandom;
use custos_engine::keys::FileKek;
use custos_server::config::Config;
use secrecy::SecretString;

pub use custos_testkit::both_backends;
pub use custos_testkit::db::{Backend, fresh_postgres, postgres_admin_url};

/// A test configuration with its own data directory and KEK file.
pub async fn test_config(backend: Backend, dir: &Path) -> Option<Config> {
    let mut config = Config::for_test(dir);
    if backend == Backend::Postgres {
        config.database.url = Some(SecretString::from(fresh_postgres().await?));
    }
    FileKek::generate(&config.kek_file(), &OsRandom).unwrap();
    Some(config)
}

/// A running server and an HTTP client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub running: custos_server::Running,
    pub config: Config,
    pub _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server with some settings changed.
    pub async fn spawn_with(backend: Backend, change: impl FnOnce(&mut Config)) -> Option<TestApp> {
        Self::spawn_on(backend, change, std::sync::Arc::new(custos_engine::clock::SystemClock)).await
    }

    /// A server on `clock` (a `ManualClock` to move time instead of sleeping).
    pub async fn spawn_on(
        backend: Backend,
        change: impl FnOnce(&mut Config),
        clock: std::sync::Arc<dyn custos_engine::clock::Clock>,
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(backend, dir.path()).await?;
        // Manual clocks are set to any time: no limit on a clock ahead of
        // the database server's.
        config.ledger.max_clock_ahead_secs = 0;
        change(&mut config);
        Some(Self::start(config, clock, dir).await)
    }

    async fn start(
        config: Config,
        clock: std::sync::Arc<dyn custos_engine::clock::Clock>,
        dir: tempfile::TempDir,
    ) -> TestApp {
        let rng = std::sync::Arc::new(custos_engine::clock::OsRandom);
        let running = custos_server::start_with(&config, clock, rng).await.unwrap();
        TestApp {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            running,
            config,
            _dir: dir,
        }
    }

    /// Another replica of this server: the same database and KEK, its own
    /// data directory and port, with some settings changed.
    pub async fn replica(&self, change: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        config.data_dir = dir.path().to_path_buf();
        std::fs::copy(self.config.kek_file(), config.kek_file()).unwrap();
        change(&mut config);
        Self::start(config, std::sync::Arc::new(custos_engine::clock::SystemClock), dir).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    /// A client signed in as a new user with `roles` (cookies kept, redirects not followed).
    pub async fn signed_in(&self, username: &str, roles: &[&str]) -> reqwest::Client {
        use custos_engine::identity::service::{Acting, NewUser};
        let new = NewUser {
            username: username.into(),
            email: None,
            display_name: None,
            password: SecretString::from("signed in password 1".to_owned()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            must_change_password: false,
        };
        self.running.identity.create_user(&Acting::system(Channel::Cli), new).await.unwrap();
        let c =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let res = c
            .post(format!("{}/auth/login", self.base))
            .form(&[("username", username), ("password", "signed in password 1"), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["location"], "/", "{username} signs in");
        c
    }
}
