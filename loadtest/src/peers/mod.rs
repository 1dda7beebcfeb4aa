//! Peer servers the same workload runs through: NATS for fan-out, Redis for the flash sale.
//! Each is started by the tool on a free loopback port with a temporary directory and stopped,
//! by its own pid, when dropped.

pub mod nats;
pub mod redis;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A peer server process the tool started.
pub struct PeerProcess {
    pub port: u16,
    pub pid: u32,
    child: Child,
    /// Kept so the directory lives as long as the process.
    _dir: tempfile::TempDir,
}

impl PeerProcess {
    /// Starts `program` with `args(port, dir)` and waits until its port accepts connections.
    pub fn start(
        program: &str,
        args: impl FnOnce(u16, &std::path::Path) -> Vec<String>,
    ) -> Result<Self> {
        let path = which(program).with_context(|| {
            format!(
                "{program} is not installed (Debian: apt-get install -y {})",
                package_of(program)
            )
        })?;
        let dir = tempfile::tempdir().context("creating the peer's temp dir")?;
        let port = free_port()?;
        let child = Command::new(path)
            .args(args(port, dir.path()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let pid = child.id();
        let mut peer = Self {
            port,
            pid,
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                bail!("{program} exited at start-up: {status}");
            }
            if std::time::Instant::now() > deadline {
                bail!("{program} did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(peer)
    }

    /// CPU seconds the peer has used (from `/proc/PID/stat`), to compare with the server's.
    pub fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu(self.pid)
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // Only the child this struct started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) of process `pid`, from `/proc/PID/stat` (in USER_HZ = 100).
pub fn proc_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Whether a peer that is not installed fails the run (CI) or is skipped with a warning.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn package_of(program: &str) -> &str {
    match program {
        "redis-server" => "redis-server",
        "nats-server" => "nats-server",
        other => other,
    }
}

/// The path of `program` on `PATH` (also `/usr/sbin`, where Debian puts nats-server).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
