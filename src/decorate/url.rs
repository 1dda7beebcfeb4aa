//! Product-URL comparison keys, and finding URLs in tweet text.
//!
//! A tweet gets a buy button when one of its links is "the same" URL as a product's, so both
//! sides are reduced to a key by [`normalize`] before they meet in a hash map. The key drops
//! what does not change the page a browser lands on (scheme, host case, `www.`, default ports,
//! a trailing slash, the fragment, tracking parameters) and keeps everything that might.
//!
//! Cost: this runs for every link of every partner tweet, so it is hand-written. [`normalize_into`]
//! makes one pass over the input and writes into a caller's reused `String` (no allocation once
//! that buffer has grown); [`normalize`] allocates exactly the one `String` it returns.

/// Longer inputs are refused: no product URL is that long, and the bound caps per-tweet work.
pub const MAX_URL_LEN: usize = 2048;

/// Query parameters that only tell analytics where a click came from (compared
/// ASCII-case-insensitively). `utm_*` is matched by prefix in [`is_tracking_param`]. `s` stays:
/// on many shops it is a search or a size, not a share marker.
const TRACKING_PARAMS: [&str; 9] = [
    "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "ref_src", "ref_url",
];

/// The comparison key of an `http`/`https` URL, or `None` when it is not one.
///
/// `HTTPS://www.Burberry.com/limited/trench/?utm_source=tw&color=red#x` becomes
/// `burberry.com/limited/trench?color=red`. Other schemes, scheme-less strings, an empty host,
/// a non-numeric port, whitespace or control characters inside, and inputs over
/// [`MAX_URL_LEN`] bytes give `None`.
pub fn normalize(url: &str) -> Option<String> {
    let mut out = String::new();
    normalize_into(url, &mut out).then_some(out)
}

/// [`normalize`] into `out` (cleared first), so a hot loop can reuse one buffer.
///
/// Returns `false`, leaving `out` in an unspecified state, when `url` has no key.
pub fn normalize_into(url: &str, out: &mut String) -> bool {
    out.clear();
    let url = url.trim_matches(|c: char| c.is_ascii_whitespace());
    if url.len() > MAX_URL_LEN || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return false;
    }
    let Some(rest) = strip_http_scheme(url) else {
        return false;
    };
    // The fragment never reaches the server, and a `?` after `#` belongs to the fragment.
    let rest = match rest.find('#') {
        Some(hash) => &rest[..hash],
        None => rest,
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };

    out.reserve(url.len());
    if !push_host(authority, out) {
        return false;
    }
    out.push_str(path.trim_end_matches('/'));
    if let Some(query) = query {
        let mut first = true;
        for param in query.split('&') {
            if param.is_empty() || is_tracking_param(param) {
                continue;
            }
            out.push(if first { '?' } else { '&' });
            out.push_str(param);
            first = false;
        }
    }
    true
}

/// The rest of `url` after `http://` or `https://` (any case), or `None` for other schemes.
fn strip_http_scheme(url: &str) -> Option<&str> {
    let bytes = url.as_bytes();
    for scheme in ["http://", "https://"] {
        if bytes.len() >= scheme.len() && bytes[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes()) {
            // The matched prefix is ASCII, so its end is a char boundary.
            return Some(&url[scheme.len()..]);
        }
    }
    None
}

/// Writes the host (lower-cased, without `www.`, userinfo or a default port) and any other port.
fn push_host(authority: &str, out: &mut String) -> bool {
    // `user:pass@host`: the host is after the last `@` (so `a.com@b.com` is `b.com`, as browsers go).
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    // An IPv6 literal holds colons of its own; its port, if any, follows the `]`.
    let port_colon = match host_port.rfind(']') {
        Some(bracket) => host_port[bracket..].find(':').map(|c| bracket + c),
        None => host_port.rfind(':'),
    };
    let (host, port) = match port_colon {
        Some(colon) => (&host_port[..colon], &host_port[colon + 1..]),
        None => (host_port, ""),
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let host = match host.as_bytes().get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"www.") => &host[4..],
        _ => host,
    };
    // `shop.example.` is the same host as `shop.example` (a fully qualified name).
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return false;
    }
    let start = out.len();
    out.push_str(host);
    out[start..].make_ascii_lowercase();
    // The scheme is gone from the key, so both schemes' default ports go with it.
    if !port.is_empty() && port != "80" && port != "443" {
        out.push(':');
        out.push_str(port);
    }
    true
}

/// Whether a `key=value` (or bare `key`) query parameter only tracks the click.
fn is_tracking_param(param: &str) -> bool {
    let key = param.split_once('=').map_or(param, |(key, _)| key);
    let bytes = key.as_bytes();
    if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"utm_") {
        return true;
    }
    TRACKING_PARAMS.iter().any(|t| key.eq_ignore_ascii_case(t))
}

