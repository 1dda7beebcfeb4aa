//! Redis: `redis-server` started on loopback with an append-only file, the standard Lua
//! reserve script, and a minimal RESP client (one request in flight per connection, like the
//! buyline side of the comparison).

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::PeerProcess;

/// The flash-sale reservation, atomically: the product is on sale and has stock, the customer
/// stays within the per-customer limit, then decrement, count the customer's units, and store
/// the hold with a TTL. Returns the units left, or -1 sold out, -2 insufficient stock,
/// -3 limit exceeded.
///
/// KEYS: stock, customer's count, hold. ARGV: quantity, limit (0 none), hold TTL s, hold value.
pub const RESERVE_SCRIPT: &str = r#"
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if stock <= 0 then return -1 end
if stock < qty then return -2 end
local limit = tonumber(ARGV[2])
if limit > 0 then
  local have = tonumber(redis.call('GET', KEYS[2]) or '0')
  if have + qty > limit then return -3 end
end
redis.call('DECRBY', KEYS[1], qty)
redis.call('INCRBY', KEYS[2], qty)
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
return stock - qty
"#;

/// Starts `redis-server` with AOF on (`appendfsync` is set per run with `CONFIG SET`), no RDB
/// snapshots, in a temporary directory.
pub fn start() -> Result<PeerProcess> {
    PeerProcess::start("redis-server", |port, dir| {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.display().to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        .map(String::from)
        .to_vec()
    })
}

/// A RESP reply. (Simple strings and arrays are only ever shown, through `Debug`.)
#[derive(Debug)]
#[allow(dead_code)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
}

impl Connection {
    pub async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .context("connecting to redis-server")?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(read),
            writer,
            out: Vec::with_capacity(256),
        })
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.out.clear();
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&self.out).await?;
        read_reply(&mut self.reader).await
    }

    /// `call` with string arguments, failing on an error reply.
    pub async fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match self.call(&bytes).await? {
            Reply::Error(e) => bail!("redis {}: {e}", args.first().copied().unwrap_or("")),
            reply => Ok(reply),
        }
    }
}

fn read_reply(
    reader: &mut BufReader<OwnedReadHalf>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            bail!("redis-server closed the connection");
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Integer(rest.parse().context("bad RESP integer")?),
            "$" => {
                let len: i64 = rest.parse().context("bad RESP length")?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0; len as usize + 2];
                    reader.read_exact(&mut data).await?;
                    data.truncate(len as usize);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let n: i64 = rest.parse().context("bad RESP array length")?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_reply(reader).await?);
                }
                Reply::Array(items)
            }
            _ => bail!("unexpected RESP line {line:?}"),
        })
    })
}
