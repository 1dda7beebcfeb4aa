//! Loading a catalog file (`--catalog`) and the rules every catalog, partner and product must
//! satisfy before the partner index will take it.
//!
//! The same checks guard the file at startup and each admin write, so a catalog that the
//! server accepted once is never refused on restart, and an operator reading an error gets the
//! file, the object's id and the field to fix.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::decorate::button::rfc3339_utc;
use crate::decorate::url;
use crate::error::ApiError;
use crate::model::{Catalog, Partner, Product};

/// Ids are path segments in the admin API and keys in journals and metrics labels, so they
/// are kept short and free of characters that need escaping anywhere.
pub const MAX_ID_LEN: usize = 128;

/// Why a catalog could not be loaded or was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {}: cannot read it: {source}", path.display())]
    Read {
        /// The file the operator passed, so they know which one to check.
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {}: not valid JSON: {source}", path.display())]
    Json {
        /// The file that failed to parse.
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("catalog {}: not valid TOML: {source}", path.display())]
    Toml {
        /// The file that failed to parse.
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("catalog {}: neither valid JSON ({json}) nor valid TOML ({toml})", path.display())]
    Unparseable {
        /// A file whose extension named neither format, so both were tried.
        path: PathBuf,
        /// Why it is not JSON.
        json: serde_json::Error,
        /// Why it is not TOML.
        toml: Box<toml::de::Error>,
    },
    #[error("catalog {}: {source}", path.display())]
    Invalid {
        /// The file holding the offending object.
        path: PathBuf,
        /// What is wrong with it; always one of the variants below.
        source: Box<CatalogError>,
    },
    #[error("partner {id:?}: {field}: {problem}")]
    Partner {
        /// The offending partner.
        id: String,
        /// The field to fix.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    #[error("product {id:?}: {field}: {problem}")]
    Product {
        /// The offending product.
        id: String,
        /// The field to fix.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    #[error("partner id {0:?} appears more than once")]
    DuplicatePartner(String),
    #[error("product id {0:?} appears more than once")]
    DuplicateProduct(String),
    #[error("account {account:?} belongs to both partner {first:?} and partner {second:?}")]
    DuplicateAccount {
        /// The screen name (lower-cased) claimed twice; a tweet could not tell whose it is.
        account: String,
        /// The partner that claimed it first.
        first: String,
        /// The partner that claimed it again.
        second: String,
    },
    #[error(
        "products {first:?} and {second:?} of partner {partner:?} share the URL {url:?} \
         (after normalisation); one partner may list a URL once"
    )]
    DuplicateUrl {
        /// The shared comparison key; the partner's tweet linking it could not tell which
        /// product it means. (Products of different partners may share one: the tweet's
        /// author picks.)
        url: String,
        /// The partner both products belong to.
        partner: String,
        /// The product that listed it first.
        first: String,
        /// The product that listed it again.
        second: String,
    },
}

impl CatalogError {
    fn partner(partner: &Partner, field: &'static str, problem: impl Into<String>) -> Self {
        CatalogError::Partner {
            id: partner.id.clone(),
            field,
            problem: problem.into(),
        }
    }

    fn product(product: &Product, field: &'static str, problem: impl Into<String>) -> Self {
        CatalogError::Product {
            id: product.id.clone(),
            field,
            problem: problem.into(),
        }
    }
}

/// Admin writes surface catalog problems as `bad_request`; a file that cannot be read is ours.
impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Read { .. } => ApiError::internal(err.to_string()),
            _ => ApiError::bad_request(err.to_string()),
        }
    }
}

/// Reads and validates a catalog: JSON for `.json`, TOML for `.toml`, otherwise JSON then TOML.
pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_owned(),
        source,
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let catalog = match extension.as_deref() {
        Some("json") => serde_json::from_str(&text).map_err(|source| CatalogError::Json {
            path: path.to_owned(),
            source,
        })?,
        Some("toml") => from_toml(&text).map_err(|source| CatalogError::Toml {
            path: path.to_owned(),
            source: Box::new(source),
        })?,
        _ => match serde_json::from_str(&text) {
            Ok(catalog) => catalog,
            Err(json) => from_toml(&text).map_err(|toml| CatalogError::Unparseable {
                path: path.to_owned(),
                json,
                toml: Box::new(toml),
            })?,
        },
    };
    validate(&catalog).map_err(|source| CatalogError::Invalid {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok(catalog)
}

/// Parses a TOML catalog, accepting sale times as strings or as native TOML datetimes.
fn from_toml(text: &str) -> Result<Catalog, toml::de::Error> {
    // The model's times deserialise from RFC 3339 strings, which a TOML datetime is not, so
    // a catalog that uses them is parsed again with each datetime turned into its string. The
    // first error is the one reported: it carries the line and the key path.
    let direct = toml::from_str(text);
    if direct.is_ok() {
        return direct;
    }
    let Ok(mut value) = toml::from_str::<toml::Value>(text) else {
        return direct;
    };
    stringify_datetimes(&mut value);
    value.try_into().or(direct)
}

fn stringify_datetimes(value: &mut toml::Value) {
    match value {
        toml::Value::Datetime(at) => *value = toml::Value::String(at.to_string()),
        toml::Value::Array(items) => items.iter_mut().for_each(stringify_datetimes),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| stringify_datetimes(v)),
        _ => {}
    }
}

