//! The check at connect: Redis must make every change durable before it answers, and must
//! never evict a key, or an acknowledged hold or sale could vanish. So `appendonly yes`,
//! `appendfsync always` (the append-only file is fsynced before each reply), and
//! `maxmemory-policy noeviction` (a full Redis refuses writes, which the engine answers with
//! `unavailable`, instead of dropping keys).

use std::collections::HashMap;

use redis::aio::ConnectionLike;

use super::error::RedisStoreError;

/// Each setting, the one value that is safe, and what goes wrong under any other.
const REQUIRED: [(&str, &str, &str); 3] = [
    (
        "appendonly",
        "yes",
        "Redis keeps changes only in memory and a crash loses acknowledged holds and sales",
    ),
    (
        "appendfsync",
        "always",
        "Redis answers before a change reaches the disk and a crash can lose acknowledged \
         holds and sales",
    ),
    (
        "maxmemory-policy",
        "noeviction",
        "Redis may evict keys when memory is full, dropping live holds, counts and orders",
    ),
];

/// Reads the settings with `CONFIG GET` and refuses any that could lose an acknowledged change.
pub async fn check(connection: &mut impl ConnectionLike) -> Result<(), RedisStoreError> {
    for (setting, _, _) in REQUIRED {
        let mut reply: HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(setting)
            .query_async(connection)
            .await
            .map_err(|source| RedisStoreError::ConfigUnreadable { setting, source })?;
        // A missing setting reads as empty, which no rule accepts.
        let value = reply.remove(setting).unwrap_or_default();
        judge(setting, &value)?;
    }
    Ok(())
}

/// Whether `value` is the safe value of `setting`.
fn judge(setting: &str, value: &str) -> Result<(), RedisStoreError> {
    for (name, wanted, risk) in REQUIRED {
        if name == setting && !value.eq_ignore_ascii_case(wanted) {
            return Err(RedisStoreError::Unsafe {
                setting: name,
                value: value.to_owned(),
                wanted,
                risk,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_safe_values_pass_and_the_refusal_names_the_setting_and_the_fix() {
        assert!(judge("appendonly", "yes").is_ok());
        assert!(judge("appendfsync", "always").is_ok());
        assert!(judge("maxmemory-policy", "noeviction").is_ok());
        for (setting, value, wanted) in [
            ("appendonly", "no", "yes"),
            ("appendfsync", "everysec", "always"),
            ("appendfsync", "no", "always"),
            ("maxmemory-policy", "allkeys-lru", "noeviction"),
            ("maxmemory-policy", "volatile-ttl", "noeviction"),
            ("maxmemory-policy", "", "noeviction"),
        ] {
            let message = judge(setting, value).expect_err(value).to_string();
            assert!(
                message.contains(&format!("`{setting} {value}`"))
                    && message.contains(&format!("CONFIG SET {setting} {wanted}")),
                "{message}"
            );
        }
    }
}
