//! A real `nats-server` with JetStream for a test: started on a free loopback port with a
//! temporary store dir (`-js -sd DIR`), ready once it accepts connections, killed by its pid
//! when dropped.
//!
//! Without `nats-server` a test prints a loud message and returns early, except under
//! `CI=true`, where a missing server fails the test (CI installs it: `.ci/run`).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::free_port;

/// A running `nats-server -js` this test started.
pub struct NatsServer {
    pub port: u16,
    child: Child,
    program: PathBuf,
    args: Vec<String>,
    /// The JetStream store; kept so the directory lives as long as the server.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// A server with JetStream, or `None` (after a loud message) when `nats-server` is not
    /// installed outside CI.
    pub fn start() -> Option<NatsServer> {
        let program = installed()?;
        let dir = tempfile::tempdir().expect("a temp dir for nats-server");
        let port = free_port();
        let args = vec![
            "-js".to_owned(),
            "-sd".to_owned(),
            dir.path().display().to_string(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        let child = spawn(&program, &args);
        let mut server = NatsServer {
            port,
            child,
            program,
            args,
            dir,
        };
        server.wait_until_listening();
        Some(server)
    }

    /// The URL a node connects with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store dir (after [`NatsServer::kill`]).
    pub fn restart(&mut self) {
        self.child = spawn(&self.program, &self.args);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server exited at start-up: {status}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on 127.0.0.1:{} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Only the process this struct started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &std::path::Path, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

/// The `nats-server` program, or `None` (after a loud message) when it is not installed,
/// outside CI; under `CI=true` a missing program fails the test.
pub fn installed() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "nats-server is not installed, and CI=true requires it (apt-get install nats-server)"
        );
        eprintln!(
            "\n\n*** SKIPPED: nats-server is not installed (apt-get install nats-server); \
             this test of the bus did not run ***\n"
        );
    }
    found
}
