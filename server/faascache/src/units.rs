//! Parsing of command-line quantities: sizes (`256MiB`, `1GiB`, `1.5G`, `4096`) and durations
//! (`500ms`, `15s`, `2m`).

use std::time::Duration;

/// Why a size or duration argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// The number does not parse.
    BadSize(String),
    /// The size's unit is unknown.
    BadSizeUnit {
        /// The unit given.
        unit: String,
        /// The whole argument.
        arg: String,
    },
    /// The size does not fit in this machine's address space.
    SizeOutOfRange(String),
    /// The number does not parse.
    BadDuration(String),
    /// The duration's unit is unknown.
    BadDurationUnit {
        /// The unit given.
        unit: String,
        /// The whole argument.
        arg: String,
    },
    /// The duration overflows (more than `u64::MAX` seconds).
    DurationOutOfRange(String),
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitError::BadSize(s) => write!(f, "bad size {s:?}: expected e.g. 256MiB, 1GiB, 4096"),
            UnitError::BadSizeUnit { unit, arg } => write!(
                f,
                "bad size unit {unit:?} in {arg:?}: use B, KiB, MiB, GiB or TiB"
            ),
            UnitError::SizeOutOfRange(s) => write!(
                f,
                "size {s:?} is out of range: at most {} bytes on this machine",
                usize::MAX
            ),
            UnitError::BadDuration(s) => {
                write!(f, "bad duration {s:?}: expected e.g. 500ms, 15s, 2m")
            }
            UnitError::BadDurationUnit { unit, arg } => {
                write!(
                    f,
                    "bad duration unit {unit:?} in {arg:?}: use ms, s, m or h"
                )
            }
            UnitError::DurationOutOfRange(s) => write!(
                f,
                "duration {s:?} is out of range: at most {} seconds",
                u64::MAX
            ),
        }
    }
}

impl std::error::Error for UnitError {}

/// Parse a size in bytes: a number with an optional unit `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
/// `T`/`TiB` (binary: 1 KiB = 1024 B; `KB`, `MB`, `GB` are accepted as binary too), case-insensitive.
pub fn parse_size(s: &str) -> Result<usize, UnitError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| UnitError::BadSize(s.to_string()))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(UnitError::BadSizeUnit {
                unit: u.to_string(),
                arg: s.to_string(),
            })
        }
    };
    let bytes = n * mult;
    // `usize::MAX as f64` rounds up to 2^64 (or 2^32): a value equal to it does not fit.
    if !bytes.is_finite() || bytes < 0.0 || bytes >= usize::MAX as f64 {
        return Err(UnitError::SizeOutOfRange(s.to_string()));
    }
    Ok(bytes as usize)
}

/// Parse a duration: a whole number with `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::BadDuration(s.to_string()))?;
    let secs_per = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        u => {
            return Err(UnitError::BadDurationUnit {
                unit: u.to_string(),
                arg: s.to_string(),
            })
        }
    };
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| UnitError::DurationOutOfRange(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn sizes_out_of_range_are_refused_with_a_clear_error() {
        // 2^64 bytes (16 EiB) and beyond do not fit a usize (on any supported target).
        let e = parse_size("16777216TiB").unwrap_err();
        assert_eq!(e, UnitError::SizeOutOfRange("16777216TiB".into()));
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = parse_size("1e400").unwrap_err();
        assert!(matches!(e, UnitError::BadSizeUnit { .. }), "{e:?}");
        let huge = format!("{}TiB", "9".repeat(400));
        assert_eq!(
            parse_size(&huge),
            Err(UnitError::SizeOutOfRange(huge.clone()))
        );
        assert!(matches!(
            parse_size("2 furlongs"),
            Err(UnitError::BadSizeUnit { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn durations_out_of_range_are_refused_with_a_clear_error() {
        // u64::MAX / 3600 hours fits, one more does not (it would overflow `n * 3600`).
        let max_h = u64::MAX / 3600;
        assert_eq!(
            parse_duration(&format!("{max_h}h")),
            Ok(Duration::from_secs(max_h * 3600))
        );
        let over = format!("{}h", max_h + 1);
        let e = parse_duration(&over).unwrap_err();
        assert_eq!(e, UnitError::DurationOutOfRange(over));
        assert!(e.to_string().contains("out of range"), "{e}");
        let over_m = format!("{}m", u64::MAX / 60 + 1);
        assert!(matches!(
            parse_duration(&over_m),
            Err(UnitError::DurationOutOfRange(_))
        ));
        // More digits than a u64 holds: a parse error, not a panic.
        assert_eq!(
            parse_duration("99999999999999999999999s"),
            Err(UnitError::BadDuration("99999999999999999999999s".into()))
        );
        assert_eq!(
            parse_duration(&format!("{}ms", u64::MAX)),
            Ok(Duration::from_millis(u64::MAX))
        );
    }
}
