//! The catalog in Redis: partners and products shared by every node, each admin write made
//! against the catalog version it was checked on.
//!
//! Keys (not a product's: a Redis Cluster would keep them in one slot of their own, by the
//! `{catalog}` tag):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `bl:{catalog}` | hash | `version` (one more with every write; absent: Redis holds no catalog yet), `next` (the last position given) |
//! | `bl:{catalog}:partners` | hash | partner id to the partner's JSON |
//! | `bl:{catalog}:partner-order` | sorted set | partner ids by position (catalog order: a new one last, a replaced one in its place) |
//! | `bl:{catalog}:products` | hash | product id to the product's JSON |
//! | `bl:{catalog}:product-order` | sorted set | product ids by position, as the partners' |
//!
//! Every write publishes the new version on `bl:catalog`; a node that hears a version newer
//! than its own reads the whole catalog again (admin writes are rare and catalogs small, and a
//! whole read cannot apply two changes in the wrong order).
//!
//! A write: read the catalog and its version, apply the change and check the whole result
//! (the admin PUT's own rules, [`PartnerIndex::build`]'s shared-URL rule), then write it only if
//! the version is still the one read (a script, so the check and the write are one step). A
//! write refused on one node is therefore refused on every node, and two nodes' concurrent
//! writes cannot both pass their checks against the same catalog.
//!
//! The scripts run with `EVAL`, not in the function library: they are run once a write or a
//! change, not per request, and keep the library (and its version) to stock and orders.
//!
//! [`PartnerIndex::build`]: crate::decorate::partner_index::PartnerIndex::build

use redis::Cmd;

use super::inventory::RedisInventory;
use crate::error::ApiError;
use crate::model::{Catalog, Partner, Product};

/// The channel every catalog write publishes its new version on.
pub const CATALOG_CHANNEL: &str = "bl:catalog";

/// The catalog's version and position counter.
const HEAD: &str = "bl:{catalog}";
const PARTNERS: &str = "bl:{catalog}:partners";
const PARTNER_ORDER: &str = "bl:{catalog}:partner-order";
const PRODUCTS: &str = "bl:{catalog}:products";
const PRODUCT_ORDER: &str = "bl:{catalog}:product-order";

/// Reads the whole catalog in one step: `false` when there is none, else the version and the
/// partners' and products' JSON in catalog order.
const READ: &str = r"
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return false end
local function section(hash, order)
  local out = {}
  for i, id in ipairs(redis.call('ZRANGE', order, 0, -1)) do
    out[i] = redis.call('HGET', hash, id)
  end
  return out
end
return {v, section(KEYS[2], KEYS[3]), section(KEYS[4], KEYS[5])}
";

/// One change if the version is still ARGV[1]: `{1, new version}`, or `{0, version now}`.
/// ARGV: expected version, `partner` or `product`, id, JSON (empty: delete), channel.
const WRITE: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
local hash, order = KEYS[2], KEYS[3]
if ARGV[2] == 'product' then hash, order = KEYS[4], KEYS[5] end
local id, json = ARGV[3], ARGV[4]
if json ~= '' then
  redis.call('HSET', hash, id, json)
  if not redis.call('ZSCORE', order, id) then
    redis.call('ZADD', order, redis.call('HINCRBY', KEYS[1], 'next', 1), id)
  end
else
  redis.call('HDEL', hash, id)
  redis.call('ZREM', order, id)
end
v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', ARGV[5], v)
return {1, v}
";

/// Writes a whole catalog as version 1 unless Redis holds one: 1 if written, 0 if not.
/// ARGV: channel, the number of partners, then id and JSON of each partner, then of each
/// product.
const SEED: &str = r"
if redis.call('HEXISTS', KEYS[1], 'version') == 1 then return 0 end
local partners = tonumber(ARGV[2])
local next, i = 0, 3
while i < #ARGV do
  local hash, order = KEYS[2], KEYS[3]
  if next >= partners then hash, order = KEYS[4], KEYS[5] end
  next = next + 1
  redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', order, next, ARGV[i])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'version', 1, 'next', next)
redis.call('PUBLISH', ARGV[1], 1)
return 1
";

/// One admin write.
#[derive(Clone, Debug)]
pub enum CatalogEdit {
    PutPartner(Partner),
    DeletePartner(String),
    PutProduct(Product),
    DeleteProduct(String),
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written: the catalog's new version.
    Done(u64),
    /// Another write came first: the catalog is at another version now.
    Conflict,
}

fn script(source: &str) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(source)
        .arg(5)
        .arg(HEAD)
        .arg(PARTNERS)
        .arg(PARTNER_ORDER)
        .arg(PRODUCTS)
        .arg(PRODUCT_ORDER);
    cmd
}

/// The catalog Redis holds and its version, or `None` when it holds none yet.
pub async fn read(inventory: &RedisInventory) -> Result<Option<(u64, Catalog)>, ApiError> {
    let read: Option<(u64, Vec<String>, Vec<String>)> =
        inventory.query("catalog_read", &script(READ)).await?;
    let Some((version, partners, products)) = read else {
        return Ok(None);
    };
    let unreadable = |what: &str, error: serde_json::Error| {
        ApiError::internal(format!(
            "a {what} of the catalog in Redis is unreadable: {error}"
        ))
    };
    let catalog = Catalog {
        partners: partners
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|e| unreadable("partner", e)))
            .collect::<Result<_, _>>()?,
        products: products
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|e| unreadable("product", e)))
            .collect::<Result<_, _>>()?,
    };
    Ok(Some((version, catalog)))
}

/// Writes `catalog` as Redis's catalog if Redis holds none; true if it did.
pub async fn seed(inventory: &RedisInventory, catalog: &Catalog) -> Result<bool, ApiError> {
    let mut cmd = script(SEED);
    cmd.arg(CATALOG_CHANNEL).arg(catalog.partners.len());
    for partner in &catalog.partners {
        cmd.arg(&partner.id).arg(to_json(partner)?);
    }
    for product in &catalog.products {
        cmd.arg(&product.id).arg(to_json(product)?);
    }
    let seeded: u8 = inventory.query("catalog_seed", &cmd).await?;
    Ok(seeded == 1)
}

/// Writes `edit` if the catalog is still at version `expected`.
pub async fn write(
    inventory: &RedisInventory,
    expected: u64,
    edit: &CatalogEdit,
) -> Result<Written, ApiError> {
    let (kind, id, json) = match edit {
        CatalogEdit::PutPartner(partner) => ("partner", partner.id.as_str(), to_json(partner)?),
        CatalogEdit::DeletePartner(id) => ("partner", id.as_str(), String::new()),
        CatalogEdit::PutProduct(product) => ("product", product.id.as_str(), to_json(product)?),
        CatalogEdit::DeleteProduct(id) => ("product", id.as_str(), String::new()),
    };
    let mut cmd = script(WRITE);
    cmd.arg(expected)
        .arg(kind)
        .arg(id)
        .arg(json)
        .arg(CATALOG_CHANNEL);
    let (written, version): (u8, u64) = inventory.query("catalog_write", &cmd).await?;
    Ok(if written == 1 {
        Written::Done(version)
    } else {
        Written::Conflict
    })
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|error| {
        ApiError::internal(format!("a catalog entry could not be encoded: {error}"))
    })
}
