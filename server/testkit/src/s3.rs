//! An S3 API server for tests.

/// An S3 API server (moto, from PyPI: `make test-tools` installs it in
/// `~/.cache/custos/pyvenv`) on a local port, stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let bin = format!("{}/.cache/custos/pyvenv/bin/moto_server", std::env::var("HOME").unwrap_or_default());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} (make test-tools installs moto): {e}"));
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("moto did not start listening on port {port} within 30 s");
    }

    /// Creates a bucket, with Object Lock enabled if asked.
    pub fn bucket(&self, name: &str, object_lock: bool) {
        use std::io::{Read as _, Write as _};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let lock = if object_lock { "x-amz-bucket-object-lock-enabled: true\r\n" } else { "" };
        write!(tcp, "PUT /{name} HTTP/1.1\r\nhost: {addr}\r\n{lock}content-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "creating bucket {name}: {answer}");
    }

    /// The store's settings for `s3://bucket/prefix`.
    pub fn settings(
        &self,
        url: &str,
        lock: Option<(custos_engine::objstore::LockMode, u32)>,
    ) -> custos_engine::objstore::Settings {
        custos_engine::objstore::Settings {
            url: url.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("custos-test".into()),
            secret_access_key: Some("custos-test-secret".into()),
            allow_http: true,
            lock,
            keep_local: false,
        }
    }

    /// What an independent client (boto3, which comes with moto) sees of
    /// an object: `{"status": 200|404, "size", "lock_mode", "lock_until",
    /// "version", "delete_version": "ok" or the error code}` (the last
    /// tries to delete the object's version, which a lock refuses).
    pub fn inspect(&self, bucket: &str, key: &str, try_delete: bool) -> serde_json::Value {
        let python = format!("{}/.cache/custos/pyvenv/bin/python", std::env::var("HOME").unwrap_or_default());
        let script = r#"
import json, sys, boto3, botocore
endpoint, bucket, key, try_delete = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="custos-test", aws_secret_access_key="custos-test-secret")
out = {}
try:
    h = s3.head_object(Bucket=bucket, Key=key)
    out.update(status=200, size=h["ContentLength"], lock_mode=h.get("ObjectLockMode"),
               lock_until=h["ObjectLockRetainUntilDate"].isoformat() if "ObjectLockRetainUntilDate" in h else None,
               version=h.get("VersionId"))
    if try_delete:
        try:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=h.get("VersionId"))
            out["delete_version"] = "ok"
        except botocore.exceptions.ClientError as e:
            out["delete_version"] = e.response["Error"]["Code"]
except botocore.exceptions.ClientError as e:
    out["status"] = int(e.response["ResponseMetadata"]["HTTPStatusCode"])
print(json.dumps(out))
"#;
        let out = std::process::Command::new(&python)
            .args(["-c", script, &self.endpoint, bucket, key, if try_delete { "1" } else { "0" }])
            .output()
            .unwrap_or_else(|e| panic!("{python} with boto3 (make test-tools installs moto): {e}"));
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
