//! Typed configuration from one place: flags, their environment variables, and the optional
//! TOML file of sources (write keys and the browser origins each may send from).

use crate::client_ip::TrustedProxies;
use crate::settings::PublicUrl;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Settings of `seam serve` (and `seam demo`); every flag is also an environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SEAM_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Directory of the embedded store; must exist and be writable (`seam demo` creates it).
    #[arg(long, env = "SEAM_DATA_DIR", default_value = "./seam-data")]
    pub data_dir: PathBuf,
    /// A write key accepted for ingestion (repeatable; the env variable is comma-separated).
    /// Write keys are public: they identify a source, they do not protect anything.
    #[arg(
        long = "write-key",
        env = "SEAM_WRITE_KEYS",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    pub write_keys: Vec<String>,
    /// Secret bearer token for the admin API (`/v1/events`, `/v1/failed`, `/v1/profiles`).
    /// Without one, the admin API answers 401.
    #[arg(long, env = "SEAM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// TOML file of sources: `[[sources]]` tables with `write_key`, optional `name` and
    /// `allowed_origins = ["https://shop.example"]` (none: any origin may send).
    #[arg(long, env = "SEAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the built SDK, served under /sdk/.
    #[arg(long, env = "SEAM_SDK_DIR", default_value = "target/sdk")]
    pub sdk_dir: PathBuf,
    /// Directory of static pages served at / (the demo storefront in `seam demo`).
    #[arg(long, env = "SEAM_SITE_DIR")]
    pub site_dir: Option<PathBuf>,
    /// Store client IPs truncated (IPv4 to /24, IPv6 to /48) instead of whole.
    #[arg(long, env = "SEAM_TRUNCATE_IP")]
    pub truncate_ip: bool,
    /// Proxies (CIDR blocks, comma-separated) whose `X-Forwarded-For` is believed: behind them
    /// the client IP is the rightmost untrusted address of that header. Without any, the
    /// socket's address is used, since visitors can forge the header. Also
    /// `trusted_proxies = [...]` in the --config file.
    #[arg(
        long = "trusted-proxies",
        env = "SEAM_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<String>,
    /// The address browsers reach the collector at (`https://cdp.shop.example`, a path
    /// allowed), named as the API host in the analytics.js settings served at
    /// `/v1/projects/{writeKey}/settings`. Without it those settings name the request's `Host`.
    #[arg(long, env = "SEAM_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub identity: crate::identity::IdentityFlags,
}

impl Config {
    /// A configuration for tests and embedding: the given data dir, no keys, defaults elsewhere.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            addr: "127.0.0.1:0".into(),
            data_dir: data_dir.into(),
            write_keys: Vec::new(),
            admin_token: None,
            config: None,
            sdk_dir: PathBuf::from("target/sdk"),
            site_dir: None,
            truncate_ip: false,
            trusted_proxies: Vec::new(),
            public_url: None,
            identity: Default::default(),
        }
    }

    pub fn with_write_key(mut self, key: &str) -> Self {
        self.write_keys.push(key.into());
        self
    }

    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.into());
        self
    }
}

/// A configuration that cannot start; the message names the setting and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--data-dir {path}: {why}")]
    DataDir { path: PathBuf, why: String },
    #[error("--config {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("--write-key: {0}")]
    WriteKey(String),
    #[error("--admin-token: {0}")]
    AdminToken(String),
    #[error("storage: {0}")]
    Store(String),
    #[error("--trusted-proxies: {0}")]
    TrustedProxies(String),
    #[error("--public-url: {0}")]
    PublicUrl(String),
    #[error("--identity-limit / --identity-blocked: {0}")]
    Identity(String),
}

/// One source of events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Browser origins allowed to send with this key; empty means any.
    pub allowed_origins: Vec<String>,
}

/// Write key → source, the proxies whose `X-Forwarded-For` is believed (flags and file), and
/// the collector's public address (`--public-url`).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    by_key: HashMap<String, Source>,
    pub trusted_proxies: TrustedProxies,
    pub public_url: Option<PublicUrl>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    sources: Vec<FileSource>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    write_key: String,
    name: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

