//! A bare HTTP/1.1 client for the flash-sale buyers: one keep-alive connection per buyer,
//! requests written by hand, responses read in place (status line, `Content-Length`, body).
//!
//! With reqwest each request cost the tester about twice the CPU the Redis peer's RESP client
//! spends (0.90 against 0.46 cores at the same rates), so the HTTP comparison measured the
//! tester. This costs about what the WebSocket buyers and the RESP client cost.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head or body the tool expects from the server.
const MAX_RESPONSE: usize = 1 << 20;

/// A keep-alive connection to the server.
pub struct Connection {
    server: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    len: usize,
    request: Vec<u8>,
}

/// A response: its status and body.
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a str,
}

impl Connection {
    /// A connection to `server` (opened now, and again if the server closes it).
    pub async fn connect(server: SocketAddr, host: &str) -> Result<Connection> {
        let mut connection = Connection {
            server,
            host: host.to_string(),
            stream: None,
            buf: vec![0; 16 * 1024],
            len: 0,
            request: Vec::with_capacity(2048),
        };
        connection.open().await?;
        Ok(connection)
    }

    async fn open(&mut self) -> Result<()> {
        let stream = TcpStream::connect(self.server)
            .await
            .context("connecting")?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.len = 0;
        Ok(())
    }

    /// `POST path` with a JSON `body`, the bearer `token` and `headers`; waits for the reply.
    pub async fn post(
        &mut self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Response<'_>> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        )?;
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body.as_bytes());
        let reused = self.stream.is_some();
        if !reused {
            self.open().await?;
        }
        let (status, body_at, body_len, close) = match self.exchange().await {
            // The server closes a kept-alive connection idle past its --header-timeout. Closed
            // before a byte of the answer, it never read this request: send it on a new one.
            Err(_) if reused && self.len == 0 => {
                self.open().await?;
                self.exchange().await?
            }
            result => result?,
        };
        if close {
            self.stream = None;
        }
        // One request at a time: nothing may follow the response.
        let rest = self.len - (body_at + body_len);
        if rest != 0 {
            self.stream = None;
            bail!("the server sent {rest} bytes after a response");
        }
        let body = std::str::from_utf8(&self.buf[body_at..body_at + body_len])
            .context("the response body is not UTF-8")?;
        Ok(Response { status, body })
    }

    /// Sends the request in `request` and reads its response; the connection is dropped on error.
    async fn exchange(&mut self) -> Result<(u16, usize, usize, bool)> {
        self.len = 0;
        let stream = self.stream.as_mut().context("no connection")?;
        if let Err(error) = stream.write_all(&self.request).await {
            self.stream = None;
            return Err(error).context("sending the request");
        }
        let response = self.read_response().await;
        if response.is_err() {
            self.stream = None;
        }
        response
    }

    /// Reads one response into `buf`: its status, where its body starts, the body's length, and
    /// whether the server closes the connection after it.
    async fn read_response(&mut self) -> Result<(u16, usize, usize, bool)> {
        self.len = 0;
        let head_end = loop {
            if let Some(at) = self.buf[..self.len]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut body_len = None;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                body_len = Some(value.parse::<usize>().context("Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not expected from the server");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let body_len = body_len.context("a response without Content-Length")?;
        if head_end + body_len > MAX_RESPONSE {
            bail!("a response of {} bytes", head_end + body_len);
        }
        while self.len < head_end + body_len {
            self.fill().await?;
        }
        Ok((status, head_end, body_len, close))
    }

    /// Reads more bytes into `buf`, growing it up to [`MAX_RESPONSE`].
    async fn fill(&mut self) -> Result<()> {
        if self.len == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                bail!("a response longer than {MAX_RESPONSE} bytes");
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let stream = self.stream.as_mut().context("no connection")?;
        let n = stream.read(&mut self.buf[self.len..]).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request on a connection with the next of `responses`, and
    /// records the requests it read.
    async fn serve(
        responses: Vec<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            let (mut socket, _) = listener.accept().await.unwrap();
            for response in responses {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then the body its Content-Length announces.
                loop {
                    let n = socket.read(&mut chunk).await.unwrap();
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(at) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if request.len() >= at + 4 + len {
                            break;
                        }
                    }
                }
                seen.push(String::from_utf8(request).unwrap());
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            seen
        });
        (addr, server)
    }

    #[tokio::test]
    async fn posts_on_one_keep_alive_connection_and_reads_status_and_body() {
        let (addr, server) = serve(vec![
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"id\":\"r_1\"}\n",
            "HTTP/1.1 409 Conflict\r\nContent-Length: 19\r\n\r\n{\"code\":\"sold_out\"}",
        ])
        .await;
        let mut connection = Connection::connect(addr, "example:80").await.unwrap();
        let reply = connection
            .post("/v1/reservations", "T", &[("Idempotency-Key", "k1")], "{}")
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body), (201, "{\"id\":\"r_1\"}\n"));
        let reply = connection
            .post("/v1/orders", "T", &[], "{\"a\":1}")
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body), (409, "{\"code\":\"sold_out\"}"));
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /v1/reservations HTTP/1.1\r\nHost: example:80\r\n"));
        assert!(seen[0].contains("Authorization: Bearer T\r\n"));
        assert!(seen[0].contains("Idempotency-Key: k1\r\n"));
        assert!(seen[1].ends_with("\r\n\r\n{\"a\":1}"));
    }

    #[tokio::test]
    async fn a_kept_alive_connection_closed_while_idle_is_replaced_and_the_request_sent_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut requests = 0;
            for _ in 0..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(chunk[..n].ends_with(b"{}"), "one whole request");
                requests += 1;
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                // Then idle too long: the server closes its side, as buyline does.
            }
            requests
        });
        let mut connection = Connection::connect(addr, "h").await.unwrap();
        assert_eq!(
            connection.post("/", "T", &[], "{}").await.unwrap().body,
            "ok"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            connection.post("/", "T", &[], "{}").await.unwrap().body,
            "ok"
        );
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_chunked_or_unsized_response_is_an_error_not_a_hang() {
        for response in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n{}",
        ] {
            let (addr, _server) = serve(vec![response]).await;
            let mut connection = Connection::connect(addr, "h").await.unwrap();
            assert!(connection.post("/", "T", &[], "{}").await.is_err());
        }
    }
}