/// Checks every partner and product, and what only the whole catalog can tell: unique ids
/// and accounts, a URL listed by at most one product of each partner (partners may share
/// one), and that each product's partner exists.
pub fn validate(catalog: &Catalog) -> Result<(), CatalogError> {
    let mut partner_ids = HashSet::with_capacity(catalog.partners.len());
    let mut accounts: HashMap<String, &str> = HashMap::new();
    for partner in &catalog.partners {
        validate_partner(partner)?;
        if !partner_ids.insert(partner.id.as_str()) {
            return Err(CatalogError::DuplicatePartner(partner.id.clone()));
        }
        for account in &partner.accounts {
            let account = account.to_lowercase();
            match accounts.get(&account) {
                // One partner listing an account twice (in two cases) is harmless.
                Some(&owner) if owner != partner.id => {
                    return Err(CatalogError::DuplicateAccount {
                        account,
                        first: owner.to_owned(),
                        second: partner.id.clone(),
                    });
                }
                _ => {
                    accounts.insert(account, &partner.id);
                }
            }
        }
    }

    let mut product_ids = HashSet::with_capacity(catalog.products.len());
    // (URL key, partner) to the product listing it: a URL is one product per partner.
    let mut urls: HashMap<(String, &str), &str> = HashMap::new();
    for product in &catalog.products {
        validate_product(product)?;
        if !product_ids.insert(product.id.as_str()) {
            return Err(CatalogError::DuplicateProduct(product.id.clone()));
        }
        if !partner_ids.contains(product.partner.as_str()) {
            return Err(CatalogError::product(
                product,
                "partner",
                format!("no partner has id {:?}", product.partner),
            ));
        }
        for raw in &product.urls {
            // validate_product has already checked that every URL normalises.
            let Some(key) = url::normalize(raw) else {
                continue;
            };
            let slot = (key, product.partner.as_str());
            match urls.get(&slot) {
                Some(&owner) if owner != product.id => {
                    return Err(CatalogError::DuplicateUrl {
                        url: slot.0,
                        partner: product.partner.clone(),
                        first: owner.to_owned(),
                        second: product.id.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    urls.insert(slot, &product.id);
                }
            }
        }
    }
    Ok(())
}

/// Checks one partner on its own (the admin `PUT` body, or a catalog entry).
pub fn validate_partner(partner: &Partner) -> Result<(), CatalogError> {
    if let Err(problem) = check_id(&partner.id) {
        return Err(CatalogError::partner(partner, "id", problem));
    }
    if partner.name.trim().is_empty() {
        return Err(CatalogError::partner(partner, "name", "must not be empty"));
    }
    if partner.accounts.is_empty() {
        return Err(CatalogError::partner(
            partner,
            "accounts",
            "must list at least one screen name",
        ));
    }
    for account in &partner.accounts {
        if account.is_empty() || account.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(CatalogError::partner(
                partner,
                "accounts",
                format!("{account:?} is not a screen name (no `@`, no spaces, not empty)"),
            ));
        }
    }
    Ok(())
}

/// Checks one product on its own; whether its partner exists is the catalog's question.
pub fn validate_product(product: &Product) -> Result<(), CatalogError> {
    if let Err(problem) = check_id(&product.id) {
        return Err(CatalogError::product(product, "id", problem));
    }
    if let Err(problem) = check_id(&product.partner) {
        return Err(CatalogError::product(product, "partner", problem));
    }
    if product.title.trim().is_empty() {
        return Err(CatalogError::product(product, "title", "must not be empty"));
    }
    if product.urls.is_empty() {
        return Err(CatalogError::product(
            product,
            "urls",
            "must list at least one product URL",
        ));
    }
    if let Some(bad) = product.urls.iter().find(|u| url::normalize(u).is_none()) {
        return Err(CatalogError::product(
            product,
            "urls",
            format!(
                "{bad:?} is not an http(s) URL with a host (at most {} bytes)",
                url::MAX_URL_LEN
            ),
        ));
    }
    let currency = &product.price.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(CatalogError::product(
            product,
            "price.currency",
            format!("{currency:?} is not a lower-case ISO 4217 code such as \"usd\""),
        ));
    }
    if product.price.amount < 0 {
        return Err(CatalogError::product(
            product,
            "price.amount",
            format!("{} is negative", product.price.amount),
        ));
    }
    if let Some(sale) = &product.sale {
        if sale.starts_at >= sale.ends_at {
            return Err(CatalogError::product(
                product,
                "sale",
                "starts_at must be before ends_at",
            ));
        }
        // Buttons show the window in UTC; a time that UTC cannot express would break them.
        for at in [sale.starts_at, sale.ends_at] {
            if let Err(problem) = rfc3339_utc(at) {
                return Err(CatalogError::product(product, "sale", problem));
            }
        }
    }
    if product.hold_seconds < 1 {
        return Err(CatalogError::product(
            product,
            "hold_seconds",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Why `id` is not a valid partner or product id, if it is not (the Redis store uses the same
/// rule: its keys carry the id in a `{product}` hash tag).
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(String::from("must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("is {} characters; at most {MAX_ID_LEN}", id.len()));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{id:?} contains {bad:?}; ids use only A-Z a-z 0-9 _ . : -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
