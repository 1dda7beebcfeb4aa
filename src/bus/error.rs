//! What can go wrong on the bus. Messages name the server by its redacted URL and the stream
//! by name; never a credential, never a tweet's content.

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The NATS server could not be reached at start-up.
    #[error("cannot connect to the bus at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The stream could not be created, read or checked.
    #[error("the bus stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    /// The stream exists with other subjects than ours: refused rather than guessed at.
    #[error(
        "the bus stream {stream} exists with subjects {found:?}, not {wanted:?}: pick another \
         --bus-stream, or delete that stream if it is an old buyline one"
    )]
    SubjectsDiffer {
        stream: String,
        found: Vec<String>,
        wanted: Vec<String>,
    },
    /// The bus cannot take tweets now (disconnected, or an acknowledgement failed or timed
    /// out): ingest answers `unavailable`; nothing was acknowledged.
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
}
