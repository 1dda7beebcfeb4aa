//! The checks `serve` makes before it binds, opens or connects anything, shared with
//! `buyline check-config` so that the two cannot disagree: the config's own rules, the
//! catalog (read, parsed and indexed), the token secret (readable and long enough, or to be
//! created), the replay file (readable) and the data dir (a directory, if it exists).
//!
//! Nothing here writes: no data dir is created, no port bound, no Redis or NATS dialled.

use anyhow::Context as _;

use crate::auth::{self, SecretCheck};
use crate::config::{Config, FirehoseSource};
use crate::decorate::partner_index::PartnerIndex;
use crate::decorate::{catalog_file, demo};
use crate::model::Catalog;
use crate::sources::replay::ReplayReader;

/// What the checks found, for `check-config` to report.
#[derive(Debug)]
pub struct Preflight {
    pub catalog: Catalog,
    pub index: PartnerIndex,
    pub secret: SecretCheck,
    /// Whether `data_dir` exists already (serving creates it otherwise).
    pub data_dir_exists: bool,
}

/// The catalog `config` names (or the built-in demo), parsed and indexed: what `serve` loads.
/// The error names the setting.
pub fn load_catalog(config: &Config) -> anyhow::Result<(Catalog, PartnerIndex)> {
    let catalog = match &config.catalog {
        Some(path) => catalog_file::load(path).context("catalog (--catalog)")?,
        None => demo::demo_catalog(),
    };
    let index =
        PartnerIndex::build(&catalog).context("catalog (--catalog): the catalog is invalid")?;
    Ok((catalog, index))
}

/// Every check `serve` makes before binding that has no side effect. Errors name the setting.
pub fn check(config: &Config) -> anyhow::Result<Preflight> {
    config.validate()?;
    let (catalog, index) = load_catalog(config)?;
    let data_dir_exists = match std::fs::metadata(&config.data_dir) {
        Ok(metadata) if metadata.is_dir() => true,
        Ok(_) => anyhow::bail!(
            "data_dir (--data-dir): {} is not a directory",
            config.data_dir.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "data_dir (--data-dir): cannot read {}",
                    config.data_dir.display()
                )
            });
        }
    };
    let secret = auth::check_secret(config.secret_file.as_deref(), &config.data_dir)
        .context(secret_setting(config))?;
    if let FirehoseSource::Replay(path) = &config.firehose {
        ReplayReader::open(path).context("firehose (--firehose): the replay file")?;
    }
    Ok(Preflight {
        catalog,
        index,
        secret,
        data_dir_exists,
    })
}

/// The setting a secret error is about: the file if one is named, else the data dir.
fn secret_setting(config: &Config) -> &'static str {
    if config.secret_file.is_some() {
        "secret_file (--secret-file)"
    } else {
        "data_dir (--data-dir): the token secret in it"
    }
}
