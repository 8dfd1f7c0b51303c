//! A small synchronous ZooKeeper client: the coordinator's `zk:` external storage (election,
//! fenced state) and [`lookup_leader`], with which the transport's `CoordinatorLocator` finds the
//! leading coordinator. It depends on no other FaaSCache crate.
//!
//! Scope: what leader election, fenced state and leader discovery need — `create` (persistent,
//! ephemeral, sequential), `delete`, `exists`, `getData`, `setData` (versioned), `getChildren`,
//! `multi` (with version checks), watches and pings. No ACLs beyond `world:anyone`, no SASL, no
//! read-only mode. When its connection breaks, a session is resumed on another server of the
//! ensemble (or the same one) while it has not expired; calls in flight meanwhile fail with
//! [`ZkError::ConnectionLoss`] and watches set before are not re-armed (callers poll as well). A
//! session that cannot be resumed before its timeout is *lost* ([`ZkSession::alive`]): its
//! owner opens a new one, and the coordinator treats that as losing leadership.
//!
//! Addresses: `zk:HOST:PORT[,HOST:PORT...][/CHROOT]` — the ensemble's client ports and an
//! optional path under which every FaaSCache znode lives (default [`DEFAULT_ROOT`]). One ensemble
//! serves several clusters when each has its own chroot. Znodes under the root:
//!
//! | znode | kind | content |
//! |---|---|---|
//! | `ROOT/election/c_NNNNNNNNNN` | ephemeral sequential | one per coordinator process; the lowest leads |
//! | `ROOT/epoch` | persistent | leader epoch (decimal); its znode version fences writes |
//! | `ROOT/leader` | ephemeral | the leader's service locator |
//! | `ROOT/blobs/NAME` | persistent | the coordinator's state blobs |
//!
//! Threading: a [`ZkSession`] is `Send + Sync`; calls from several threads are pipelined on one
//! connection. One reader thread per session receives replies and watch events and sends pings.
//! Everything read from the socket is untrusted: lengths are checked before allocation
//! ([`MAX_PACKET`]) and a malformed packet ends the session with [`ZkError::Protocol`].

#![deny(unsafe_code)]

mod codes;
pub mod proto;
mod session;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use session::ZkSession;

/// Largest packet accepted from a server: ZooKeeper's default `jute.maxbuffer` (1 MiB − 1) plus
/// room for headers and stats. Longer length prefixes end the session before any allocation.
pub const MAX_PACKET: usize = 2 * 1024 * 1024;
/// Largest znode payload this client sends: ZooKeeper's default `jute.maxbuffer` is 0xfffff
/// bytes for a whole request; 64 KiB are left for path and headers.
pub const MAX_DATA: usize = 0xfffff - 64 * 1024;
/// Root of the FaaSCache znodes when the address has no chroot.
pub const DEFAULT_ROOT: &str = "/faascache";
/// Name (under the root) of the ephemeral znode holding the leader's service locator.
pub const LEADER_ZNODE: &str = "leader";
/// Session timeout asked for by short resolution sessions (servers and clients looking up the
/// leader). Their sessions are closed right after one read.
pub const RESOLVE_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect timeout per ZooKeeper server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a ZooKeeper operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkError {
    /// The address does not parse.
    #[error("bad ZooKeeper address {0}")]
    BadAddress(String),
    /// No server of the ensemble accepted a session.
    #[error("cannot reach ZooKeeper at {hosts}: {reason} (is the ensemble running? check the zk: address)")]
    Connect {
        /// The servers tried.
        hosts: String,
        /// Each server's failure.
        reason: String,
    },
    /// The session is over: connection closed or reset, server silent, session expired, or
    /// closed by us. Ephemeral znodes of the session are (or will be) gone; open a new session.
    #[error("ZooKeeper session lost: {0}")]
    SessionLost(String),
    /// The connection to the ensemble broke; the session is being resumed on another (or the
    /// same) server. A call that got this may or may not have been applied; retry it.
    #[error("ZooKeeper connection lost ({0}); the session is reconnecting: retry")]
    ConnectionLoss(String),
    /// The server answered with an error code.
    #[error("ZooKeeper {op} {path}: {} ({code})", codes::err_name(*code))]
    Api {
        /// Operation.
        op: &'static str,
        /// Path.
        path: String,
        /// ZooKeeper error code ([`proto::err`](crate::proto::err)).
        code: i32,
    },
    /// An op of a `multi` failed (so none was applied).
    #[error("ZooKeeper multi: op {index} failed with {} ({code}); nothing was applied", codes::err_name(*code))]
    Multi {
        /// Index of the failing op.
        index: usize,
        /// Its error code.
        code: i32,
    },
    /// No reply in time.
    #[error("ZooKeeper {op} got no reply within {after:?}; the ensemble is slow or unreachable")]
    Timeout {
        /// Operation.
        op: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// A payload larger than ZooKeeper accepts.
    #[error("{len} bytes exceed the ZooKeeper znode limit of {max} bytes (jute.maxbuffer)")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Limit ([`MAX_DATA`]).
        max: usize,
    },
    /// No coordinator leads now: the leader znode is absent.
    #[error("no coordinator leads now ({0} is absent): is a `faascache coordinator --storage zk:...` with this address running? After a leader dies, a standby takes over once its ZooKeeper session expires")]
    NoLeader(String),
    /// The server sent bytes that do not decode.
    #[error("ZooKeeper protocol violation: {0}")]
    Protocol(String),
}

