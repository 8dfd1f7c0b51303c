//! The `Driver` trait: the only thing a system under test implements.
//!
//! A [`Driver`] describes one system (where it is, its version and server process) and opens
//! [`Client`] connections; each load thread owns one `Client`. A client is a pipelined,
//! in-order request/response channel: `send` queues requests, `flush` puts them on the wire,
//! `recv` returns replies in request order. The load engine, key generator and timing code are
//! shared by every driver, so Redis, memcached and FaaSCache are measured the same way.
//!
//! FaaSCache plugs in twice: `drivers/faascache_kv.rs` (key-value ops over the client library;
//! [`open`] maps `--coordinator`/`--dir`/`faascache:LOCATOR` to it) and `drivers/faascache.rs`
//! (the echo RPC against a bare transport server).

use crate::net::PollMode;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One request. Keys and values are borrowed from the workload's buffers.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Read one object.
    Get {
        /// key
        key: &'a [u8],
    },
    /// Write (create or overwrite) one object.
    Set {
        /// key
        key: &'a [u8],
        /// value
        value: &'a [u8],
    },
    /// Delete one object.
    Delete {
        /// key
        key: &'a [u8],
    },
    /// Read several objects in one request (Redis MGET, memcached multi-key get).
    MultiGet {
        /// keys
        keys: &'a [Vec<u8>],
    },
    /// Write several objects, all with the same value (Redis MSET, memcached pipelined sets).
    MultiSet {
        /// keys
        keys: &'a [Vec<u8>],
        /// value for every key
        value: &'a [u8],
    },
    /// A no-op round trip carrying `payload` (FaaSCache echo RPC, Redis ECHO, memcached `mn`).
    Echo {
        /// payload
        payload: &'a [u8],
    },
}

/// Operation kinds, for capability checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// [`Op::Get`]
    Get,
    /// [`Op::Set`]
    Set,
    /// [`Op::Delete`]
    Delete,
    /// [`Op::MultiGet`]
    MultiGet,
    /// [`Op::MultiSet`]
    MultiSet,
    /// [`Op::Echo`]
    Echo,
}

impl Op<'_> {
    /// The kind of this op.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Get { .. } => OpKind::Get,
            Op::Set { .. } => OpKind::Set,
            Op::Delete { .. } => OpKind::Delete,
            Op::MultiGet { .. } => OpKind::MultiGet,
            Op::MultiSet { .. } => OpKind::MultiSet,
            Op::Echo { .. } => OpKind::Echo,
        }
    }

    /// Number of objects the op touches (1 for single-object ops).
    pub fn objects(&self) -> usize {
        match self {
            Op::MultiGet { keys } | Op::MultiSet { keys, .. } => keys.len(),
            _ => 1,
        }
    }
}

/// A reply, without the payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Write acknowledged / echo returned.
    Ok,
    /// Read hit with a value of this many bytes.
    Value(usize),
    /// Read miss.
    Miss,
    /// Multi-read: how many objects were found and their total bytes.
    Values {
        /// objects found
        found: usize,
        /// value bytes
        bytes: usize,
    },
    /// Delete: whether the object existed.
    Deleted(bool),
    /// The server refused the request (the harness counts these as errors).
    Error(String),
}

/// Per-connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Busy-poll or block while waiting for replies.
    pub poll: PollMode,
    /// Give up on a reply after this long.
    pub timeout: Duration,
}

/// A connection owned by one load thread: in-order pipelined request/response.
pub trait Client: Send {
    /// Queues one request (may buffer; nothing need be sent before [`Client::flush`]).
    fn send(&mut self, op: &Op<'_>) -> Result<()>;
    /// Sends everything queued.
    fn flush(&mut self) -> Result<()>;
    /// Next reply, in request order. With `deadline`, returns `Ok(None)` if none is complete by
    /// then; without, waits up to the configured timeout and then fails.
    fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Reply>>;
    /// Requests sent or queued whose replies have not been returned yet.
    fn outstanding(&self) -> usize;
}

/// Static facts about a system under test, recorded with every result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DriverInfo {
    /// `redis`, `memcached`, `faascache`
    pub name: String,
    /// how it is reached, e.g. `tcp:127.0.0.1:6379`
    pub transport: String,
    /// server software version, if the server says
    pub server_version: Option<String>,
    /// server command line (its flags), if the server process is local and known
    pub server_cmdline: Option<String>,
    /// CPUs the server process may run on (`Cpus_allowed_list`)
    pub server_cpus: Option<String>,
    /// server threads (from /proc)
    pub server_threads: Option<u64>,
    /// protocol details, e.g. `RESP2`, `memcached text`
    pub protocol: String,
    /// anything a reader must know about how this driver maps the tests
    pub notes: Vec<String>,
}

