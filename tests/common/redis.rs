//! A real `redis-server` for a test: started on a free loopback port with a temporary dir and
//! the settings buyline requires (`--appendonly yes --appendfsync always`, no RDB snapshots),
//! ready once it answers PING, killed by its pid when dropped.
//!
//! Without `redis-server` a test prints a loud message and returns early, except under
//! `CI=true`, where a missing server fails the test (CI installs it: `.ci/run`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` this test started.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    /// The program and its arguments, to start it again on the same port and dir.
    program: PathBuf,
    args: Vec<String>,
    /// Kept so the directory lives as long as the server.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server with buyline's settings, or `None` (after a loud message) when `redis-server`
    /// is not installed outside CI.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with `extra` arguments after buyline's settings (later ones win).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let program = installed()?;
        let dir = tempfile::tempdir().expect("a temp dir for redis-server");
        let port = free_port();
        let port_arg = port.to_string();
        let dir_arg = dir.path().display().to_string();
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
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let child = spawn(&program, &args, dir.path());
        let mut server = RedisServer {
            port,
            child,
            program,
            args,
            dir,
        };
        server.wait_for_ping();
        Some(server)
    }

    /// SIGKILL, as a crash: Redis writes nothing more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and dir (after [`RedisServer::kill`]): it reloads its
    /// append-only file.
    pub fn restart(&mut self) {
        self.child = spawn(&self.program, &self.args, self.dir.path());
        self.wait_for_ping();
    }

    /// The URL a client connects with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Redis's working directory: its AOF files are under `appendonlydir/`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The process id (to kill it in a crash test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many keys Redis holds (`DBSIZE` on database 0), over a plain socket, without a
    /// runtime: a test server started on this Redis has written its catalog by then.
    pub fn key_count(&self) -> u64 {
        use std::io::BufRead;
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("redis-server answers");
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

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited at start-up: {status}");
            }
            if ping(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on 127.0.0.1:{} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Only the process this struct started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &std::path::Path, args: &[String], dir: &std::path::Path) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
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
pub fn installed() -> Option<PathBuf> {
    let Some(program) = redis_server() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "redis-server is not installed, and CI=true requires it (apt-get install redis-server)"
        );
        eprintln!(
            "\n\n*** SKIPPED: redis-server is not installed (apt-get install redis-server); \
             this test of the Redis engine did not run ***\n"
        );
        return None;
    };
    Some(program)
}

fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on now (bound, then freed).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// A plain connection to `redis`, to look at keys and change settings as an operator would.
pub async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a plain connection")
}
