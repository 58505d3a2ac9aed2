//! Serving HTTPS directly: HSTS, and session cookies marked Secure.

use custos_model::Channel;
use std::process::Command;

use custos_engine::clock::OsRandom;
use custos_engine::identity::service::{Acting, NewUser};
use custos_engine::keys::FileKek;
use custos_server::config::Config;
use secrecy::SecretString;

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-D", "-", "-o", "/dev/null"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_with_hsts_and_secure_session_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut config = Config::for_test(dir.path());
    config.server.tls_cert_file = Some(cert);
    config.server.tls_key_file = Some(key);
    FileKek::generate(&config.kek_file(), &OsRandom).unwrap();
    let running = custos_server::start(&config).await.unwrap();
    let new = NewUser {
        username: "tls_user".into(),
        email: None,
        display_name: None,
        password: SecretString::from("tls user password".to_owned()),
        roles: vec!["viewer".into()],
        must_change_password: false,
    };
    running.identity.create_user(&Acting::system(Channel::Cli), new).await.unwrap();
    let base = format!("https://127.0.0.1:{}", running.addr.port());

    let health = curl(&[&format!("{base}/healthz")]);
    assert!(health.starts_with("http/1.1 200") || health.starts_with("http/2 200"), "{health}");
    assert!(health.contains("strict-transport-security: max-age=31536000"), "{health}");

    let login = curl(&["-d", "username=tls_user&password=tls%20user%20password&next=/", &format!("{base}/auth/login")]);
    let cookie =
        login.lines().find(|l| l.starts_with("set-cookie: custos_session=")).unwrap_or_else(|| panic!("{login}"));
    for flag in ["secure", "httponly", "samesite=strict"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    running.shutdown().await.unwrap();

    // Half a TLS configuration is refused at start-up, naming the setting.
    let mut half = Config::for_test(dir.path());
    half.server.tls_cert_file = Some(dir.path().join("cert.pem"));
    let err = custos_server::config::Config::from_figment(
        custos_server::config::Config::figment(None)
            .unwrap()
            .merge(figment::providers::Serialized::default("server.tls_cert_file", half.server.tls_cert_file.clone())),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.tls_cert_file") && err.contains("tls_key_file"), "{err}");
}