/// Appends the `http(s)` URLs found in free text to `out`, skipping ones already there.
///
/// A URL starts at `http://` or `https://` (any case), ends at whitespace or one of `"<>`, and
/// loses trailing sentence punctuation (`.,;:!?'`, and closing brackets without a matching
/// opener inside the URL, so `(see https://x.com/a_(b))` keeps `a_(b)`).
pub fn extract_from_text(text: &str, out: &mut Vec<String>) {
    for url in text_urls(text) {
        if !out.iter().any(|seen| seen == url) {
            out.push(url.to_owned());
        }
    }
}

/// The URLs [`extract_from_text`] would find, in order, borrowed from `text` (no allocation).
pub fn text_urls(text: &str) -> TextUrls<'_> {
    TextUrls { text, pos: 0 }
}

/// Iterator over the URLs in a text; see [`text_urls`].
#[derive(Clone, Debug)]
pub struct TextUrls<'a> {
    /// The text being scanned.
    text: &'a str,
    /// Byte offset where the search for the next `://` resumes.
    pos: usize,
}

impl<'a> Iterator for TextUrls<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        let bytes = text.as_bytes();
        while let Some(found) = text[self.pos..].find("://") {
            let sep = self.pos + found;
            let after = sep + 3;
            self.pos = after;
            let start = if sep >= 5 && bytes[sep - 5..sep].eq_ignore_ascii_case(b"https") {
                sep - 5
            } else if sep >= 4 && bytes[sep - 4..sep].eq_ignore_ascii_case(b"http") {
                sep - 4
            } else {
                continue;
            };
            let end = text[after..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
                .map_or(text.len(), |i| after + i);
            self.pos = end;
            let url = trim_trailing_punctuation(&text[start..end]);
            if url.len() > after - start {
                return Some(url);
            }
        }
        self.pos = text.len();
        None
    }
}