impl Sources {
    /// The flag/env write keys plus the TOML file's sources.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let mut sources = Sources::default();
        for key in &config.write_keys {
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::WriteKey("a write key is empty".into()));
            }
            sources.by_key.insert(
                key.to_owned(),
                Source {
                    name: key.to_owned(),
                    allowed_origins: Vec::new(),
                },
            );
        }
        sources.trusted_proxies =
            TrustedProxies::parse(&config.trusted_proxies).map_err(ConfigError::TrustedProxies)?;
        sources.public_url = config
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()
            .map_err(ConfigError::PublicUrl)?;
        if let Some(path) = &config.config {
            sources.add_file(path)?;
        }
        Ok(sources)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let err = |why: String| ConfigError::File {
            path: path.to_owned(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let proxies = TrustedProxies::parse(&file.trusted_proxies)
            .map_err(|e| err(format!("trusted_proxies: {e}")))?;
        self.trusted_proxies.extend(proxies);
        for (i, s) in file.sources.into_iter().enumerate() {
            if s.write_key.trim().is_empty() {
                return Err(err(format!("sources[{i}].write_key is empty")));
            }
            for origin in &s.allowed_origins {
                if !(origin.starts_with("http://") || origin.starts_with("https://"))
                    || origin.trim_end_matches('/') != origin
                {
                    return Err(err(format!(
                        "sources[{i}].allowed_origins: `{origin}` is not an origin like https://shop.example"
                    )));
                }
            }
            self.by_key.insert(
                s.write_key.clone(),
                Source {
                    name: s.name.unwrap_or(s.write_key),
                    allowed_origins: s.allowed_origins,
                },
            );
        }
        Ok(())
    }

    pub fn get(&self, write_key: &str) -> Option<&Source> {
        self.by_key.get(write_key)
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn insert(&mut self, write_key: &str, source: Source) {
        self.by_key.insert(write_key.to_owned(), source);
    }

    /// Whether a CORS preflight from `origin` may proceed: the write key is not known yet,
    /// so any source that allows the origin (or allows any origin) lets it through.
    pub fn any_allows(&self, origin: &str) -> bool {
        self.by_key.values().any(|s| s.allows(origin))
    }
}

impl Source {
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|o| o == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::TempDir;

    #[test]
    fn toml_sources_restrict_origins_per_write_key() {
        let dir = TempDir::new("config");
        let path = dir.0.join("seam.toml");
        std::fs::write(
            &path,
            r#"
[[sources]]
name = "shop"
write_key = "wk-shop"
allowed_origins = ["https://shop.example"]

[[sources]]
write_key = "wk-server"
"#,
        )
        .unwrap();
        let mut config = Config::new(&dir.0).with_write_key("wk-flag");
        config.config = Some(path);
        let sources = Sources::load(&config).unwrap();
        assert!(
            sources
                .get("wk-shop")
                .unwrap()
                .allows("https://shop.example")
        );
        assert!(
            !sources
                .get("wk-shop")
                .unwrap()
                .allows("https://evil.example")
        );
        assert!(
            sources
                .get("wk-server")
                .unwrap()
                .allows("https://anything.example")
        );
        assert!(sources.get("wk-flag").is_some());
        assert!(sources.get("unknown").is_none());
    }

    #[test]
    fn a_bad_config_file_names_the_setting_and_the_problem() {
        let dir = TempDir::new("config");
        let path = dir.0.join("seam.toml");
        std::fs::write(&path, "[[sources]]\nwrite_kee = \"typo\"\n").unwrap();
        let mut config = Config::new(&dir.0);
        config.config = Some(path.clone());
        let err = Sources::load(&config).unwrap_err().to_string();
        assert!(err.starts_with("--config "), "{err}");
        assert!(err.contains("write_kee"), "{err}");

        std::fs::write(
            &path,
            "[[sources]]\nwrite_key = \"k\"\nallowed_origins = [\"shop.example\"]\n",
        )
        .unwrap();
        let err = Sources::load(&config).unwrap_err().to_string();
        assert!(err.contains("shop.example"), "{err}");

        std::fs::write(
            &path,
            "trusted_proxies = [\"10.0.0.0/8\", \"lb.internal\"]\n",
        )
        .unwrap();
        let err = Sources::load(&config).unwrap_err().to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("lb.internal"),
            "{err}"
        );

        config.config = Some(dir.0.join("missing.toml"));
        let err = Sources::load(&config).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
