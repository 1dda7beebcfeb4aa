//! NATS: `nats-server` started on loopback, and a minimal client of its text protocol
//! (`CONNECT`, `SUB`, `PUB`, `MSG`, `PING`/`PONG`).
//!
//! Hand-written rather than async-nats so that both sides of the comparison are read the same
//! way: one TCP connection per subscriber, one task per connection, frames scanned in place
//! without building JSON values. The protocol is a few lines of text per message.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::PeerProcess;

/// Starts `nats-server` on a free loopback port.
pub fn start() -> Result<PeerProcess> {
    PeerProcess::start("nats-server", |port, _dir| {
        vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    })
}

/// A connection after the handshake.
pub struct Connection {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: BufWriter<OwnedWriteHalf>,
}

/// Connects, subscribes to `subjects` (sids 1..), and waits for the server's `PONG`, so every
/// subscription is in place when this returns.
pub async fn connect(port: u16, subjects: &[String]) -> Result<Connection> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting to nats-server")?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.starts_with("INFO") {
        bail!("nats-server greeted with {line:?}");
    }
    writer
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"lang\":\"rust\",\"version\":\"loadtest\"}\r\n")
        .await?;
    for (sid, subject) in subjects.iter().enumerate() {
        writer
            .write_all(format!("SUB {subject} {}\r\n", sid + 1).as_bytes())
            .await?;
    }
    writer.write_all(b"PING\r\n").await?;
    writer.flush().await?;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("nats-server closed the connection during the handshake");
        }
        match line.trim_end() {
            "PONG" => break,
            l if l.starts_with("-ERR") => bail!("nats-server: {l}"),
            _ => {}
        }
    }
    Ok(Connection { reader, writer })
}

/// What [`Connection::next`] read.
pub enum Event<'a> {
    /// A message's payload.
    Msg(&'a [u8]),
    /// The server closed the connection or sent `-ERR` (e.g. `Slow Consumer`).
    Closed(String),
}

impl Connection {
    /// Reads the next message, answering `PING`s on the way; `payload` is reused.
    pub async fn next<'a>(
        &mut self,
        line: &mut String,
        payload: &'a mut Vec<u8>,
    ) -> Result<Event<'a>> {
        loop {
            line.clear();
            if self.reader.read_line(line).await? == 0 {
                return Ok(Event::Closed("closed by nats-server".into()));
            }
            let l = line.trim_end();
            if let Some(rest) = l.strip_prefix("MSG ") {
                // `MSG <subject> <sid> [reply-to] <#bytes>`
                let size: usize = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("bad MSG line {l:?}"))?;
                payload.resize(size + 2, 0);
                self.reader.read_exact(payload).await?;
                payload.truncate(size);
                return Ok(Event::Msg(payload));
            } else if l == "PING" {
                self.writer.write_all(b"PONG\r\n").await?;
                self.writer.flush().await?;
            } else if l.starts_with("-ERR") {
                return Ok(Event::Closed(l.to_string()));
            }
        }
    }

    /// Queues one `PUB` (call [`flush`](Self::flush) after a batch).
    pub async fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<()> {
        let header = format!("PUB {subject} {}\r\n", payload.len());
        self.writer.write_all(header.as_bytes()).await?;
        self.writer.write_all(payload).await?;
        self.writer.write_all(b"\r\n").await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.writer.flush().await?;
        Ok(())
    }

    /// A `PING` and its `PONG`: every message published before it has been processed.
    pub async fn round_trip(&mut self) -> Result<()> {
        self.writer.write_all(b"PING\r\n").await?;
        self.writer.flush().await?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("nats-server closed the connection");
            }
            match line.trim_end() {
                "PONG" => return Ok(()),
                "PING" => {
                    self.writer.write_all(b"PONG\r\n").await?;
                    self.writer.flush().await?;
                }
                l if l.starts_with("-ERR") => bail!("nats-server: {l}"),
                _ => {}
            }
        }
    }
}
