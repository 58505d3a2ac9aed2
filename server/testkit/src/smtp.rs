//! A real SMTP server for tests: `scripts/smtp-sink.py` (aiosmtpd, with
//! AUTH), each message it accepts kept as an `.eml` file.

/// The sink's user name.
pub const USER: &str = "custos";

/// The aiosmtpd sink, stopped when dropped.
pub struct SmtpSink {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts a sink taking `USER` and `password`.
    pub fn start(password: &str) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let script = crate::repo_file("scripts/smtp-sink.py");
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--user", USER, "--password", password, "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the SMTP sink needs /usr/bin/python3 with aiosmtpd (make test-tools installs python3-aiosmtpd)");
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "the SMTP sink did not start: {line:?}");
        SmtpSink { child, port, dir }
    }

    /// The messages received, oldest first, as sent.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .map(|e| e.path())
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
