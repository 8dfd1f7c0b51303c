//! Administration through the client: live memory resize of a server and draining a server
//! out of the cluster (issue 18), and finding a server by the name `faascache status` shows.

use std::time::Duration;

use faascache_protocol::msg::elastic::{DrainServerRequest, ResizeMemoryRequest};
use faascache_protocol::msg::{Request, ServerId};
use faascache_transport::CallError;

use crate::client::{failure_error, malformed};
use crate::{Client, Error, Result, ServerInfo};

/// What a resize did ([`Client::resize_server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeReport {
    /// The server (its id as `status` shows it).
    pub server: String,
    /// The budget before, bytes.
    pub previous_bytes: u64,
    /// The budget now, bytes (the request rounded down to whole seglets).
    pub budget_bytes: u64,
    /// The most this server may grow to (`--max-memory`), bytes.
    pub max_bytes: u64,
    /// Live log bytes after it.
    pub live_bytes: u64,
    /// Clean objects of backed tables evicted to make room.
    pub evicted_objects: u64,
    /// Live bytes the cleaner moved to make room.
    pub relocated_bytes: u64,
    /// Time the server spent on it.
    pub server_time: Duration,
}

/// How long a resize may take before the client stops waiting (a shrink of many GiB that must
/// relocate live data moves it at hundreds of MB/s).
pub const RESIZE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a drain did ([`Client::drain_server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// The server drained (its id as `status` showed it).
    pub server: String,
    /// Its locator.
    pub locator: String,
    /// Tablets moved to other masters.
    pub tablets_moved: u32,
    /// The server acknowledged that it retires (stops heartbeating and exits after a grace
    /// period). If not, it was removed anyway; if it still runs it re-enlists as a new empty
    /// server and should be stopped.
    pub retired: bool,
    /// Time the coordinator spent on the drain.
    pub elapsed: Duration,
}

/// How long a drain may take before the client stops waiting (it migrates every tablet of the
/// server: gigabytes at hundreds of MB/s, plus waits for migrations already running).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1800);

impl Client {
    /// Moves every tablet of the server `server` ([`Client::find_server`] names) to other
    /// masters and removes it from the cluster: no write is lost (writes to a moving tablet
    /// wait for the move; dirty objects of backed tables move with it and are written back by
    /// the new owner). The server then exits. Waits up to [`DRAIN_TIMEOUT`]; one attempt.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let r = c.drain_server("2")?;
    /// println!("{} tablets moved off {} in {:?}", r.tablets_moved, r.server, r.elapsed);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn drain_server(&self, server: &str) -> Result<DrainReport> {
        let info = self.find_server(server)?;
        if info.status != "up" {
            return Err(Error::InvalidArgument(format!(
                "server {} is {}, not up: only a running server can be drained",
                info.id, info.status
            )));
        }
        let id = parse_server_id(&info.id)?;
        let s = self.coordinator_session()?;
        let req = DrainServerRequest { server: id };
        let r = faascache_transport::call(&s, &req, DRAIN_TIMEOUT, |r| DrainReport {
            server: info.id.clone(),
            locator: info.locator.clone(),
            tablets_moved: r.tablets_moved,
            retired: r.retired,
            elapsed: Duration::from_micros(r.elapsed_us),
        });
        match r {
            Ok(v) => Ok(v),
            Err(CallError::Failed(f)) => Err(failure_error(&f, "")),
            Err(CallError::Malformed(e)) => Err(malformed(DrainServerRequest::OPCODE, e)),
            Err(CallError::Transport(e)) => Err(Error::from_transport(
                e,
                &format!("coordinator at {}", self.coordinator()),
            )),
        }
    }

    /// The server `name` names: its id as `status` shows it (`2.0`), its index alone (`2`:
    /// the up server with that index), or its service locator.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let s = c.find_server("1")?;
    /// println!("{} at {}: {} bytes", s.id, s.locator, s.budget_bytes);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn find_server(&self, name: &str) -> Result<ServerInfo> {
        let servers = self.servers()?;
        let index_of = |id: &str| id.split('.').next().map(str::to_string);
        let found = servers
            .iter()
            .find(|s| s.id == name || s.locator == name)
            .or_else(|| {
                servers
                    .iter()
                    .filter(|s| s.status == "up")
                    .find(|s| index_of(&s.id).as_deref() == Some(name))
            });
        match found {
            Some(s) => Ok(s.clone()),
            None => {
                let known: Vec<String> = servers
                    .iter()
                    .map(|s| format!("{} ({}, {})", s.id, s.status, s.locator))
                    .collect();
                Err(Error::InvalidArgument(format!(
                    "no server {name:?} in the cluster: give an id as `faascache status` shows it, \
                     an index or a locator; the cluster has {}",
                    if known.is_empty() { "no servers".to_string() } else { known.join(", ") }
                )))
            }
        }
    }

    /// Changes the log memory budget of the server `server` ([`Client::find_server`] names)
    /// to `bytes`, now: growing is immediate (up to its `--max-memory`); shrinking evicts
    /// clean objects of backed tables and moves live data, and never drops a dirty object or
    /// one of a plain table — if those do not fit, [`Error::ResizeRefused`] says how much is
    /// needed and nothing changed. One attempt (a resize is not retried blindly: the caller
    /// decides on a new size); waits up to [`RESIZE_TIMEOUT`].
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let r = c.resize_server("1.0", 256 << 20)?;
    /// println!("{} -> {} bytes, {} objects evicted", r.previous_bytes, r.budget_bytes, r.evicted_objects);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn resize_server(&self, server: &str, bytes: u64) -> Result<ResizeReport> {
        let info = self.find_server(server)?;
        if info.status != "up" {
            return Err(Error::InvalidArgument(format!(
                "server {} is {}, not up: only a running server can be resized",
                info.id, info.status
            )));
        }
        let s = self.master_session(&info.locator)?;
        let req = ResizeMemoryRequest { bytes };
        let r = faascache_transport::call(&s, &req, RESIZE_TIMEOUT, |r| ResizeReport {
            server: info.id.clone(),
            previous_bytes: r.previous_bytes,
            budget_bytes: r.budget_bytes,
            max_bytes: r.max_bytes,
            live_bytes: r.live_bytes,
            evicted_objects: r.evicted_objects,
            relocated_bytes: r.relocated_bytes,
            server_time: Duration::from_micros(r.elapsed_us),
        });
        match r {
            Ok(v) => Ok(v),
            Err(CallError::Failed(f)) => Err(failure_error(&f, "")),
            Err(CallError::Malformed(e)) => Err(malformed(ResizeMemoryRequest::OPCODE, e)),
            Err(CallError::Transport(e)) => Err(Error::from_transport(
                e,
                &format!("server {} at {}", info.id, info.locator),
            )),
        }
    }
}

/// A server id as `status` shows it (`index.generation`).
fn parse_server_id(id: &str) -> Result<ServerId> {
    let bad =
        || Error::InvalidArgument(format!("bad server id {id:?} (expected index.generation)"));
    let (i, g) = id.split_once('.').ok_or_else(bad)?;
    Ok(ServerId::new(
        i.parse().map_err(|_| bad())?,
        g.parse().map_err(|_| bad())?,
    ))
}
