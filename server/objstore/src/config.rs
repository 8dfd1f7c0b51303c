//! Where a store is and how to log in: the backing URL (`s3://bucket[/prefix]`,
//! `swift://container[/prefix]`) and the settings, each taken from the first of
//!
//! 1. explicit values (command-line flags),
//! 2. the environment — the SDKs' own names: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL`
//!    (`AWS_ENDPOINT_URL_S3` first); Swift's `ST_AUTH`, `ST_USER`, `ST_KEY` (auth v1) and
//!    `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`, `OS_USER_DOMAIN_NAME`,
//!    `OS_PROJECT_DOMAIN_NAME`, `OS_REGION_NAME`, `OS_INTERFACE` (Keystone v3),
//! 3. a TOML file (path given explicitly or by `FAASCACHE_STORE_CONFIG`) with `[s3]` and
//!    `[swift]` tables whose keys are the field names of [`S3Settings`] and [`SwiftSettings`].
//!
//! Secrets are [`Secret`]s: their `Debug` prints `***`, and no error message contains them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A password, secret key or token: hidden from `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, to send to the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which API a backing URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://`.
    S3,
    /// `swift://` (Swift's native API).
    Swift,
}

/// A parsed backing URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The API.
    pub scheme: Scheme,
    /// The bucket or container.
    pub bucket: String,
    /// The key prefix within it, without leading or trailing `/` (empty: none).
    pub prefix: String,
}

impl StoreUrl {
    /// The full store key of `key`.
    pub(crate) fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
    /// Bytes the prefix adds to a key (see [`crate::validate_key`]).
    pub fn prefix_len(&self) -> usize {
        if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scheme {
            Scheme::S3 => "s3",
            Scheme::Swift => "swift",
        };
        write!(f, "{s}://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = Error;
    fn from_str(url: &str) -> Result<StoreUrl> {
        let usage = "use s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX]";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::Config(format!(
                "backing URL {url:?} has no scheme: {usage}"
            )));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Scheme::S3,
            "swift" => Scheme::Swift,
            other => {
                return Err(Error::Config(format!(
                    "unknown backing scheme `{other}` in {url:?}: {usage}"
                )))
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(scheme, bucket).map_err(|why| {
            Error::Config(format!(
                "backing URL {url:?}: bucket/container {bucket:?} {why}"
            ))
        })?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            crate::types::validate_key(prefix, 0).map_err(|e| {
                Error::Config(format!(
                    "backing URL {url:?}: the prefix is not a valid key: {e}"
                ))
            })?;
        }
        Ok(StoreUrl {
            scheme,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// S3's bucket rules (3–63 of `a-z0-9.-`, starting and ending with a letter or digit);
/// Swift's container rules (1–256 bytes, no `/`, no control characters).
fn check_bucket(scheme: Scheme, b: &str) -> std::result::Result<(), &'static str> {
    match scheme {
        Scheme::S3 => {
            let ok_chars = b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
            let ends_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            if !(3..=63).contains(&b.len())
                || !ok_chars
                || !ends_ok(b.bytes().next())
                || !ends_ok(b.bytes().last())
            {
                return Err("is not a valid S3 bucket name (3-63 characters of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit)");
            }
        }
        Scheme::Swift => {
            if b.is_empty() || b.len() > 256 || b.chars().any(char::is_control) {
                return Err(
                    "is not a valid Swift container name (1-256 bytes, no control characters)",
                );
            }
        }
    }
    Ok(())
}

/// Settings of the S3 backend (every field optional until [`Settings::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `http(s)://host:port` of an S3-compatible service (AWS's regional endpoint if unset).
    pub endpoint: Option<String>,
    /// The region (`us-east-1` if unset).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<Secret>,
    /// A session token (temporary credentials).
    pub session_token: Option<Secret>,
    /// Virtual-hosted-style addressing (`bucket.host`); path-style if unset or false, which
    /// every S3-compatible service serves.
    pub virtual_hosted: Option<bool>,
}

/// Settings of the Swift backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwiftSettings {
    /// Auth v1 (`ST_AUTH`, e.g. `http://127.0.0.1:8080/auth/v1.0`) or Keystone v3
    /// (`OS_AUTH_URL`, e.g. `https://keystone:5000/v3`) endpoint.
    pub auth_url: Option<String>,
    /// Auth v1 user (`ST_USER`, `account:user`).
    pub user: Option<String>,
    /// Auth v1 key (`ST_KEY`).
    pub key: Option<Secret>,
    /// Keystone user name (`OS_USERNAME`).
    pub username: Option<String>,
    /// Keystone password (`OS_PASSWORD`).
    pub password: Option<Secret>,
    /// Keystone project (`OS_PROJECT_NAME`).
    pub project_name: Option<String>,
    /// Keystone user domain (`OS_USER_DOMAIN_NAME`, `Default` if unset).
    pub user_domain_name: Option<String>,
    /// Keystone project domain (`OS_PROJECT_DOMAIN_NAME`, `Default` if unset).
    pub project_domain_name: Option<String>,
    /// Catalog region (`OS_REGION_NAME`; the first object-store endpoint if unset).
    pub region_name: Option<String>,
    /// Catalog interface (`OS_INTERFACE`: `public` if unset).
    pub interface: Option<String>,
}

/// Client behaviour shared by the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for one request (and, while streaming, for each next piece of a body).
    pub timeout: Duration,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Worker threads of the store's private runtime.
    pub worker_threads: usize,
    /// Retries of a failed request inside the S3 client (transient errors only); the
    /// caller's own retry policy sits above. The Swift client retries only re-authentication.
    pub s3_retries: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            worker_threads: 2,
            s3_retries: 1,
        }
    }
}

