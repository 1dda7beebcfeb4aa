//! A server program a test starts for itself (`redis-server`, `nats-server`): on a free
//! loopback port with a temporary dir, ready once it answers, killed by its pid when dropped.
//!
//! Without the program a test prints a loud message and returns early, except under
//! `CI=true`, where a missing program fails the test (CI installs them: `.ci/run`).
//!
//! A child of `redis.rs` (which some tests include on its own, without `mod.rs`); `nats.rs`
//! reaches it through `redis_server`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A server program, as the tests use it.
pub struct Program {
    /// The executable's name, looked up on `PATH`, `/usr/bin` and `/usr/sbin`.
    pub name: &'static str,
    /// The Debian package that installs it, for the messages.
    pub package: &'static str,
    /// What a test skipped for its absence did not check ("this test of the bus").
    pub skipped: &'static str,
    /// Whether a server on this loopback port answers.
    pub ready: fn(port: u16) -> bool,
    /// What answering means, for the message when it does not in time ("listen", "answer
    /// PING").
    pub ready_means: &'static str,
}

/// A running server this test started.
pub struct LoopbackServer {
    pub port: u16,
    child: Child,
    program: &'static Program,
    /// The executable and its arguments, to start it again on the same port and dir.
    path: PathBuf,
    args: Vec<String>,
    /// Its working directory, kept so the directory lives as long as the server.
    dir: tempfile::TempDir,
}

impl LoopbackServer {
    /// Starts `program` with the arguments `args` makes of its port and dir, and waits until
    /// it is ready; `None` (after a loud message) when it is not installed, outside CI.
    pub fn start(
        program: &'static Program,
        args: impl FnOnce(u16, &Path) -> Vec<String>,
    ) -> Option<LoopbackServer> {
        let path = installed(program)?;
        let dir = tempfile::tempdir()
            .unwrap_or_else(|error| panic!("a temp dir for {}: {error}", program.name));
        let port = free_port();
        let args = args(port, dir.path());
        let child = spawn(program, &path, &args, dir.path());
        let mut server = LoopbackServer {
            port,
            child,
            program,
            path,
            args,
            dir,
        };
        server.wait_until_ready();
        Some(server)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and dir (after [`LoopbackServer::kill`]).
    pub fn restart(&mut self) {
        self.child = spawn(self.program, &self.path, &self.args, self.dir.path());
        self.wait_until_ready();
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id (to kill it in a crash test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited at start-up: {status}", self.program.name);
            }
            if (self.program.ready)(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not {} on 127.0.0.1:{} within {} s",
                self.program.name,
                self.program.ready_means,
                self.port,
                READY_WITHIN.as_secs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        // Only the process this struct started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &Program, path: &Path, args: &[String], dir: &Path) -> Child {
    Command::new(path)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("{} starts: {error}", program.name))
}

/// The program's path, or `None` (after a loud message) when it is not installed, outside
/// CI; under `CI=true` a missing program fails the test.
pub fn installed(program: &Program) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program.name))
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "{} is not installed, and CI=true requires it (apt-get install {})",
            program.name, program.package
        );
        eprintln!(
            "\n\n*** SKIPPED: {} is not installed (apt-get install {}); {} did not run ***\n",
            program.name, program.package, program.skipped
        );
    }
    found
}

/// A loopback port nobody listens on now (bound, then freed).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}
