//! The `zk:HOST:PORT[,HOST:PORT...][/CHROOT]` external storage: the coordinator's blobs in a
//! ZooKeeper ensemble, leader election among standby coordinators, and epoch fencing.
//!
//! Znodes (under the root of the address, `/faascache` by default; see
//! `faascache_zk`):
//!
//! - `election/c_NNNNNNNNNN` — ephemeral sequential, one per coordinator process. The lowest
//!   sequence number leads; every other process waits (a *standby*) with a watch on the znode
//!   just before its own, and re-checks when it goes. A process that dies stops refreshing its
//!   session; when the session expires (its timeout, [`SESSION_TIMEOUT`] by default) ZooKeeper
//!   deletes its znodes and the next standby leads.
//! - `epoch` — persistent, the leader epoch as decimal text. A new leader increments it with a
//!   versioned `setData` (compare-and-set on the znode version) and remembers the version it
//!   wrote. Every later write of that leader is a `multi` whose first op checks `epoch` is still
//!   at that version: once a successor has bumped the epoch, a deposed leader's writes fail as a
//!   whole ([`ExternalStorageError::NotLeader`]).
//! - `leader` — ephemeral, the leader's service locator ([`ExternalStorage::advertise`]), which
//!   servers and clients given `--coordinator zk:...` read. Written in a fenced `multi` too.
//! - `blobs/NAME` — persistent, one per blob. Blob version = znode data version + 1 (a znode
//!   starts at version 0; a blob's first version is 1).
//!
//! Threading: the session's reader thread keeps it alive with pings; the storage's methods may be
//! called from any thread (writes are serialised by a mutex, like the `file:` backend's).
//! [`ExternalStorage::check_leadership`] reports a lost session or election znode; the process
//! must then stop acting as coordinator (the `faascache coordinator` daemon exits).

use std::time::Duration;

use faascache_zk::proto::err;
use faascache_zk::{CreateMode, Op, OpResult, ZkAddress, ZkError, ZkSession, LEADER_ZNODE};
use parking_lot::Mutex;

use super::external::{check_name, ExternalStorage, ExternalStorageError, Versioned};

/// Session timeout the coordinator asks for: how long a dead leader keeps its leadership before a
/// standby takes over (ZooKeeper clamps it to `2..20 × tickTime` of its configuration).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a starting coordinator keeps trying to reach ZooKeeper before it gives up.
pub const START_RETRY: Duration = Duration::from_secs(30);
/// Longest a standby waits for a watch before looking at the election again anyway.
const ELECTION_POLL: Duration = Duration::from_secs(1);
const ELECTION: &str = "election";
const EPOCH: &str = "epoch";
const BLOBS: &str = "blobs";

/// What this process holds once it leads.
#[derive(Debug, Clone, Copy)]
struct Lead {
    epoch: u64,
    /// Version of the `epoch` znode as we left it.
    epoch_version: i32,
}

/// The `zk:` backend.
#[derive(Debug)]
pub struct ZkStorage {
    addr: ZkAddress,
    zk: ZkSession,
    /// Our election znode (full path), once created.
    candidate: Mutex<Option<String>>,
    lead: Mutex<Option<Lead>>,
    /// Serialises writers in this process.
    write: Mutex<()>,
}

fn zk_err(addr: &ZkAddress, e: ZkError) -> ExternalStorageError {
    ExternalStorageError::ZooKeeper {
        address: addr.to_string(),
        reason: e.to_string(),
    }
}

impl ZkStorage {
    /// Connect to the ensemble named by `locator` (`zk:...`) and create the root znodes.
    pub fn open(locator: &str) -> Result<ZkStorage, ExternalStorageError> {
        Self::open_with(locator, SESSION_TIMEOUT)
    }

