//! `--store redis://HOST:PORT[/DB]`: where stock, holds, orders and wallets live when several
//! nodes share them. Checked here, before anything starts; the URL may carry a password, so
//! it is never printed: [`StoreUrl`]'s `Debug` and [`StoreUrl::redacted`] hide it, and a
//! refusal says what is wrong without quoting the value.

use std::fmt;

/// Longest URL accepted: a host name, a port, a database and credentials fit easily.
const MAX_URL_LEN: usize = 1024;

/// Redis's default port, when the URL names none.
const DEFAULT_PORT: u16 = 6379;

/// A checked `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The URL as given (credentials included): only the Redis client sees it.
    url: String,
    /// Where it points, without credentials: what logs and errors show.
    redacted: String,
}

impl StoreUrl {
    /// Checks `text`; the error says what is wrong without quoting `text`.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("must be at most {MAX_URL_LEN} bytes"));
        }
        let Some(rest) = text.strip_prefix("redis://") else {
            return Err(if text.starts_with("rediss://") {
                "must be a redis:// URL: TLS (rediss://) is not supported yet".to_owned()
            } else {
                "must be a redis://HOST:PORT[/DB] URL (no other scheme is supported)".to_owned()
            });
        };
        if rest.contains(['?', '#']) {
            return Err("must be redis://HOST:PORT[/DB], without a query or fragment".to_owned());
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        // Credentials end at the last '@' of the authority (a password may hold '@').
        let (credentials, host_port) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port, DEFAULT_PORT)
            .map_err(|e| e.replace("SCHEME://HOST:PORT", "redis://HOST:PORT[/DB]"))?;
        let db = match path {
            "" | "/" => None,
            _ => {
                let digits = &path[1..];
                if digits.is_empty()
                    || digits.len() > 5
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err("names its database as /N, a number (redis://HOST:PORT/0)".into());
                }
                Some(digits)
            }
        };
        let user = credentials
            .and_then(|c| c.split(':').next())
            .filter(|u| !u.is_empty());
        let mut redacted = String::from("redis://");
        if let Some(user) = user {
            redacted.push_str(user);
            redacted.push(':');
        }
        if credentials.is_some() {
            redacted.push_str("***@");
        }
        redacted.push_str(&format!("{host}:{port}"));
        if let Some(db) = db {
            redacted.push('/');
            redacted.push_str(db);
        }
        Ok(StoreUrl {
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

/// `HOST[:PORT]` (IPv6 in brackets), checked; the port defaults to `default_port`. An error
/// names the URL's shape as `SCHEME://HOST:PORT`, for the caller to fill in.
pub(super) fn split_host_port(host_port: &str, default_port: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or("has an IPv6 host without its closing ']'")?;
        let after = &bracketed[end + 1..];
        (&host_port[..end + 2], after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if !host_ok {
        return Err("must name a host: SCHEME://HOST:PORT".to_owned());
    }
    let port = match port {
        None => default_port,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err("has a port that is not a number from 1 to 65535".to_owned()),
        },
    };
    Ok((host, port))
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for StoreUrl {
    /// The redacted form: a `StoreUrl` never prints its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_passes_with_its_port_and_database() {
        for (text, shown) in [
            ("redis://127.0.0.1:6380", "redis://127.0.0.1:6380"),
            ("redis://localhost", "redis://localhost:6379"),
            (
                "redis://cache.internal:7000/3",
                "redis://cache.internal:7000/3",
            ),
            ("redis://[::1]:6379/", "redis://[::1]:6379"),
        ] {
            let url = StoreUrl::parse(text).expect(text);
            assert_eq!(url.redacted(), shown);
            assert_eq!(url.expose(), text);
        }
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused_with_a_reason() {
        for (text, says) in [
            ("http://localhost:6379", "no other scheme"),
            ("rediss://localhost:6379", "TLS"),
            ("localhost:6379", "redis://"),
            ("redis://", "host"),
            ("redis://:6379", "host"),
            ("redis://host:0", "port"),
            ("redis://host:99999", "port"),
            ("redis://host:port", "port"),
            ("redis://host:6379/x", "database"),
            ("redis://host:6379/0?timeout=1", "query"),
        ] {
            let error = StoreUrl::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = StoreUrl::parse("redis://ops:s3cr3t@db:6379/1").expect("valid");
        assert_eq!(url.redacted(), "redis://ops:***@db:6379/1");
        assert!(!format!("{url:?} {url}").contains("s3cr3t"));
        let url = StoreUrl::parse("redis://:p@ss@db:6379").expect("valid");
        assert_eq!(url.redacted(), "redis://***@db:6379");
        let error = StoreUrl::parse("redis://:s3cr3t@db:notaport").expect_err("bad port");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
