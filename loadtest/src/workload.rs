//! The synthetic tweet workload: who tweets what, and from that, what each subscriber of each
//! timeline should receive.
//!
//! Every tweet carries its identity and send time in its id, `lt.P.N.T`: producer P, its N-th
//! tweet, sent T nanoseconds after the run's epoch. Subscribers read the id back from the frame,
//! so latency is measured on one clock (the tester's) with no clock sync needed.

use std::sync::OnceLock;
use std::time::Instant;

use crate::cli::TimelineKind;
use crate::target::{FANOUT_PRODUCT_URL, PARTNER_ACCOUNT};

/// Ordinary authors `lt_u0 .. lt_u63`; author index `AUTHORS` is the partner account.
pub const AUTHORS: usize = 64;
/// Hashtags `lt0 .. lt15`, one per tweet.
pub const TAGS: usize = 16;
/// Screen names a `home` subscriber follows.
pub const HOME_FOLLOWS: usize = 8;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the run's epoch (the first call).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One generated tweet's routing facts.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `0..AUTHORS` ordinary, `AUTHORS` the partner.
    pub author: usize,
    pub tag: usize,
}

impl Shape {
    pub fn buyable(&self) -> bool {
        self.author == AUTHORS
    }
}

pub fn author_name(author: usize) -> String {
    if author == AUTHORS {
        PARTNER_ACCOUNT.to_string()
    } else {
        format!("lt_u{author}")
    }
}

/// A deterministic tweet generator for one producer (xorshift: no shared state, no locks).
pub struct Generator {
    producer: u32,
    next: u64,
    state: u64,
    /// Out of 2^32, the chance a tweet is the partner's.
    partner_threshold: u64,
    /// Tweets generated per author and per tag, for the expectations.
    pub counts: Counts,
}

impl Generator {
    pub fn new(producer: u32, partner_share: f64) -> Self {
        Self {
            producer,
            next: 0,
            state: 0x9E37_79B9_7F4A_7C15
                ^ (u64::from(producer) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            partner_threshold: (partner_share.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64,
            counts: Counts::default(),
        }
    }

    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The next tweet as a native-format JSON object, stamped now; appends it to `out`.
    pub fn next_json(&mut self, out: &mut String) -> Shape {
        let r = self.random();
        let shape = Shape {
            author: if (r & 0xFFFF_FFFF) < self.partner_threshold {
                AUTHORS
            } else {
                ((r >> 32) % AUTHORS as u64) as usize
            },
            tag: ((r >> 48) % TAGS as u64) as usize,
        };
        self.write_json(out, shape);
        shape
    }

    /// The closing burst: one tweet by every author (the partner too), tags cycling, so every
    /// timeline of the mix is owed at least one. Sent after the run has drained, it carries
    /// any `lagged` notice still pending (a notice rides on the next frame that fits).
    pub fn closing_json(&mut self) -> Vec<(Shape, String)> {
        (0..=AUTHORS)
            .map(|author| {
                let shape = Shape {
                    author,
                    tag: author % TAGS,
                };
                let mut out = String::new();
                self.write_json(&mut out, shape);
                (shape, out)
            })
            .collect()
    }

    fn write_json(&mut self, out: &mut String, shape: Shape) {
        self.counts.add(shape);
        let n = self.next;
        self.next += 1;
        let name = author_name(shape.author);
        let sent = now_ns();
        use std::fmt::Write;
        let _ = if shape.buyable() {
            write!(
                out,
                r#"{{"id":"lt.{p}.{n}.{sent}","author":{{"id":"{a}","screen_name":"{name}"}},"text":"Only a few made {url} #lt{t}","urls":["{url}"],"hashtags":["lt{t}"]}}"#,
                p = self.producer,
                a = shape.author,
                t = shape.tag,
                url = FANOUT_PRODUCT_URL,
            )
        } else {
            write!(
                out,
                r#"{{"id":"lt.{p}.{n}.{sent}","author":{{"id":"{a}","screen_name":"{name}"}},"text":"Load-test tweet number {n} about #lt{t}","urls":[],"hashtags":["lt{t}"]}}"#,
                p = self.producer,
                a = shape.author,
                t = shape.tag,
            )
        };
    }
}

/// Tweets per author and per tag.
#[derive(Debug, Clone)]
pub struct Counts {
    pub by_author: [u64; AUTHORS + 1],
    pub by_tag: [u64; TAGS],
    pub total: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            by_author: [0; AUTHORS + 1],
            by_tag: [0; TAGS],
            total: 0,
        }
    }
}

impl Counts {
    fn add(&mut self, shape: Shape) {
        self.by_author[shape.author] += 1;
        self.by_tag[shape.tag] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.by_author.iter_mut().zip(other.by_author.iter()) {
            *a += b;
        }
        for (a, b) in self.by_tag.iter_mut().zip(other.by_tag.iter()) {
            *a += b;
        }
        self.total += other.total;
    }
}

/// What one subscriber subscribes to.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub kind: TimelineKind,
    /// Author or tag index, for `user` and `tag`.
    pub index: usize,
    /// Followed author indexes, for `home`.
    pub follows: Vec<usize>,
}