impl ZkError {
    /// The ZooKeeper error code of an [`ZkError::Api`] or [`ZkError::Multi`] failure.
    pub fn code(&self) -> Option<i32> {
        match self {
            ZkError::Api { code, .. } | ZkError::Multi { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Kind of znode to create (`CreateMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Lives until deleted.
    Persistent = 0,
    /// Deleted when the creating session ends.
    Ephemeral = 1,
    /// Persistent, with a 10-digit sequence number appended to the name.
    PersistentSequential = 2,
    /// Ephemeral, with a sequence number appended.
    EphemeralSequential = 3,
}

/// Metadata of a znode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Transaction that created it.
    pub czxid: i64,
    /// Transaction that last modified it.
    pub mzxid: i64,
    /// Creation time (ms since the epoch).
    pub ctime: i64,
    /// Modification time.
    pub mtime: i64,
    /// Data version: 0 at creation, +1 per `setData`.
    pub version: i32,
    /// Children version.
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Owning session of an ephemeral znode (0 otherwise).
    pub ephemeral_owner: i64,
    /// Data length.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Last transaction that changed the children.
    pub pzxid: i64,
}

/// One op of a [`ZkSession::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// Create a znode.
    Create {
        /// Path.
        path: &'a str,
        /// Data.
        data: &'a [u8],
        /// Kind.
        mode: CreateMode,
    },
    /// Delete a znode at `version` (−1: any).
    Delete {
        /// Path.
        path: &'a str,
        /// Expected version.
        version: i32,
    },
    /// Replace data at `version` (−1: any).
    SetData {
        /// Path.
        path: &'a str,
        /// Data.
        data: &'a [u8],
        /// Expected version.
        version: i32,
    },
    /// Fail the whole multi unless the znode is at `version`.
    Check {
        /// Path.
        path: &'a str,
        /// Expected version.
        version: i32,
    },
}

/// Result of one op of a successful (or failed) multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The created path.
    Created(String),
    /// The new stat after `SetData`.
    Set(Stat),
    /// Deleted.
    Deleted,
    /// Check passed.
    Checked,
    /// The op's error code (in a failed multi).
    Error(i32),
}

/// A watch notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// 1 created, 2 deleted, 3 data changed, 4 children changed.
    pub kind: i32,
    /// Connection state (3 = connected).
    pub state: i32,
    /// The znode.
    pub path: String,
}

/// A parsed `zk:HOST:PORT[,HOST:PORT...][/CHROOT]` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkAddress {
    hosts: Vec<(String, u16)>,
    chroot: Option<String>,
}

impl ZkAddress {
    /// The ensemble's servers, in the order given.
    pub fn hosts(&self) -> &[(String, u16)] {
        &self.hosts
    }
    /// The path under which every FaaSCache znode lives (the chroot, or [`DEFAULT_ROOT`]).
    pub fn root(&self) -> &str {
        self.chroot.as_deref().unwrap_or(DEFAULT_ROOT)
    }
    /// `ROOT/NAME`.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.root())
    }
    /// The servers as `h:p,h:p` (for messages).
    pub fn hosts_text(&self) -> String {
        self.hosts
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for ZkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zk:{}", self.hosts_text())?;
        if let Some(c) = &self.chroot {
            f.write_str(c)?;
        }
        Ok(())
    }
}

