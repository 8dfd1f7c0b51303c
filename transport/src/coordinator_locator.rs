//! [`CoordinatorLocator`]: how servers and clients find the coordinator, directly
//! (`tcp:host=...`) or through ZooKeeper (`zk:HOST:PORT[/CHROOT]`, the leader's locator read from
//! `ROOT/leader` with `faascache_zk::lookup_leader`).

use std::fmt;
use std::str::FromStr;

use faascache_zk::{lookup_leader, ZkAddress, LEADER_ZNODE};

use crate::locator::LocatorError;
use crate::{ClientConfig, ServiceLocator, Session};

/// Where a server or client finds the coordinator: a service locator, or a ZooKeeper address
/// whose `ROOT/leader` znode names the current leader's locator.
///
/// ```
/// use faascache_transport::CoordinatorLocator;
/// let d: CoordinatorLocator = "tcp:host=10.0.0.1,port=12246".parse().unwrap();
/// assert!(matches!(d, CoordinatorLocator::Direct(_)));
/// let z: CoordinatorLocator = "zk:10.0.0.5:2181,10.0.0.6:2181/prod".parse().unwrap();
/// assert_eq!(z.to_string(), "zk:10.0.0.5:2181,10.0.0.6:2181/prod");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorLocator {
    /// The coordinator's service locator.
    Direct(ServiceLocator),
    /// Look the leader up in ZooKeeper (again whenever its session fails).
    ZooKeeper(ZkAddress),
}

impl From<ServiceLocator> for CoordinatorLocator {
    fn from(l: ServiceLocator) -> Self {
        CoordinatorLocator::Direct(l)
    }
}

impl FromStr for CoordinatorLocator {
    type Err = LocatorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("zk:") {
            let z: ZkAddress = s
                .parse()
                .map_err(|e: faascache_zk::AddressError| LocatorError {
                    part: e.part,
                    reason: e.reason,
                })?;
            Ok(CoordinatorLocator::ZooKeeper(z))
        } else {
            Ok(CoordinatorLocator::Direct(s.parse()?))
        }
    }
}

impl fmt::Display for CoordinatorLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinatorLocator::Direct(l) => l.fmt(f),
            CoordinatorLocator::ZooKeeper(z) => z.fmt(f),
        }
    }
}

impl CoordinatorLocator {
    /// The coordinator's service locator now: the locator itself, or the one the leader
    /// published in ZooKeeper (one short ZooKeeper session per call).
    pub fn resolve(&self) -> crate::Result<ServiceLocator> {
        match self {
            CoordinatorLocator::Direct(l) => Ok(l.clone()),
            CoordinatorLocator::ZooKeeper(z) => {
                let fail = |reason: String| crate::Error::Connect {
                    locator: z.to_string(),
                    reason,
                };
                let text = lookup_leader(z).map_err(|e| fail(e.to_string()))?;
                let loc: ServiceLocator = text.parse().map_err(|e: LocatorError| {
                    fail(format!(
                        "the leader published a bad locator {text:?} in {}: {e}",
                        z.path(LEADER_ZNODE)
                    ))
                })?;
                tracing::debug!(zk = %z, leader = %loc, "coordinator resolved through ZooKeeper");
                Ok(loc)
            }
        }
    }

    /// Resolve, then connect to the coordinator.
    pub fn connect(&self, cfg: ClientConfig) -> crate::Result<Session> {
        crate::connect(&self.resolve()?, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_locators() {
        let d: CoordinatorLocator = " tcp:host=h,port=1 ".parse().unwrap();
        assert_eq!(d.to_string(), "tcp:host=h,port=1");
        assert_eq!(d.resolve().unwrap().to_string(), "tcp:host=h,port=1");
        assert!("zk:nohost".parse::<CoordinatorLocator>().is_err());
        assert!("bogus".parse::<CoordinatorLocator>().is_err());
        // Nothing listens on port 1: a clear connect error naming the zk address.
        let z: CoordinatorLocator = "zk:127.0.0.1:1".parse().unwrap();
        let e = z.resolve().unwrap_err().to_string();
        assert!(e.contains("zk:127.0.0.1:1"), "{e}");
    }
}