/// Drops sentence punctuation glued to the end of a URL in prose.
fn trim_trailing_punctuation(url: &str) -> &str {
    // Bracket balance is counted once up front and updated as closers are dropped, so a
    // pathological run of `)))` stays linear.
    let count = |c: u8| url.bytes().filter(|&b| b == c).count() as isize;
    let mut unmatched = [
        count(b')') - count(b'('),
        count(b']') - count(b'['),
        count(b'}') - count(b'{'),
    ];
    let mut end = url.len();
    while let Some(&last) = url.as_bytes()[..end].last() {
        let bracket = match last {
            b')' => Some(0),
            b']' => Some(1),
            b'}' => Some(2),
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' => None,
            _ => break,
        };
        if let Some(kind) = bracket {
            if unmatched[kind] <= 0 {
                break;
            }
            unmatched[kind] -= 1;
        }
        end -= 1;
    }
    &url[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_produces_the_comparison_key() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "HTTPS://www.Burberry.com/limited/trench/?utm_source=tw&color=red#x",
                Some("burberry.com/limited/trench?color=red"),
            ),
            ("http://burberry.com/a", Some("burberry.com/a")),
            ("https://burberry.com/a", Some("burberry.com/a")),
            ("hTTp://BURBERRY.com/A/b", Some("burberry.com/A/b")),
            ("https://www.burberry.com", Some("burberry.com")),
            ("https://www.burberry.com/", Some("burberry.com")),
            ("https://burberry.com//", Some("burberry.com")),
            ("https://burberry.com/?", Some("burberry.com")),
            ("https://burberry.com/?x=1", Some("burberry.com?x=1")),
            ("https://burberry.com?x=1", Some("burberry.com?x=1")),
            ("https://burberry.com#top", Some("burberry.com")),
            ("https://burberry.com/a#frag?x=1", Some("burberry.com/a")),
            ("https://WWW.shop.example/p", Some("shop.example/p")),
            ("https://wwwx.example/p", Some("wwwx.example/p")),
            ("https://shop.example.:443/p", Some("shop.example/p")),
            ("https://shop.example:443/p", Some("shop.example/p")),
            ("http://shop.example:80/p", Some("shop.example/p")),
            ("http://shop.example:/p", Some("shop.example/p")),
            ("https://shop.example:8443/p", Some("shop.example:8443/p")),
            ("https://user:pw@Shop.example/p", Some("shop.example/p")),
            ("https://[::1]:8080/p", Some("[::1]:8080/p")),
            ("https://[::1]/p", Some("[::1]/p")),
            ("  https://shop.example/p \n", Some("shop.example/p")),
            ("https://shop.example/caf\u{e9}/", Some("shop.example/caf\u{e9}")),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), *want, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_drops_tracking_params_and_keeps_the_rest_in_order() {
        let cases: &[(&str, &str)] = &[
            ("https://a.com/p?b=2&a=1", "a.com/p?b=2&a=1"),
            ("https://a.com/p?utm_source=x", "a.com/p"),
            ("https://a.com/p?UTM_Medium=x&k=v", "a.com/p?k=v"),
            ("https://a.com/p?utm_=x&k=v", "a.com/p?k=v"),
            ("https://a.com/p?k=v&utm_campaign", "a.com/p?k=v"),
            (
                "https://a.com/p?fbclid=1&gclid=2&dclid=3&msclkid=4&mc_cid=5&mc_eid=6&igshid=7&ref_src=8&ref_url=9",
                "a.com/p",
            ),
            ("https://a.com/p?FBCLID=1&size=m", "a.com/p?size=m"),
            ("https://a.com/p?s=20&color=red", "a.com/p?s=20&color=red"),
            ("https://a.com/p?&&k=v&&", "a.com/p?k=v"),
            ("https://a.com/p?utmsource=x", "a.com/p?utmsource=x"),
            ("https://a.com/p?ref=home", "a.com/p?ref=home"),
            ("https://a.com/p?k=a=b", "a.com/p?k=a=b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Some(*want), "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_refuses_what_is_not_an_http_url() {
        let long = format!("https://a.com/{}", "x".repeat(MAX_URL_LEN));
        let cases: &[&str] = &[
            "",
            "burberry.com/limited",
            "www.burberry.com",
            "ftp://burberry.com/a",
            "mailto:someone@burberry.com",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://?q=1",
            "https://www./p",
            "https://user@/p",
            "https://a.com:https/p",
            "https://a.com/p q",
            "https://a.com/p\tq",
            "https:/a.com/p",
            &long,
        ];
        for input in cases {
            assert_eq!(normalize(input), None, "normalize({input:?})");
        }
        let at_limit = format!("https://a.com/{}", "x".repeat(MAX_URL_LEN - "https://a.com/".len()));
        assert!(normalize(&at_limit).is_some());
    }

    #[test]
    fn normalize_into_reuses_and_clears_the_buffer() {
        let mut buf = String::from("stale");
        assert!(normalize_into("https://a.com/x/", &mut buf));
        assert_eq!(buf, "a.com/x");
        assert!(normalize_into("https://b.com", &mut buf));
        assert_eq!(buf, "b.com");
    }

    #[test]
    fn text_urls_are_found_and_trimmed() {
        let cases: &[(&str, &[&str])] = &[
            ("no links here", &[]),
            ("Shop now: https://burberry.com/trench.", &["https://burberry.com/trench"]),
            ("HTTPS://A.com/x and http://b.com/y!", &["HTTPS://A.com/x", "http://b.com/y"]),
            ("(see https://a.com/x)", &["https://a.com/x"]),
            ("wiki https://en.wikipedia.org/wiki/Foo_(bar)", &["https://en.wikipedia.org/wiki/Foo_(bar)"]),
            ("(https://en.wikipedia.org/wiki/Foo_(bar))", &["https://en.wikipedia.org/wiki/Foo_(bar)"]),
            ("[https://a.com/x]", &["https://a.com/x"]),
            ("{https://a.com/x}", &["https://a.com/x"]),
            ("'https://a.com/x'", &["https://a.com/x"]),
            ("<a href=\"https://a.com/x\">", &["https://a.com/x"]),
            ("<https://a.com/x>", &["https://a.com/x"]),
            ("really?! https://a.com/x?!...", &["https://a.com/x"]),
            ("https://a.com/x?q=1;", &["https://a.com/x?q=1"]),
            ("https://a.com/x?a=b&c=d", &["https://a.com/x?a=b&c=d"]),
            ("line\nhttps://a.com/x\u{3000}next", &["https://a.com/x"]),
            ("ftp://a.com/x mailto:x@y.z", &[]),
            ("http:// nothing", &[]),
            ("https://.", &[]),
            ("ends with https://", &[]),
            ("a://b https://c.com", &["https://c.com"]),
            ("\u{e9}https://a.com", &["https://a.com"]),
        ];
        for (text, want) in cases {
            let got: Vec<&str> = text_urls(text).collect();
            assert_eq!(&got, want, "text_urls({text:?})");
        }
    }

    #[test]
    fn extract_from_text_skips_urls_already_collected() {
        let mut out = vec![String::from("https://a.com/x")];
        extract_from_text("https://a.com/x then https://b.com/y and https://b.com/y", &mut out);
        assert_eq!(out, ["https://a.com/x", "https://b.com/y"]);
    }

    #[test]
    fn trailing_brackets_stay_linear_on_hostile_input() {
        let text = format!("https://a.com/{}", ")".repeat(100_000));
        assert_eq!(text_urls(&text).collect::<Vec<_>>(), ["https://a.com/"]);
    }
}