/// A system under test.
pub trait Driver: Send + Sync {
    /// Short name: `redis`, `memcached`, `faascache`.
    fn name(&self) -> &str;
    /// Version, flags, transport: asked once per test run.
    fn info(&self) -> DriverInfo;
    /// Opens a connection for one load thread.
    fn connect(&self, cfg: &ClientConfig) -> Result<Box<dyn Client>>;
    /// Whether the driver can run this kind of op.
    fn supports(&self, kind: OpKind) -> bool;
    /// Longest key the system accepts.
    fn max_key_len(&self) -> usize {
        usize::MAX
    }
    /// The local server process (for CPU and RSS accounting), if known.
    fn server_pid(&self) -> Option<u32>;
    /// Removes all data (between tests); drivers that cannot should return an error.
    fn flush_all(&self) -> Result<()>;
}

/// How to reach the system under test, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSpec {
    /// `redis://host:port`
    Redis(String),
    /// `memcached://host:port`
    Memcached(String),
    /// `--coordinator LOCATOR` or `faascache:LOCATOR`
    FaasCacheCoordinator(String),
    /// `--dir DIR`: a local FaaSCache cluster directory
    FaasCacheDir(String),
}

impl DriverSpec {
    /// Parses a `--driver` argument.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(a) = s.strip_prefix("redis://") {
            Ok(Self::Redis(host_port(a, 6379)?))
        } else if let Some(a) = s.strip_prefix("memcached://") {
            Ok(Self::Memcached(host_port(a, 11211)?))
        } else if let Some(l) = s.strip_prefix("faascache:") {
            Ok(Self::FaasCacheCoordinator(l.to_string()))
        } else {
            anyhow::bail!(
                "unknown driver {s:?}: use redis://HOST:PORT, memcached://HOST:PORT, \
                 --coordinator LOCATOR or --dir DIR"
            )
        }
    }

    /// `redis` / `memcached` for the peers (the `{peer}` of restart commands), else `None`.
    pub fn peer_name(&self) -> Option<&'static str> {
        match self {
            Self::Redis(_) => Some("redis"),
            Self::Memcached(_) => Some("memcached"),
            _ => None,
        }
    }

    /// Display form.
    pub fn describe(&self) -> String {
        match self {
            Self::Redis(a) => format!("redis://{a}"),
            Self::Memcached(a) => format!("memcached://{a}"),
            Self::FaasCacheCoordinator(l) => format!("faascache:{l}"),
            Self::FaasCacheDir(d) => format!("faascache dir {d}"),
        }
    }
}

fn host_port(a: &str, default_port: u16) -> Result<String> {
    let a = a.trim_end_matches('/');
    if a.is_empty() {
        return Ok(format!("127.0.0.1:{default_port}"));
    }
    if a.contains(':') {
        let (_, p) = a.rsplit_once(':').unwrap_or_default();
        p.parse::<u16>()
            .map_err(|_| anyhow::anyhow!("bad port in {a:?}"))?;
        Ok(a.to_string())
    } else {
        Ok(format!("{a}:{default_port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_specs() {
        assert_eq!(
            DriverSpec::parse("redis://127.0.0.1:6380").unwrap(),
            DriverSpec::Redis("127.0.0.1:6380".into())
        );
        assert_eq!(
            DriverSpec::parse("redis://").unwrap(),
            DriverSpec::Redis("127.0.0.1:6379".into())
        );
        assert_eq!(
            DriverSpec::parse("memcached://localhost").unwrap(),
            DriverSpec::Memcached("localhost:11211".into())
        );
        assert!(DriverSpec::parse("memcached://h:notaport").is_err());
        assert!(DriverSpec::parse("mongo://x").is_err());
        assert!(matches!(
            DriverSpec::parse("faascache:tcp:host=a,port=1").unwrap(),
            DriverSpec::FaasCacheCoordinator(_)
        ));
    }
}