/// All settings; see the module documentation for where each comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[s3]`.
    #[serde(default)]
    pub s3: S3Settings,
    /// `[swift]`.
    #[serde(default)]
    pub swift: SwiftSettings,
}

/// The environment variable naming a config file.
pub const CONFIG_ENV: &str = "FAASCACHE_STORE_CONFIG";

macro_rules! overlay {
    ($hi:expr, $lo:expr, $($f:ident),*) => { $( if $hi.$f.is_none() { $hi.$f = $lo.$f.clone(); } )* };
}

impl Settings {
    /// Fill every unset field of `self` from `lower`.
    pub fn or(mut self, lower: &Settings) -> Settings {
        overlay!(
            self.s3,
            lower.s3,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            virtual_hosted
        );
        overlay!(
            self.swift,
            lower.swift,
            auth_url,
            user,
            key,
            username,
            password,
            project_name,
            user_domain_name,
            project_domain_name,
            region_name,
            interface
        );
        self
    }

    /// Settings from environment variables read through `var`.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Settings {
        let v = |n: &str| var(n).filter(|s| !s.is_empty());
        let secret = |n: &str| v(n).map(Secret);
        Settings {
            s3: S3Settings {
                endpoint: v("AWS_ENDPOINT_URL_S3").or_else(|| v("AWS_ENDPOINT_URL")),
                region: v("AWS_REGION").or_else(|| v("AWS_DEFAULT_REGION")),
                access_key_id: v("AWS_ACCESS_KEY_ID"),
                secret_access_key: secret("AWS_SECRET_ACCESS_KEY"),
                session_token: secret("AWS_SESSION_TOKEN"),
                virtual_hosted: None,
            },
            swift: SwiftSettings {
                auth_url: v("ST_AUTH").or_else(|| v("OS_AUTH_URL")),
                user: v("ST_USER"),
                key: secret("ST_KEY"),
                username: v("OS_USERNAME"),
                password: secret("OS_PASSWORD"),
                project_name: v("OS_PROJECT_NAME"),
                user_domain_name: v("OS_USER_DOMAIN_NAME"),
                project_domain_name: v("OS_PROJECT_DOMAIN_NAME"),
                region_name: v("OS_REGION_NAME"),
                interface: v("OS_INTERFACE"),
            },
        }
    }

    /// Settings from this process's environment.
    pub fn from_env() -> Settings {
        Settings::from_env_with(|n| std::env::var(n).ok())
    }

    /// Settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the store config file {}: {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| {
            // toml's message quotes the offending line, which may hold a secret: keep only
            // its first line (position and what was expected).
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").to_string();
            Error::Config(format!(
                "the store config file {} is not valid: {first} (expected [s3] and [swift] tables with the documented keys)",
                path.display()
            ))
        })
    }

    /// `explicit`, then the environment (through `var`), then the file named by `file` or
    /// by `FAASCACHE_STORE_CONFIG` (a named file that cannot be read is an error).
    pub fn resolve_with(
        explicit: Settings,
        file: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let path: Option<PathBuf> = file
            .map(Path::to_path_buf)
            .or_else(|| var(CONFIG_ENV).filter(|s| !s.is_empty()).map(PathBuf::from));
        let env = Settings::from_env_with(&var);
        let from_file = match path {
            Some(p) => Settings::from_file(&p)?,
            None => Settings::default(),
        };
        Ok(explicit.or(&env).or(&from_file))
    }

    /// [`Settings::resolve_with`] with this process's environment.
    pub fn resolve(explicit: Settings, file: Option<&Path>) -> Result<Settings> {
        Settings::resolve_with(explicit, file, |n| std::env::var(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn urls_parse_with_clear_errors() {
        let u: StoreUrl = "s3://photos/in/2024/".parse().unwrap();
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.prefix.as_str()),
            (Scheme::S3, "photos", "in/2024")
        );
        assert_eq!(u.full_key("a.jpg"), "in/2024/a.jpg");
        assert_eq!(u.to_string(), "s3://photos/in/2024");
        let u: StoreUrl = "swift://My Container".parse().unwrap();
        assert_eq!((u.scheme, u.prefix.as_str()), (Scheme::Swift, ""));
        assert_eq!(u.full_key("k"), "k");
        for (bad, says) in [
            ("gs://b", "unknown backing scheme `gs`"),
            ("photos", "has no scheme"),
            ("s3://Bad_Bucket", "not a valid S3 bucket name"),
            ("s3://", "not a valid S3 bucket name"),
            ("swift://", "not a valid Swift container"),
            ("s3://bucket/a//b", "prefix is not a valid key"),
        ] {
            let e = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn precedence_is_explicit_then_env_then_file() {
        let dir = faascache_testkit::tempdir("objstore-config");
        let file = dir.join("store.toml");
        std::fs::write(
            &file,
            "[s3]\nendpoint = \"http://file:1\"\nregion = \"file-region\"\naccess_key_id = \"file-id\"\n\
             secret_access_key = \"file-secret\"\n[swift]\nauth_url = \"http://file/auth/v1.0\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [("AWS_REGION", "env-region"), ("ST_USER", "a:b")].into();
        let explicit = Settings {
            s3: S3Settings {
                endpoint: Some("http://flag:2".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s =
            Settings::resolve_with(explicit, Some(&file), |n| env.get(n).map(|v| v.to_string()))
                .unwrap();
        assert_eq!(s.s3.endpoint.as_deref(), Some("http://flag:2"));
        assert_eq!(s.s3.region.as_deref(), Some("env-region"));
        assert_eq!(s.s3.access_key_id.as_deref(), Some("file-id"));
        assert_eq!(s.swift.user.as_deref(), Some("a:b"));
        assert_eq!(s.swift.auth_url.as_deref(), Some("http://file/auth/v1.0"));
        // The file named by the environment is read when no path is given.
        let env2: HashMap<&str, String> = [(CONFIG_ENV, file.display().to_string())].into();
        let s =
            Settings::resolve_with(Settings::default(), None, |n| env2.get(n).cloned()).unwrap();
        assert_eq!(s.s3.region.as_deref(), Some("file-region"));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let s = Settings::from_env_with(|n| match n {
            "AWS_SECRET_ACCESS_KEY" => Some("sekrit-aws".into()),
            "OS_PASSWORD" => Some("sekrit-os".into()),
            "ST_KEY" => Some("sekrit-st".into()),
            _ => None,
        });
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("***"));
        let dir = faascache_testkit::tempdir("objstore-config");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[s3]\nsecret_access_key = sekrit-unquoted\n").unwrap();
        let e = Settings::from_file(&file).unwrap_err().to_string();
        assert!(!e.contains("sekrit"), "{e}");
        assert!(e.contains("not valid"), "{e}");
        let e = Settings::from_file(&dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
