//! Where each setting of a [`Config`](super::Config) came from, for `check-config` and for
//! errors that name the setting at fault.

use std::fmt;
use std::path::PathBuf;

/// The layer a setting's value came from (README, "Configuration").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    /// The `BUYLINE_*` variable that set it.
    Environment(String),
    /// `RUST_LOG`, for `log` only.
    RustLog,
    /// The `--config` file.
    File(PathBuf),
    Default,
}

impl Origin {
    /// How `check-config` labels a setting with this origin, for `key`.
    pub fn label(&self, key: &str) -> String {
        match self {
            Origin::CommandLine => format!("command line (--{})", key.replace('_', "-")),
            Origin::Environment(var) => format!("environment ({var})"),
            Origin::RustLog => "environment (RUST_LOG)".to_owned(),
            Origin::File(path) => format!("config file {} (`{key}`)", path.display()),
            Origin::Default => "default".to_owned(),
        }
    }
}

impl fmt::Display for Origin {
    /// The tail of an error about a setting: "set by BUYLINE_RATE".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("set on the command line"),
            Origin::Environment(var) => write!(f, "set by {var}"),
            Origin::RustLog => f.write_str("set by RUST_LOG"),
            Origin::File(path) => write!(f, "set in config file {}", path.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// One effective setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The file key (`max_connections`); the flag is the key in kebab case.
    pub key: String,
    /// The value as TOML (`1000`, `"127.0.0.1:8080"`), `None` when unset. URLs are redacted.
    pub value: Option<String>,
    pub origin: Origin,
}
