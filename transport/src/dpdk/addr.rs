//! Plain data of the DPDK transport that the device layer shares with the rest: MAC addresses,
//! datagram sizes, and the error for a locator that names a device badly (a leaf module).

use std::fmt;

use crate::locator::Locator;
use crate::Error;

/// Default datagram size: a standard 1500-byte Ethernet payload minus our 6 bytes.
pub const DEFAULT_MTU: usize = 1494;

/// Largest configurable datagram (a 9000-byte jumbo frame payload minus our 6 bytes).
pub const MAX_MTU: usize = 8994;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address that does not parse (see [`Mac`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address {0:?}: expected six hex bytes like 02:00:00:00:00:01")]
pub struct MacParseError(pub String);

impl std::str::FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> std::result::Result<Mac, MacParseError> {
        let parts: Vec<&str> = s.split(['-', ':']).collect();
        let bad = || MacParseError(s.to_string());
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(m))
    }
}

/// The error for a `dpdk:` locator whose device part is wrong: the locator and why.
pub(super) fn bad_locator(loc: &Locator, reason: String) -> Error {
    Error::Connect {
        locator: loc.to_string(),
        reason,
    }
}
