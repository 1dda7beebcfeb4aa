//! `--bus nats://HOST:PORT`: the NATS JetStream server the firehose rides when several nodes
//! share it. Checked here, before anything starts; the URL may carry credentials, so it is
//! never printed: [`BusUrl`]'s `Debug` and [`BusUrl::redacted`] hide them, and a refusal says
//! what is wrong without quoting the value.

use std::fmt;

use super::store_url::split_host_port;

/// Longest URL accepted: a host name, a port and credentials fit easily.
const MAX_URL_LEN: usize = 1024;

/// NATS's default client port, when the URL names none.
const DEFAULT_PORT: u16 = 4222;

/// A checked `nats://[USER[:PASSWORD]@]HOST[:PORT]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BusUrl {
    /// The URL as given (credentials included): only the NATS client sees it.
    url: String,
    /// Where it points, without credentials: what logs and errors show.
    redacted: String,
}

impl BusUrl {
    /// Checks `text`; the error says what is wrong without quoting `text`.
    pub fn parse(text: &str) -> Result<BusUrl, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("must be at most {MAX_URL_LEN} bytes"));
        }
        let Some(rest) = text.strip_prefix("nats://") else {
            return Err(if text.starts_with("tls://") {
                "must be a nats:// URL: TLS (tls://) is not supported yet".to_owned()
            } else {
                "must be a nats://HOST:PORT URL (no other scheme is supported)".to_owned()
            });
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['?', '#', '/', ',']) {
            return Err(
                "must be one nats://HOST:PORT, without a path, query, fragment or list".to_owned(),
            );
        }
        // Credentials end at the last '@' (a password may hold '@').
        let (credentials, host_port) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port, DEFAULT_PORT)
            .map_err(|e| e.replace("SCHEME://HOST:PORT", "nats://HOST:PORT"))?;
        let user = credentials
            .and_then(|c| c.split(':').next())
            .filter(|u| !u.is_empty());
        let mut redacted = String::from("nats://");
        if let Some(user) = user {
            redacted.push_str(user);
            redacted.push(':');
        }
        if credentials.is_some() {
            redacted.push_str("***@");
        }
        redacted.push_str(&format!("{host}:{port}"));
        Ok(BusUrl {
            url: text.to_owned(),
            redacted,
        })
    }

    /// The URL to connect with, credentials included: never log it.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL without its credentials, for logs and errors.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for BusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BusUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for BusUrl {
    /// The redacted form: a `BusUrl` never prints its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_url_passes_with_its_port() {
        for (text, shown) in [
            ("nats://127.0.0.1:4223", "nats://127.0.0.1:4223"),
            ("nats://localhost", "nats://localhost:4222"),
            ("nats://[::1]:4222/", "nats://[::1]:4222"),
        ] {
            let url = BusUrl::parse(text).expect(text);
            assert_eq!(url.redacted(), shown);
            assert_eq!(url.expose(), text);
        }
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused_with_a_reason() {
        for (text, says) in [
            ("redis://localhost:4222", "no other scheme"),
            ("tls://localhost:4222", "TLS"),
            ("localhost:4222", "nats://"),
            ("nats://", "host"),
            ("nats://:4222", "host"),
            ("nats://host:0", "port"),
            ("nats://host:port", "port"),
            ("nats://host:4222/x", "path"),
            ("nats://a:4222,nats://b:4222", "list"),
        ] {
            let error = BusUrl::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = BusUrl::parse("nats://ops:s3cr3t@bus:4222").expect("valid");
        assert_eq!(url.redacted(), "nats://ops:***@bus:4222");
        assert!(!format!("{url:?} {url}").contains("s3cr3t"));
        let error = BusUrl::parse("nats://:s3cr3t@bus:notaport").expect_err("bad port");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
