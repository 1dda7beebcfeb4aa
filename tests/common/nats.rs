//! A real `nats-server` with JetStream for a test: started on a free loopback port with a
//! temporary store dir (`-js -sd DIR`), ready once it accepts connections, killed by its pid
//! when dropped (see `loopback_server`, which also says what happens when `nats-server` is not
//! installed).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;

use super::redis_server::loopback_server::{self, LoopbackServer, Program};

const NATS_SERVER: Program = Program {
    name: "nats-server",
    package: "nats-server",
    skipped: "this test of the bus",
    ready: listening,
    ready_means: "listen",
};

/// A running `nats-server -js` this test started.
pub struct NatsServer {
    server: LoopbackServer,
}

impl NatsServer {
    /// A server with JetStream, or `None` (after a loud message) when `nats-server` is not
    /// installed outside CI.
    pub fn start() -> Option<NatsServer> {
        let server = LoopbackServer::start(&NATS_SERVER, |port, dir| {
            vec![
                "-js".to_owned(),
                "-sd".to_owned(),
                dir.display().to_string(),
                "-a".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
            ]
        })?;
        Some(NatsServer { server })
    }

    /// The URL a node connects with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port and store dir (after [`NatsServer::kill`]).
    pub fn restart(&mut self) {
        self.server.restart();
    }
}

/// Whether a server listens on `port`.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The `nats-server` program, or `None` (after a loud message) when it is not installed,
/// outside CI; under `CI=true` a missing program fails the test.
pub fn installed() -> Option<PathBuf> {
    loopback_server::installed(&NATS_SERVER)
}
