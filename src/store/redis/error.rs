//! Why the Redis engine could not start: an unreachable server, settings under which an
//! acknowledged change could be lost, or a function library it cannot use. Once started, every
//! operation answers the contract's codes (`ApiError`) instead.

/// Why the Redis engine could not start. Messages name the setting and the value to set; none
/// carries the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The URL is not one the client understands.
    #[error("the store URL is not a Redis URL (redis://HOST:PORT[/DB]): {0}")]
    BadUrl(redis::RedisError),
    /// No connection could be made.
    #[error("cannot connect to Redis: {0}")]
    Unreachable(redis::RedisError),
    /// `CONFIG GET` failed (a managed Redis may forbid it), so durability cannot be checked.
    #[error(
        "cannot read Redis's `{setting}` setting with CONFIG GET ({source}); buyline checks it \
         to be sure every acknowledged change survives a crash"
    )]
    ConfigUnreadable {
        setting: &'static str,
        source: redis::RedisError,
    },
    /// A setting under which an acknowledged change could be lost.
    #[error(
        "Redis runs with `{setting} {value}`, under which {risk}; set `{setting} {wanted}` \
         (CONFIG SET {setting} {wanted}, and in redis.conf) and start again"
    )]
    Unsafe {
        setting: &'static str,
        value: String,
        wanted: &'static str,
        risk: &'static str,
    },
    /// Another node loaded a newer function library: this node is older than the cluster.
    #[error(
        "Redis holds buyline function library version {loaded}, newer than this node's \
         {ours}: upgrade this node (it will not replace a newer library)"
    )]
    NewerLibrary { loaded: i64, ours: i64 },
    /// Loading the function library failed.
    #[error("loading the buyline function library into Redis failed: {0}")]
    Load(redis::RedisError),
    /// The wallets in Redis were written under another secret, or their key check is not one.
    #[error(transparent)]
    Wallet(crate::checkout::wallet::WalletError),
}