impl Subscription {
    /// Subscriber `i` of a run with timeline mix `mix`, round robin.
    pub fn nth(i: usize, mix: &[TimelineKind]) -> Self {
        let kind = mix[i % mix.len()];
        let round = i / mix.len();
        match kind {
            TimelineKind::User => Self {
                kind,
                index: round % AUTHORS,
                follows: Vec::new(),
            },
            TimelineKind::Tag => Self {
                kind,
                index: round % TAGS,
                follows: Vec::new(),
            },
            TimelineKind::Home => Self {
                kind,
                index: 0,
                follows: (0..HOME_FOLLOWS)
                    .map(|k| (round * 3 + k * 7) % AUTHORS)
                    .collect(),
            },
            TimelineKind::All | TimelineKind::Buyable => Self {
                kind,
                index: 0,
                follows: Vec::new(),
            },
        }
    }

    /// The `subscribe` op for buyline.
    pub fn op(&self, id: usize) -> String {
        let timeline = match self.kind {
            TimelineKind::All => "all".to_string(),
            TimelineKind::Buyable => "buyable".to_string(),
            TimelineKind::User => format!("user:{}", author_name(self.index)),
            TimelineKind::Tag => format!("tag:lt{}", self.index),
            TimelineKind::Home => "home".to_string(),
        };
        let mut op =
            serde_json::json!({"op": "subscribe", "id": id.to_string(), "timeline": timeline});
        if self.kind == TimelineKind::Home {
            op["follows"] = self.follows.iter().map(|&a| author_name(a)).collect();
        }
        op.to_string()
    }

    /// NATS subjects covering the same tweets (published as `tw.<author>.<tag>.<b|n>`).
    pub fn nats_subjects(&self) -> Vec<String> {
        match self.kind {
            TimelineKind::All => vec!["tw.>".into()],
            TimelineKind::Buyable => vec!["tw.*.*.b".into()],
            TimelineKind::User => vec![format!("tw.{}.>", author_name(self.index))],
            TimelineKind::Tag => vec![format!("tw.*.lt{}.*", self.index)],
            TimelineKind::Home => self
                .follows
                .iter()
                .map(|&a| format!("tw.{}.>", author_name(a)))
                .collect(),
        }
    }

    /// Tweets this subscriber should receive out of `counts`.
    pub fn expected(&self, counts: &Counts) -> u64 {
        match self.kind {
            TimelineKind::All => counts.total,
            TimelineKind::Buyable => counts.by_author[AUTHORS],
            TimelineKind::User => counts.by_author[self.index],
            TimelineKind::Tag => counts.by_tag[self.index],
            TimelineKind::Home => self.follows.iter().map(|&a| counts.by_author[a]).sum(),
        }
    }
}

/// The NATS subject of a tweet.
pub fn nats_subject(shape: Shape) -> String {
    format!(
        "tw.{}.lt{}.{}",
        author_name(shape.author),
        shape.tag,
        if shape.buyable() { 'b' } else { 'n' }
    )
}

/// `(producer, n, sent_ns)` from the first `"id":"lt.P.N.T"` in a frame, without parsing the
/// rest of the JSON (a subscriber reads hundreds of thousands of frames a second).
pub fn stamp_of(frame: &[u8]) -> Option<(u32, u64, u64)> {
    const KEY: &[u8] = b"\"id\":\"lt.";
    let at = find(frame, KEY)? + KEY.len();
    let mut parts = [0u64; 3];
    let mut i = at;
    for (k, part) in parts.iter_mut().enumerate() {
        let start = i;
        while i < frame.len() && frame[i].is_ascii_digit() {
            *part = *part * 10 + u64::from(frame[i] - b'0');
            i += 1;
        }
        let sep = if k < 2 { b'.' } else { b'"' };
        if i == start || frame.get(i) != Some(&sep) {
            return None;
        }
        i += 1;
    }
    Some((parts[0] as u32, parts[1], parts[2]))
}

/// The `seq` of a `{"type":"tweet","seq":N,...}` frame.
pub fn seq_of(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    let at = find(frame, KEY)? + KEY.len();
    let digits = frame[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_round_trips_through_a_frame() {
        let mut g = Generator::new(3, 0.5);
        let mut json = String::new();
        g.next_json(&mut json);
        let frame = format!(r#"{{"type":"tweet","seq":42,"tweet":{json}}}"#);
        let (p, n, _) = stamp_of(frame.as_bytes()).expect("stamp");
        assert_eq!((p, n), (3, 0));
        assert_eq!(seq_of(frame.as_bytes()), Some(42));
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(value["id"].as_str().expect("id").len() <= 64);
    }

    #[test]
    fn expectations_add_up() {
        let mut g = Generator::new(0, 0.1);
        let mut s = String::new();
        for _ in 0..1000 {
            g.next_json(&mut s);
        }
        let all = Subscription::nth(0, &[TimelineKind::All]);
        assert_eq!(all.expected(&g.counts), 1000);
        let tags: u64 = (0..TAGS)
            .map(|t| {
                Subscription {
                    kind: TimelineKind::Tag,
                    index: t,
                    follows: vec![],
                }
                .expected(&g.counts)
            })
            .sum();
        assert_eq!(tags, 1000);
    }
}