/// A ZooKeeper address that does not parse: the offending part and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ZooKeeper address at {part:?}: {reason}")]
pub struct AddressError {
    /// The offending part of the input.
    pub part: String,
    /// What rule it broke and how to fix it.
    pub reason: String,
}

fn bad(part: &str, reason: impl Into<String>) -> AddressError {
    AddressError {
        part: part.to_string(),
        reason: reason.into(),
    }
}

impl FromStr for ZkAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "use zk:HOST:PORT[,HOST:PORT...][/CHROOT], e.g. zk:10.0.0.5:2181,10.0.0.6:2181/faascache";
        let s = s.trim();
        let rest = s
            .strip_prefix("zk:")
            .ok_or_else(|| bad(s, format!("a ZooKeeper address starts with zk:; {FORM}")))?;
        let (hosts_part, chroot) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        if hosts_part.is_empty() {
            return Err(bad(s, format!("no ZooKeeper server given; {FORM}")));
        }
        let mut hosts = Vec::new();
        for hp in hosts_part.split(',') {
            let (h, p) = hp
                .rsplit_once(':')
                .ok_or_else(|| bad(hp, format!("a server is HOST:PORT; {FORM}")))?;
            let h = h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h);
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(bad(hp, "empty or malformed host"));
            }
            let port: u16 = p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(hp, "the port must be a number from 1 to 65535"))?;
            hosts.push((h.to_string(), port));
        }
        let chroot = match chroot {
            None => None,
            Some(c) => {
                let ok = c.len() > 1
                    && !c.ends_with('/')
                    && c[1..].split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != "."
                            && seg != ".."
                            && seg.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
                            })
                    });
                if !ok {
                    return Err(bad(
                        c,
                        "the chroot is an absolute path of names made of letters, digits, '.', '_' and '-' (no trailing '/')",
                    ));
                }
                Some(c.to_string())
            }
        };
        Ok(ZkAddress { hosts, chroot })
    }
}

/// Read the leader's locator (text, trimmed) from `ROOT/leader` in one short session: how
/// servers and clients find the coordinator through ZooKeeper.
pub fn lookup_leader(z: &ZkAddress) -> Result<String, ZkError> {
    let s = ZkSession::connect(z, RESOLVE_SESSION_TIMEOUT)?;
    let path = z.path(LEADER_ZNODE);
    let r = s.get_data(&path, false);
    s.close();
    match r? {
        Some((data, _)) => String::from_utf8(data)
            .map(|t| t.trim().to_string())
            .map_err(|_| ZkError::Protocol(format!("{path} does not hold UTF-8 text"))),
        None => Err(ZkError::NoLeader(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_round_trip() {
        let a: ZkAddress = "zk:127.0.0.1:2181".parse().unwrap();
        assert_eq!(a.hosts(), &[("127.0.0.1".to_string(), 2181)]);
        assert_eq!(a.root(), DEFAULT_ROOT);
        assert_eq!(a.path("leader"), "/faascache/leader");
        let b: ZkAddress = "zk:a:1,[::1]:2,b.example:3/x/y".parse().unwrap();
        assert_eq!(b.hosts().len(), 3);
        assert_eq!(b.hosts()[1], ("::1".to_string(), 2));
        assert_eq!(b.root(), "/x/y");
        assert_eq!(b.to_string(), "zk:a:1,[::1]:2,b.example:3/x/y");
        assert_eq!(b.to_string().parse::<ZkAddress>().unwrap(), b);
        for bad in [
            "zk:",
            "zk:host",
            "zk:host:0",
            "zk:host:99999",
            "zk::1",
            "zk:h:1/",
            "zk:h:1//a",
            "zk:h:1/a/../b",
            "zk:h:1/a b",
            "tcp:host=h,port=1",
            "zk:h:1,",
        ] {
            assert!(bad.parse::<ZkAddress>().is_err(), "{bad}");
        }
    }
}