    /// [`ZkStorage::open`] with another session timeout.
    pub fn open_with(locator: &str, timeout: Duration) -> Result<ZkStorage, ExternalStorageError> {
        let addr: ZkAddress = locator.parse().map_err(|e: faascache_zk::AddressError| {
            ExternalStorageError::BadLocator(format!("{locator}: {e}"))
        })?;
        // Keep trying for a while: coordinators and ZooKeeper are often started together.
        let deadline = std::time::Instant::now() + START_RETRY;
        let zk = loop {
            match ZkSession::connect(&addr, timeout) {
                Ok(zk) => break zk,
                Err(e @ ZkError::Connect { .. }) if std::time::Instant::now() < deadline => {
                    tracing::warn!(zk = %addr, error = %e, "ZooKeeper not reachable yet; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(zk_err(&addr, e)),
            }
        };
        for dir in [ELECTION, BLOBS] {
            zk.create_all(&addr.path(dir))
                .map_err(|e| zk_err(&addr, e))?;
        }
        tracing::info!(zk = %addr, session = format_args!("{:#x}", zk.session_id()), timeout = ?zk.timeout(), "connected to ZooKeeper");
        Ok(ZkStorage {
            addr,
            zk,
            candidate: Mutex::new(None),
            lead: Mutex::new(None),
            write: Mutex::new(()),
        })
    }

    fn err(&self, e: ZkError) -> ExternalStorageError {
        zk_err(&self.addr, e)
    }

    fn blob(&self, name: &str) -> String {
        format!("{}/{BLOBS}/{name}", self.addr.root())
    }

    /// Our election znode, created on first use (and again if it vanished).
    fn candidate(&self) -> Result<String, ExternalStorageError> {
        let mut c = self.candidate.lock();
        if let Some(p) = c.as_ref() {
            if self.zk.exists(p, false).map_err(|e| self.err(e))?.is_some() {
                return Ok(p.clone());
            }
        }
        let me = format!(
            "pid {} on {}",
            std::process::id(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
        );
        let p = self
            .zk
            .create(
                &format!("{}/{ELECTION}/c_", self.addr.root()),
                me.as_bytes(),
                CreateMode::EphemeralSequential,
            )
            .map_err(|e| self.err(e))?;
        *c = Some(p.clone());
        Ok(p)
    }

    /// Block until our election znode is the lowest.
    fn wait_until_first(&self) -> Result<(), ExternalStorageError> {
        let mut announced = false;
        loop {
            let mine = self.candidate()?;
            let my_name = mine.rsplit('/').next().unwrap_or("").to_string();
            let dir = self.addr.path(ELECTION);
            let mut names = self.zk.get_children(&dir, false).map_err(|e| self.err(e))?;
            // Sequence numbers are the last 10 digits; names share the prefix.
            names.sort_by_key(|n| seq(n));
            let Some(pos) = names.iter().position(|n| *n == my_name) else {
                continue; // our znode vanished meanwhile: `candidate` re-creates it
            };
            if pos == 0 {
                return Ok(());
            }
            let ahead = format!("{dir}/{}", names[pos - 1]);
            if !announced {
                tracing::info!(zk = %self.addr, waiting_for = %ahead, "standby: another coordinator leads; waiting to take over");
                announced = true;
            }
            // Watch the one just ahead of us; re-check when it goes (or every ELECTION_POLL).
            if self
                .zk
                .exists(&ahead, true)
                .map_err(|e| self.err(e))?
                .is_some()
            {
                let _ = self.zk.wait_event(ELECTION_POLL);
            }
            self.zk.alive().map_err(|e| self.err(e))?;
        }
    }

    /// The epoch and the version of its znode (0 and −1 if absent).
    fn read_epoch(&self) -> Result<(u64, i32), ExternalStorageError> {
        let path = self.addr.path(EPOCH);
        match self.zk.get_data(&path, false).map_err(|e| self.err(e))? {
            None => Ok((0, -1)),
            Some((data, stat)) => {
                let e = std::str::from_utf8(&data)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| ExternalStorageError::Corrupt {
                        path: format!("{}{path}", self.addr),
                        reason: "the epoch znode does not hold a decimal number".into(),
                    })?;
                Ok((e, stat.version))
            }
        }
    }

    /// Our lead, if `epoch` is it; otherwise `NotLeader` with the current epoch.
    fn fence(&self, epoch: u64) -> Result<Lead, ExternalStorageError> {
        match *self.lead.lock() {
            Some(l) if l.epoch == epoch => Ok(l),
            _ => Err(ExternalStorageError::NotLeader {
                ours: epoch,
                current: self.read_epoch()?.0,
            }),
        }
    }

    /// Run a fenced multi: `check(epoch)` then `ops`. A failed check is `NotLeader`.
    fn fenced(&self, lead: Lead, ops: &[Op<'_>]) -> Result<Vec<OpResult>, FenceFail> {
        let epoch_path = self.addr.path(EPOCH);
        let mut all = vec![Op::Check {
            path: &epoch_path,
            version: lead.epoch_version,
        }];
        all.extend_from_slice(ops);
        match self.zk.multi(&all) {
            Ok(r) => Ok(r),
            Err(ZkError::Multi { index: 0, .. }) => {
                let current = match self.read_epoch() {
                    Ok((e, _)) => e,
                    Err(e) => return Err(FenceFail::Storage(e)),
                };
                Err(FenceFail::Storage(ExternalStorageError::NotLeader {
                    ours: lead.epoch,
                    current,
                }))
            }
            Err(ZkError::Multi { code, .. }) => Err(FenceFail::Op(code)),
            Err(e) => Err(FenceFail::Storage(self.err(e))),
        }
    }
}

/// Why a fenced multi failed.
enum FenceFail {
    /// One of the caller's ops failed with this ZooKeeper code (the epoch check passed).
    Op(i32),
    /// Deposed (`NotLeader`) or ZooKeeper trouble.
    Storage(ExternalStorageError),
}

/// The sequence number of an election znode name (`c_0000000042` → 42; unparsable last).
fn seq(name: &str) -> u64 {
    name.rsplit('_')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(u64::MAX)
}

impl ExternalStorage for ZkStorage {
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError> {
        self.wait_until_first()?;
        let _g = self.write.lock();
        let path = self.addr.path(EPOCH);
        loop {
            let (current, version) = self.read_epoch()?;
            let next = current
                .checked_add(1)
                .ok_or_else(|| ExternalStorageError::Corrupt {
                    path: format!("{}{path}", self.addr),
                    reason: "the epoch is at its maximum (u64::MAX) and cannot advance".into(),
                })?;
            let text = next.to_string();
            let r = if version < 0 {
                self.zk
                    .create(&path, text.as_bytes(), CreateMode::Persistent)
                    .map(|_| 0)
            } else {
                self.zk
                    .set_data(&path, text.as_bytes(), version)
                    .map(|s| s.version)
            };
            match r {
                Ok(v) => {
                    *self.lead.lock() = Some(Lead {
                        epoch: next,
                        epoch_version: v,
                    });
                    tracing::info!(zk = %self.addr, epoch = next, "this coordinator leads");
                    return Ok(next);
                }
                // Someone else moved the epoch between our read and write: read again.
                Err(e) if matches!(e.code(), Some(err::BAD_VERSION | err::NODE_EXISTS)) => {}
                // The connection broke and the session is being resumed: our write may or may
                // not have been applied (then the epoch skips a number, which is harmless).
                Err(ZkError::ConnectionLoss(_)) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        check_name(name)?;
        let path = self.blob(name);
        match self.zk.get_data(&path, false).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some((data, stat)) => Ok(Some(Versioned {
                data,
                version: blob_version(stat.version, &path)?,
            })),
        }
    }

    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError> {
        check_name(name)?;
        let _g = self.write.lock();
        let lead = self.fence(epoch)?;
        let path = self.blob(name);
        // The znode version to write at (−1: create).
        let zk_version = match expected {
            Some(0) => -1,
            Some(v) => i32::try_from(v - 1).map_err(|_| ExternalStorageError::VersionMismatch {
                name: name.into(),
                expected: v,
                found: 0,
            })?,
            None => match self.zk.exists(&path, false).map_err(|e| self.err(e))? {
                Some(s) => s.version,
                None => -1,
            },
        };
        let op = if zk_version < 0 {
            Op::Create {
                path: &path,
                data,
                mode: CreateMode::Persistent,
            }
        } else {
            Op::SetData {
                path: &path,
                data,
                version: zk_version,
            }
        };
        match self.fenced(lead, &[op]) {
            Ok(results) => match results.get(1) {
                Some(OpResult::Set(stat)) => blob_version(stat.version, &path),
                Some(OpResult::Created(_)) => Ok(1),
                other => Err(self.err(ZkError::Protocol(format!(
                    "multi on {path} returned {other:?} for the write"
                )))),
            },
            Err(FenceFail::Storage(e)) => Err(e),
            Err(FenceFail::Op(err::BAD_VERSION | err::NODE_EXISTS | err::NO_NODE)) => {
                let found = self.get(name)?.map_or(0, |v| v.version);
                Err(ExternalStorageError::VersionMismatch {
                    name: name.into(),
                    expected: expected.unwrap_or(found),
                    found,
                })
            }
            Err(FenceFail::Op(code)) => Err(self.err(ZkError::Api {
                op: "setData",
                path,
                code,
            })),
        }
    }

    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError> {
        check_name(name)?;
        let _g = self.write.lock();
        let lead = self.fence(epoch)?;
        let path = self.blob(name);
        let exists = self
            .zk
            .exists(&path, false)
            .map_err(|e| self.err(e))?
            .is_some();
        let ops: &[Op<'_>] = if exists {
            &[Op::Delete {
                path: &path,
                version: -1,
            }]
        } else {
            &[]
        };
        match self.fenced(lead, ops) {
            Ok(_) | Err(FenceFail::Op(err::NO_NODE)) => Ok(()),
            Err(FenceFail::Storage(e)) => Err(e),
            Err(FenceFail::Op(code)) => Err(self.err(ZkError::Api {
                op: "delete",
                path,
                code,
            })),
        }
    }

    fn describe(&self) -> String {
        self.addr.to_string()
    }

    fn advertise(&self, epoch: u64, locator: &str) -> Result<(), ExternalStorageError> {
        let _g = self.write.lock();
        let lead = self.fence(epoch)?;
        let path = self.addr.path(LEADER_ZNODE);
        let create = Op::Create {
            path: &path,
            data: locator.as_bytes(),
            mode: CreateMode::Ephemeral,
        };
        let old = self.zk.exists(&path, false).map_err(|e| self.err(e))?;
        let r = match old {
            // A leftover of an earlier leader whose session has not expired yet, or our own.
            Some(_) => self.fenced(
                lead,
                &[
                    Op::Delete {
                        path: &path,
                        version: -1,
                    },
                    create,
                ],
            ),
            None => self.fenced(lead, &[create]),
        };
        match r {
            Ok(_) => {
                tracing::info!(zk = %self.addr, znode = %path, %locator, epoch, "leader locator published");
                Ok(())
            }
            Err(FenceFail::Storage(e)) => Err(e),
            Err(FenceFail::Op(code)) => Err(self.err(ZkError::Api {
                op: "create",
                path,
                code,
            })),
        }
    }

    fn release(&self) {
        // Ends the session: our election znode (and the leader znode, if ours) go at once, so
        // the next standby does not wait for the session timeout.
        self.zk.close();
    }

    fn check_leadership(&self) -> Result<(), ExternalStorageError> {
        self.zk.alive().map_err(|e| self.err(e))?;
        if let Some(p) = self.candidate.lock().as_ref() {
            if self.zk.exists(p, false).map_err(|e| self.err(e))?.is_none() {
                return Err(ExternalStorageError::ZooKeeper {
                    address: self.addr.to_string(),
                    reason: format!("our election znode {p} was deleted"),
                });
            }
        }
        Ok(())
    }
}

/// Blob version from a znode data version.
fn blob_version(zk_version: i32, path: &str) -> Result<u64, ExternalStorageError> {
    u64::try_from(zk_version)
        .map(|v| v + 1)
        .map_err(|_| ExternalStorageError::Corrupt {
            path: path.to_string(),
            reason: format!("znode version {zk_version} is negative"),
        })
}
