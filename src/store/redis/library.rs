//! The function library (`functions.lua`): its version, and loading it. A node loads the
//! library at connect unless Redis already holds the same version, and again whenever a call
//! finds it missing (after a `FUNCTION FLUSH`, or a Redis restarted without its data). It never
//! replaces a newer version: during a rolling upgrade the older nodes refuse to start rather
//! than put their functions back under the newer nodes.

use redis::aio::ConnectionLike;

use super::error::RedisStoreError;

/// The library's source, loaded with `FUNCTION LOAD REPLACE`.
pub const SOURCE: &str = include_str!("functions.lua");

/// The version `functions.lua` declares (`local VERSION = ...`) and `buyline_version` returns.
pub const VERSION: i64 = 3;

/// Whether `error` says a function of the library is not loaded.
pub fn is_missing(error: &redis::RedisError) -> bool {
    error.to_string().contains("Function not found")
}

/// Loads the library unless Redis holds this version already; refuses a newer one.
pub async fn ensure_loaded(connection: &mut impl ConnectionLike) -> Result<(), RedisStoreError> {
    let loaded: Result<i64, redis::RedisError> = redis::cmd("FCALL_RO")
        .arg("buyline_version")
        .arg(0)
        .query_async(connection)
        .await;
    match loaded {
        Ok(loaded) if loaded == VERSION => Ok(()),
        Ok(loaded) if loaded > VERSION => Err(RedisStoreError::NewerLibrary {
            loaded,
            ours: VERSION,
        }),
        Ok(_) => load(connection).await,
        Err(error) if is_missing(&error) => load(connection).await,
        Err(error) => Err(RedisStoreError::Load(error)),
    }
}

/// Loads (or replaces) the library.
pub async fn load(connection: &mut impl ConnectionLike) -> Result<(), RedisStoreError> {
    let _name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(SOURCE)
        .query_async(connection)
        .await
        .map_err(RedisStoreError::Load)?;
    tracing::info!(
        version = VERSION,
        "loaded the buyline function library into Redis"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_one_the_library_declares() {
        assert!(SOURCE.starts_with("#!lua name=buyline\n"));
        assert!(
            SOURCE.contains(&format!("\nlocal VERSION = {VERSION}\n")),
            "functions.lua declares another version than library::VERSION"
        );
    }
}
