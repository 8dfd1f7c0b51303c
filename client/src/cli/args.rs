//! Parsing of the client subcommands' arguments: durations, sizes, write policies and the
//! flags of a backed table ([`BackingArgs`]). A leaf: it names nothing else of the CLI.

use std::time::Duration;

use clap::Args;

use crate::{TableBacking, WritePolicy};

/// The flags of a table backed by an object store (`faascache table create NAME --backing URL
/// ...`); none of them: a plain table.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct T { #[command(flatten)] b: faascache_client::cli::BackingArgs }
/// let b = T::parse_from(["x", "--backing", "s3://bucket/pre", "--revalidate", "30s"]).b;
/// let backing = b.to_backing().unwrap().unwrap();
/// assert_eq!((backing.url.as_str(), backing.revalidate_ms), ("s3://bucket/pre", 30_000));
/// assert!(T::parse_from(["x", "--ttl", "1m"]).b.to_backing().is_err());
/// ```
#[derive(Debug, Clone, Default, Args)]
pub struct BackingArgs {
    /// Object store behind the table: s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX]
    #[arg(long, value_name = "URL")]
    pub backing: Option<String>,
    /// When writes reach the store: write-back, write-through or ephemeral [default: write-back]
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Option<WritePolicy>,
    /// How long a "not in the store" answer is remembered [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub negative_ttl: Option<Duration>,
    /// Hits validated longer ago than this ask the store whether the object changed [default: never]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub revalidate: Option<Duration>,
    /// Objects larger than this are passed through without being cached [default: 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub admit_max: Option<u64>,
    /// Ephemeral tables only: remove objects this long after they were written [default: keep]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
}

/// Why a command-line argument was refused (the text says what to pass instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

impl BackingArgs {
    /// The backing these flags ask for (`None`: a plain table), or why they do not fit together.
    pub fn to_backing(&self) -> Result<Option<TableBacking>, ArgError> {
        let tuning = [
            ("--negative-ttl", self.negative_ttl.is_some()),
            ("--revalidate", self.revalidate.is_some()),
            ("--admit-max", self.admit_max.is_some()),
            ("--ttl", self.ttl.is_some()),
        ];
        if self.backing.is_none() && self.policy.is_none() {
            if let Some((flag, _)) = tuning.iter().find(|(_, set)| *set) {
                return Err(ArgError(format!(
                    "{flag} applies to backed tables: add --backing s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX] (or --policy ephemeral)"
                )));
            }
            return Ok(None);
        }
        let policy = self.policy.unwrap_or(WritePolicy::WriteBack);
        if self.ttl.is_some() && policy != WritePolicy::Ephemeral {
            return Err(ArgError(format!(
                "--ttl applies only to --policy ephemeral (this table is {policy}): its objects are kept until written back"
            )));
        }
        let ms32 = |flag: &str, d: Option<Duration>, default: u32| match d {
            None => Ok(default),
            Some(d) => u32::try_from(d.as_millis()).map_err(|_| {
                ArgError(format!("{flag} {d:?} is too long: at most {} ms", u32::MAX))
            }),
        };
        let mut b = TableBacking::new(self.backing.clone().unwrap_or_default(), policy);
        b.negative_ttl_ms = ms32("--negative-ttl", self.negative_ttl, b.negative_ttl_ms)?;
        b.revalidate_ms = ms32("--revalidate", self.revalidate, 0)?;
        b.admit_max_bytes = self.admit_max.unwrap_or(b.admit_max_bytes);
        b.ttl_ms = self
            .ttl
            .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64);
        b.validate().map_err(|e| ArgError(e.0))?;
        Ok(Some(b))
    }
}

/// Parses a write policy: `write-back`, `write-through` or `ephemeral`.
///
/// ```
/// use faascache_client::{cli::parse_policy, WritePolicy};
/// assert_eq!(parse_policy("ephemeral").unwrap(), WritePolicy::Ephemeral);
/// assert!(parse_policy("writeback").is_err());
/// ```
pub fn parse_policy(s: &str) -> Result<WritePolicy, ArgError> {
    WritePolicy::parse(s).ok_or_else(|| {
        ArgError(format!(
            "unknown policy {s:?}: use write-back, write-through or ephemeral"
        ))
    })
}

/// Parses a size in bytes: a number with an optional unit `B`, `KiB`/`K`, `MiB`/`M`, `GiB`/`G`
/// (binary), e.g. `64MiB`, `4096`.
///
/// ```
/// use faascache_client::cli::parse_size;
/// assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
/// assert_eq!(parse_size("1.5k").unwrap(), 1536);
/// assert!(parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, ArgError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| ArgError(format!("bad size {s:?}: use e.g. 64MiB, 512KiB, 4096")))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        u => {
            return Err(ArgError(format!(
                "bad size unit {u:?} in {s:?}: use B, KiB, MiB, GiB or TiB"
            )))
        }
    };
    let v = n * (1u64 << shift) as f64;
    if !(0.0..u64::MAX as f64).contains(&v) {
        return Err(ArgError(format!("size {s:?} is out of range")));
    }
    Ok(v as u64)
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a number of seconds (`1.5`).
///
/// ```
/// use std::time::Duration;
/// use faascache_client::cli::parse_duration;
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| DurationError::Number(s.to_string()))?;
    let secs = match unit {
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(DurationError::Unit {
                unit: unit.to_string(),
                arg: s.to_string(),
            })
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| DurationError::Range(s.to_string()))
}

/// Why a `--timeout` (or other duration) argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The number does not parse.
    #[error("bad duration {0:?}: use e.g. 500ms, 5s, 1m")]
    Number(String),
    /// Unknown unit.
    #[error("bad duration unit {unit:?} in {arg:?}: use us, ms, s, m or h")]
    Unit {
        /// The unit given.
        unit: String,
        /// The whole argument.
        arg: String,
    },
    /// Negative, not finite, or too large for a `Duration`.
    #[error("bad duration {0:?}: must be a non-negative number of at most 2^64 seconds")]
    Range(String),
}
