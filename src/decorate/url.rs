//! Product-URL comparison keys, and finding URLs in tweet text.
//!
//! A tweet gets a buy button when one of its links is "the same" URL as a product's, so both
//! sides are reduced to a key by [`normalize`] before they meet in a hash map. The key drops
//! what does not change the page a browser lands on (scheme, host case, `www.`, default ports,
//! a trailing slash, the fragment, tracking parameters) and keeps everything that might.
//!
//! Cost: this runs for every link of every partner tweet, so it is hand-written.
//! [`normalize_into`] makes one table-driven pass over the input and writes into a caller's
//! reused `String` (no allocation once that buffer has grown); [`normalize`] allocates exactly
//! the one `String` it returns. About 75 ns for a 100-byte link (`cargo bench --bench decorate`).

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
/// a non-numeric port, whitespace or control characters before the fragment, and inputs over
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
    let url = url.trim_ascii();
    if url.len() > MAX_URL_LEN {
        return false;
    }
    let Some(rest) = strip_http_scheme(url) else {
        return false;
    };
    let bytes = rest.as_bytes();

    // One forward pass: the authority runs to the first `/`, `?` or `#`. Userinfo ends at
    // the last `@`; the port starts at the last `:` not inside an IPv6 literal's brackets.
    let mut host_start = 0;
    let mut port_colon = None;
    let mut i = scan(bytes, 0, AUTHORITY_MARK);
    while i < bytes.len() {
        match bytes[i] {
            b'/' | b'?' | b'#' => break,
            b'@' => {
                host_start = i + 1;
                port_colon = None;
            }
            b':' => port_colon = Some(i),
            b']' => port_colon = None,
            _ => return false,
        }
        i = scan(bytes, i + 1, AUTHORITY_MARK);
    }
    let authority_end = i;
    let (host, port) = match port_colon {
        Some(colon) => (&rest[host_start..colon], &rest[colon + 1..authority_end]),
        None => (&rest[host_start..authority_end], ""),
    };
    out.reserve(url.len());
    if !push_host(host, port, out) {
        return false;
    }

    // The path, to `?` or `#`; the fragment never reaches the server, so `#` ends everything.
    let path_start = i;
    i = scan(bytes, i, PATH_END);
    if bytes
        .get(i)
        .is_some_and(|&b| CLASS[usize::from(b)] & FORBIDDEN != 0)
    {
        return false;
    }
    out.push_str(rest[path_start..i].trim_end_matches('/'));

    if bytes.get(i) == Some(&b'?') {
        let mut first = true;
        while bytes.get(i).is_some_and(|&b| b != b'#') {
            let param_start = i + 1;
            i = scan(bytes, param_start, PARAM_END);
            if bytes
                .get(i)
                .is_some_and(|&b| CLASS[usize::from(b)] & FORBIDDEN != 0)
            {
                return false;
            }
            let param = &rest[param_start..i];
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

/// Whitespace and control characters: a URL cannot hold them, so meeting one means the input
/// is prose or garbage, not a link. Every scan stops at them.
const FORBIDDEN: u8 = 1;
/// Bytes that end or structure the authority: `/ ? # @ : ]`.
const AUTHORITY_MARK: u8 = 2;
/// Bytes that end the path: `? #`.
const PATH_END: u8 = 4;
/// Bytes that end a query parameter: `& #`.
const PARAM_END: u8 = 8;

/// Each byte's classes, so the scans test one table entry a byte instead of several
/// comparisons (about twice as fast on a typical product URL).
static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if b <= b' ' as usize || b == 0x7f {
            class[b] = FORBIDDEN;
        }
        b += 1;
    }
    class[b'/' as usize] = AUTHORITY_MARK;
    class[b'@' as usize] = AUTHORITY_MARK;
    class[b':' as usize] = AUTHORITY_MARK;
    class[b']' as usize] = AUTHORITY_MARK;
    class[b'?' as usize] = AUTHORITY_MARK | PATH_END;
    class[b'#' as usize] = AUTHORITY_MARK | PATH_END | PARAM_END;
    class[b'&' as usize] = PARAM_END;
    class
};

/// The index of the first byte from `from` that is forbidden or in `stop`, or `bytes.len()`.
fn scan(bytes: &[u8], from: usize, stop: u8) -> usize {
    let stop = stop | FORBIDDEN;
    bytes[from..]
        .iter()
        .position(|&b| CLASS[usize::from(b)] & stop != 0)
        .map_or(bytes.len(), |offset| from + offset)
}

/// The rest of `url` after `http://` or `https://` (any case), or `None` for other schemes.
fn strip_http_scheme(url: &str) -> Option<&str> {
    let bytes = url.as_bytes();
    for scheme in ["http://", "https://"] {
        if bytes.len() >= scheme.len()
            && bytes[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            // The matched prefix is ASCII, so its end is a char boundary.
            return Some(&url[scheme.len()..]);
        }
    }
    None
}

/// Writes the host (lower-cased, without `www.`) and any port other than a default one.
fn push_host(host: &str, port: &str, out: &mut String) -> bool {
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
    let bytes = param.as_bytes();
    if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"utm_") {
        return true;
    }
    let key_len = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
    // Every name in the list is 5 to 7 bytes; most parameters are ruled out by length alone.
    (5..=7).contains(&key_len)
        && TRACKING_PARAMS
            .iter()
            .any(|t| bytes[..key_len].eq_ignore_ascii_case(t.as_bytes()))
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
mod tests;
