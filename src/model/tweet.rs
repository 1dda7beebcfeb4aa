//! The native tweet: the one shape every ingest format is converted into.

use serde::{Deserialize, Serialize};

/// Who wrote a tweet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The platform's stable user id (a string: Twitter ids overflow a JSON double).
    pub id: String,
    /// The handle without `@`; partner accounts and `user:` timelines match it case-insensitively.
    pub screen_name: String,
    /// The display name.
    pub name: String,
}

/// A tweet as the contract's native ingest format and the `tweet` frame describe it.
///
/// Every field is always present, so the same type round-trips through JSON and through the
/// bincode batches of `/v1/ingest` (bincode cannot skip fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tweet {
    /// The platform's tweet id.
    pub id: String,
    pub author: Author,
    pub text: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Expanded URLs in the order the tweet shows them; the first product link gives the button.
    pub urls: Vec<String>,
    /// Hashtags without `#`, as written.
    pub hashtags: Vec<String>,
}
