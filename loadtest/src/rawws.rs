//! A bare WebSocket client for subscribers: the upgrade by hand, then frames read in place
//! from a buffer (server frames are unmasked), with no per-message allocation.
//!
//! The fan-out subscribers use it so that the buyline side and the NATS side of a comparison
//! cost the tester about the same per message: a header parse and a scan of the payload.
//! (tokio-tungstenite allocates and UTF-8-checks every message, which made the tester, not the
//! server, the limit.)

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `path` on `server` and completes the upgrade; `token` goes in `?token=`.
pub async fn connect(server: SocketAddr, host: &str, path: &str) -> Result<Connection> {
    let mut stream = TcpStream::connect(server).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: bG9hZHRlc3Qgc3Vic2NyaWJlcg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    let head_end = loop {
        if let Some(at) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if len == buf.len() {
            bail!("upgrade response too long");
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            bail!("the server closed the connection during the upgrade");
        }
        len += n;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    if !head.starts_with("HTTP/1.1 101") {
        bail!(
            "the upgrade answered {:?}",
            head.lines().next().unwrap_or("")
        );
    }
    // Bytes after the response head are the first frames.
    buf.copy_within(head_end..len, 0);
    Ok(Connection {
        stream,
        buf,
        start: 0,
        end: len - head_end,
        message: Vec::new(),
    })
}

/// An upgraded connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being assembled.
    message: Vec<u8>,
}

/// A complete message.
pub enum Frame<'a> {
    Text(&'a [u8]),
    Close,
}

impl Connection {
    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        let payload = text.as_bytes();
        let mask = [0x5a, 0xc3, 0x19, 0x7e];
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// Closes as a browser does: a masked close frame (1000, normal closure), then waits for the
    /// server's close frame or the end of the stream, so the server has done its whole share of
    /// the connection's work before the caller counts it done.
    pub async fn close(mut self) -> Result<()> {
        let mask = [0x5a, 0xc3, 0x19, 0x7e];
        let code = 1000u16.to_be_bytes();
        let frame = [
            0x88,
            0x80 | 2,
            mask[0],
            mask[1],
            mask[2],
            mask[3],
            code[0] ^ mask[0],
            code[1] ^ mask[1],
        ];
        self.stream.write_all(&frame).await?;
        // Pushes still on the way are skipped; the loop ends at the close frame or EOF.
        while let Frame::Text(_) = self.next().await? {}
        Ok(())
    }

    /// Ensures `n` buffered bytes from `start`, reading more as needed.
    async fn fill(&mut self, n: usize) -> Result<bool> {
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if n > self.buf.len() {
                self.buf.resize(n.next_power_of_two(), 0);
            }
            let read = self.stream.read(&mut self.buf[self.end..]).await?;
            if read == 0 {
                return Ok(false);
            }
            self.end += read;
        }
        Ok(true)
    }

    /// The next complete text message (pings are answered, pongs skipped).
    pub async fn next(&mut self) -> Result<Frame<'_>> {
        loop {
            if !self.fill(2).await? {
                return Ok(Frame::Close);
            }
            let b0 = self.buf[self.start];
            let b1 = self.buf[self.start + 1];
            let (len, header) = match b1 & 0x7f {
                126 => {
                    if !self.fill(4).await? {
                        return Ok(Frame::Close);
                    }
                    let s = self.start;
                    (
                        u16::from_be_bytes([self.buf[s + 2], self.buf[s + 3]]) as usize,
                        4,
                    )
                }
                127 => {
                    if !self.fill(10).await? {
                        return Ok(Frame::Close);
                    }
                    let s = self.start;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[s + 2..s + 10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n as usize, 2),
            };
            if b1 & 0x80 != 0 {
                bail!("the server sent a masked frame");
            }
            if !self.fill(header + len).await? {
                return Ok(Frame::Close);
            }
            let payload = self.start + header..self.start + header + len;
            self.start += header + len;
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0f {
                0x1 | 0x2 if fin => return Ok(Frame::Text(&self.buf[payload])),
                0x1 | 0x2 => {
                    self.message.clear();
                    self.message.extend_from_slice(&self.buf[payload]);
                }
                0x0 => {
                    self.message.extend_from_slice(&self.buf[payload]);
                    if fin {
                        return Ok(Frame::Text(&self.message));
                    }
                }
                0x8 => return Ok(Frame::Close),
                0x9 => {
                    let data = self.buf[payload].to_vec();
                    let mask = [0u8; 4];
                    let mut pong = vec![0x8a, 0x80 | data.len() as u8];
                    pong.extend_from_slice(&mask);
                    pong.extend_from_slice(&data);
                    self.stream.write_all(&pong).await?;
                }
                _ => {}
            }
        }
    }
}
