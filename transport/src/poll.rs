//! How a thread waits for I/O: spin, block, or spin-then-block (adaptive, the default).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::limits::DEFAULT_ADAPTIVE_SPIN;

/// Polling policy of a dispatch thread or of a client waiting for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Never block: lowest latency, burns a core. CLI: `spin`.
    Spin,
    /// Spin for `spin` after the last activity, then block. CLI: `adaptive` or `adaptive:200us`.
    Adaptive {
        /// How long to keep spinning after the last activity.
        spin: Duration,
    },
    /// Always block in the kernel: least CPU, a wake-up per message. CLI: `block`.
    Block,
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::Adaptive {
            spin: DEFAULT_ADAPTIVE_SPIN,
        }
    }
}

impl PollMode {
    /// Spin budget after the last activity (`None` = spin forever).
    pub(crate) fn spin_budget(self) -> Option<Duration> {
        match self {
            PollMode::Spin => None,
            PollMode::Adaptive { spin } => Some(spin),
            PollMode::Block => Some(Duration::ZERO),
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

/// Parse `250us`, `1ms`, `2s`, `500ns`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let digits = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return None,
    })
}

impl fmt::Display for PollMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollMode::Spin => f.write_str("spin"),
            PollMode::Block => f.write_str("block"),
            PollMode::Adaptive { spin } => write!(f, "adaptive:{}", fmt_duration(*spin)),
        }
    }
}

/// `poll mode` flag error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad poll mode {0:?}: use `spin`, `block`, `adaptive` or `adaptive:<duration>` (e.g. `adaptive:200us`)")]
pub struct PollModeError(pub String);

impl FromStr for PollMode {
    type Err = PollModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spin" => Ok(PollMode::Spin),
            "block" => Ok(PollMode::Block),
            "adaptive" => Ok(PollMode::default()),
            _ => s
                .strip_prefix("adaptive:")
                .and_then(parse_duration)
                .map(|spin| PollMode::Adaptive { spin })
                .ok_or_else(|| PollModeError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        for s in [
            "spin",
            "block",
            "adaptive:200us",
            "adaptive:1ms",
            "adaptive:2s",
            "adaptive:5ns",
        ] {
            assert_eq!(s.parse::<PollMode>().unwrap().to_string(), s);
        }
        assert_eq!("adaptive".parse::<PollMode>().unwrap(), PollMode::default());
        assert!("adaptive:fast".parse::<PollMode>().is_err());
        assert!("busy".parse::<PollMode>().is_err());
    }
}
