//! A real `redis-server` for a test: started on a free loopback port with a temporary dir and
//! the settings buyline requires (`--appendonly yes --appendfsync always`, no RDB snapshots),
//! ready once it answers PING, killed by its pid when dropped (see `loopback_server`, which
//! also says what happens when `redis-server` is not installed).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[path = "loopback_server.rs"]
pub mod loopback_server;

use loopback_server::{LoopbackServer, Program};

const REDIS_SERVER: Program = Program {
    name: "redis-server",
    package: "redis-server",
    skipped: "this test of the Redis engine",
    ready: ping,
    ready_means: "answer PING",
};

/// A running `redis-server` this test started.
pub struct RedisServer {
    server: LoopbackServer,
}

impl RedisServer {
    /// A server with buyline's settings, or `None` (after a loud message) when `redis-server`
    /// is not installed outside CI.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with `extra` arguments after buyline's settings (later ones win).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let server = LoopbackServer::start(&REDIS_SERVER, |port, dir| {
            let port_arg = port.to_string();
            let dir_arg = dir.display().to_string();
            let mut args = vec![
                "--port",
                &port_arg,
                "--bind",
                "127.0.0.1",
                "--dir",
                &dir_arg,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ];
            args.extend_from_slice(extra);
            args.iter().map(|arg| (*arg).to_owned()).collect()
        })?;
        Some(RedisServer { server })
    }

    /// SIGKILL, as a crash: Redis writes nothing more.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port and dir (after [`RedisServer::kill`]): it reloads its
    /// append-only file.
    pub fn restart(&mut self) {
        self.server.restart();
    }

    /// The URL a client connects with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.server.port)
    }

    /// Redis's working directory: its AOF files are under `appendonlydir/`.
    pub fn dir(&self) -> &std::path::Path {
        self.server.dir()
    }

    /// The process id (to kill it in a crash test).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// How many keys Redis holds (`DBSIZE` on database 0), over a plain socket, without a
    /// runtime: a test server started on this Redis has written its catalog by then.
    pub fn key_count(&self) -> u64 {
        use std::io::BufRead;
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.server.port)).expect("redis-server answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        stream.write_all(b"DBSIZE\r\n").expect("DBSIZE sent");
        let mut reply = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut reply)
            .expect("DBSIZE's reply");
        reply
            .trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DBSIZE answered {reply:?}"))
    }
}

/// Whether a server on `port` answers PING with PONG.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// The `redis-server` program, or `None` (after a loud message) when it is not installed,
/// outside CI; under `CI=true` a missing program fails the test.
pub fn installed() -> Option<std::path::PathBuf> {
    loopback_server::installed(&REDIS_SERVER)
}

/// A plain connection to `redis`, to look at keys and change settings as an operator would.
pub async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a plain connection")
}
