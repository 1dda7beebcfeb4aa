//! Opening the shared connection the wallet and the ledger use: the same settings as
//! [`super::RedisInventory`]'s (timeouts, durability check), without the function library.

use std::time::Duration;

use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::durability;
use super::error::RedisStoreError;
use super::inventory::{RECONNECT_MAX_DELAY_MS, RECONNECT_RETRIES, RESPONSE_TIMEOUT};

/// How long a (re)connection attempt may take (as the inventory's).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A multiplexed, self-reconnecting connection to `url`, once Redis is checked to make every
/// change durable and never evict.
pub(super) async fn open(url: &str) -> Result<ConnectionManager, RedisStoreError> {
    let client = Client::open(url).map_err(RedisStoreError::BadUrl)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY_MS);
    let mut connection = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(RedisStoreError::Unreachable)?;
    durability::check(&mut connection).await?;
    Ok(connection)
}

/// Runs `cmd` on `connection`, timed into the round-trip histogram as `what` (failed calls
/// included, and counted by kind as the functions' are).
pub(super) async fn timed<T: redis::FromRedisValue>(
    connection: &mut ConnectionManager,
    what: &'static str,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let started = std::time::Instant::now();
    let result = cmd.query_async(connection).await;
    let error = result.as_ref().err().map(|error| {
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
        {
            "unavailable"
        } else {
            "internal"
        }
    });
    crate::telemetry::redis_call(what, started.elapsed(), error);
    result
}
