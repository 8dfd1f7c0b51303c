//! External storage: where the coordinator keeps its state so that a restarted (or standby)
//! coordinator recovers it. Named blobs, each written atomically, each with a version, and every
//! write checked against the writer's *leader epoch* so a deposed coordinator cannot overwrite
//! its successor's state (the ZooKeeper backend of the durability issue implements the same
//! trait with znode versions and an ephemeral leader node).
//!
//! Backends: [`FileStorage`] (`file:DIR`, the default), `ZkStorage` in the sibling module
//! `zk_storage` (`zk:HOST:PORT[,...][/CHROOT]`: standby coordinators, leader election, the
//! leader's locator published for servers and clients) and [`MemStorage`] (tests). This module
//! is a leaf: the choice of backend from a `--storage` argument is `coordinator::open_storage`,
//! above both backends.
//!
//! File format of one blob `DIR/NAME` (little-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `FCEB` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | reserved (0) |
//! | 8 | 8 | blob version (1, 2, ...) |
//! | 16 | 8 | epoch of the writer |
//! | 24 | 4 | data length |
//! | 28 | 4 | CRC32C of the data |
//! | 32 | … | data |
//!
//! A write goes to `DIR/.NAME.tmp`, is fsynced, renamed over `DIR/NAME`, and the directory is
//! fsynced: a crash leaves the old or the new blob, never a mix. The leader epoch is the blob
//! `leader-epoch` (8 bytes); `DIR/lock` holds the pid of the running coordinator (taken over if that process is gone).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// A blob and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes.
    pub data: Vec<u8>,
    /// Version (1 for the first write, +1 each write).
    pub version: u64,
}

/// Why an external-storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExternalStorageError {
    /// An I/O error, with the path.
    #[error("external storage: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blob's bytes are damaged or not ours.
    #[error("external storage: {path} is corrupt: {reason}; restore it from a backup or remove it (the coordinator then starts empty)")]
    Corrupt {
        /// Path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Another coordinator became leader after us.
    #[error("external storage: this coordinator (epoch {ours}) is no longer the leader (epoch {current}); exiting is the safe choice")]
    NotLeader {
        /// Our epoch.
        ours: u64,
        /// Current epoch.
        current: u64,
    },
    /// The blob's version is not the one expected.
    #[error("external storage: {name} is at version {found}, expected {expected}")]
    VersionMismatch {
        /// Blob.
        name: String,
        /// Expected version (0 = must not exist).
        expected: u64,
        /// Version found (0 = absent).
        found: u64,
    },
    /// Another process holds the storage.
    #[error("external storage {path} is in use by another coordinator (its lock file is held); stop it or choose another --storage")]
    Locked {
        /// Path.
        path: String,
    },
    /// A blob name with characters outside `[A-Za-z0-9._-]`.
    #[error("bad blob name {0:?}: use letters, digits, '.', '_' and '-'")]
    BadName(String),
    /// The `--storage` argument is not understood.
    #[error("bad storage locator {0:?}: use file:DIR or zk:HOST:PORT[,HOST:PORT...][/CHROOT]")]
    BadLocator(String),
    /// A blob too large for the file format (its length field is 32 bits).
    #[error("external storage: blob {name} of {len} bytes exceeds the format's limit of 4 GiB - 1; the coordinator state grew beyond what this backend stores")]
    TooLarge {
        /// Blob.
        name: String,
        /// Its length.
        len: usize,
    },
    /// ZooKeeper failed (unreachable ensemble, lost session, unexpected answer).
    #[error("external storage {address}: {reason}")]
    ZooKeeper {
        /// The `zk:` address.
        address: String,
        /// What failed.
        reason: String,
    },
}

/// Named blobs with per-blob versions and a leader epoch.
pub trait ExternalStorage: Send + Sync + std::fmt::Debug {
    /// Become the leader: returns the new epoch (greater than every earlier one). Later writes
    /// by an earlier epoch fail with [`ExternalStorageError::NotLeader`].
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError>;
    /// Read a blob (`None` if absent).
    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError>;
    /// Write a blob atomically if `epoch` is current and (when `expected` is `Some(v)`) the blob
    /// is at version `v` (0 = absent). Returns the new version.
    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError>;
    /// Remove a blob (no error if absent) if `epoch` is current.
    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError>;
    /// For logs: `file:DIR`, `memory`.
    fn describe(&self) -> String;
    /// Publish the leader's service locator where servers and clients look for it (the `zk:`
    /// backend's `leader` znode), if `epoch` is current. Backends without discovery ignore it.
    fn advertise(&self, epoch: u64, locator: &str) -> Result<(), ExternalStorageError> {
        let _ = (epoch, locator);
        Ok(())
    }
    /// `Ok` while this process may still lead as far as the backend can tell; an error once it
    /// has lost leadership (e.g. its ZooKeeper session is gone) and must stop coordinating.
    fn check_leadership(&self) -> Result<(), ExternalStorageError> {
        Ok(())
    }
    /// Give up leadership or candidacy now (process shutdown), so that another coordinator
    /// need not wait for this one to time out. Later calls fail. Default: nothing to do.
    fn release(&self) {}
}

/// A shared storage (the daemon keeps a handle to release it at shutdown while the coordinator
/// owns another).
impl<T: ExternalStorage + ?Sized> ExternalStorage for std::sync::Arc<T> {
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError> {
        (**self).acquire_leadership()
    }
    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        (**self).get(name)
    }
    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError> {
        (**self).set(epoch, name, data, expected)
    }
    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError> {
        (**self).remove(epoch, name)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn advertise(&self, epoch: u64, locator: &str) -> Result<(), ExternalStorageError> {
        (**self).advertise(epoch, locator)
    }
    fn check_leadership(&self) -> Result<(), ExternalStorageError> {
        (**self).check_leadership()
    }
    fn release(&self) {
        (**self).release()
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), ExternalStorageError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ExternalStorageError::BadName(name.to_string()))
    }
}

const MAGIC: &[u8; 4] = b"FCEB";
const FORMAT_VERSION: u16 = 1;
const HEADER: usize = 32;
const EPOCH_BLOB: &str = "leader-epoch";

/// Encode a blob file (`name` for the error).
fn encode_blob(
    name: &str,
    version: u64,
    epoch: u64,
    data: &[u8],
) -> Result<Vec<u8>, ExternalStorageError> {
    let len = u32::try_from(data.len()).map_err(|_| ExternalStorageError::TooLarge {
        name: name.to_string(),
        len: data.len(),
    })?;
    let mut v = Vec::with_capacity(HEADER + data.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    v.extend_from_slice(data);
    Ok(v)
}

/// What is wrong with a blob file's bytes (the reason of [`ExternalStorageError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Shorter than the header.
    #[error("truncated: {0} bytes, the header alone is {HEADER}")]
    Truncated(usize),
    /// Not a blob of ours.
    #[error("bad magic (not a FaaSCache external-storage blob)")]
    BadMagic,
    /// Written by a newer build.
    #[error("format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    Format(u16),
    /// Reserved bytes set.
    #[error("reserved bytes are not zero")]
    Reserved,
    /// The data length disagrees with the file length.
    #[error("truncated or padded: header says {header} data bytes, file has {file}")]
    Length {
        /// Length in the header.
        header: usize,
        /// Data bytes in the file.
        file: usize,
    },
    /// The checksum does not match.
    #[error("checksum mismatch: stored {stored:#010x}, data gives {computed:#010x}")]
    Checksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the data.
        computed: u32,
    },
}

/// Decode a blob file; the first broken rule is the error.
fn decode_blob(bytes: &[u8]) -> Result<Versioned, BlobError> {
    if bytes.len() < HEADER {
        return Err(BlobError::Truncated(bytes.len()));
    }
    let u16at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    if &bytes[0..4] != MAGIC {
        return Err(BlobError::BadMagic);
    }
    if u16at(4) != FORMAT_VERSION {
        return Err(BlobError::Format(u16at(4)));
    }
    if u16at(6) != 0 {
        return Err(BlobError::Reserved);
    }
    let len = u32at(24) as usize;
    if bytes.len() - HEADER != len {
        return Err(BlobError::Length {
            header: len,
            file: bytes.len() - HEADER,
        });
    }
    let data = &bytes[HEADER..];
    let crc = crc32c::crc32c(data);
    if crc != u32at(28) {
        return Err(BlobError::Checksum {
            stored: u32at(28),
            computed: crc,
        });
    }
    Ok(Versioned {
        data: data.to_vec(),
        version: u64at(8),
    })
}

/// Take `DIR/lock`: create it holding our pid, or take it over if the pid in it is not a running
/// process (a coordinator that crashed). Released (removed) on drop.
fn take_lock(path: &Path) -> Result<LockFile, ExternalStorageError> {
    let io = |op, source| ExternalStorageError::Io {
        op,
        path: path.display().to_string(),
        source,
    };
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(std::process::id().to_string().as_bytes())
                    .map_err(|e| io("write", e))?;
                f.sync_all().map_err(|e| io("fsync", e))?;
                return Ok(LockFile(path.to_path_buf()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                let pid: Option<u32> = holder.trim().parse().ok();
                let running = pid.is_some_and(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                        !s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                });
                if running {
                    let dir = path.parent().unwrap_or(path).display().to_string();
                    return Err(ExternalStorageError::Locked { path: dir });
                }
                // Stale: its holder is gone.
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(io("create", e)),
        }
    }
    Err(ExternalStorageError::Locked {
        path: path.display().to_string(),
    })
}

#[derive(Debug)]
struct LockFile(PathBuf);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `file:DIR` backend.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    _lock: LockFile,
    /// Serialises writers in this process.
    write: Mutex<()>,
}

impl FileStorage {
    /// Open (creating) `dir` and lock it for this process.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStorage, ExternalStorageError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |op, path: &Path| {
            let path = path.display().to_string();
            move |source| ExternalStorageError::Io { op, path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let lock_path = dir.join("lock");
        let lock = take_lock(&lock_path)?;
        Ok(FileStorage {
            dir,
            _lock: lock,
            write: Mutex::new(()),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read_blob(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        check_name(name)?;
        let path = self.path(name);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ExternalStorageError::Io {
                    op: "open",
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|source| ExternalStorageError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            })?;
        decode_blob(&bytes)
            .map(Some)
            .map_err(|reason| ExternalStorageError::Corrupt {
                path: path.display().to_string(),
                reason: reason.to_string(),
            })
    }

    fn write_blob(&self, name: &str, bytes: &[u8]) -> Result<(), ExternalStorageError> {
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |op, p: &Path| {
            let path = p.display().to_string();
            move |source| ExternalStorageError::Io { op, path, source }
        };
        {
            let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", &self.dir))?;
        Ok(())
    }

    fn current_epoch(&self) -> Result<u64, ExternalStorageError> {
        Ok(match self.read_blob(EPOCH_BLOB)? {
            Some(v) if v.data.len() == 8 => {
                u64::from_le_bytes(v.data[..8].try_into().expect("8 bytes"))
            }
            Some(_) => {
                return Err(ExternalStorageError::Corrupt {
                    path: self.path(EPOCH_BLOB).display().to_string(),
                    reason: "the epoch is not 8 bytes".into(),
                })
            }
            None => 0,
        })
    }

    /// A counter read from disk is at `u64::MAX`: only a damaged file gets there.
    fn exhausted(&self, name: &str, what: &str) -> ExternalStorageError {
        ExternalStorageError::Corrupt {
            path: self.path(name).display().to_string(),
            reason: format!("{what} is at its maximum (u64::MAX) and cannot advance"),
        }
    }

    fn check_epoch(&self, epoch: u64) -> Result<(), ExternalStorageError> {
        let current = self.current_epoch()?;
        if current != epoch {
            return Err(ExternalStorageError::NotLeader {
                ours: epoch,
                current,
            });
        }
        Ok(())
    }
}

impl ExternalStorage for FileStorage {
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError> {
        let _g = self.write.lock();
        let old = self.read_blob(EPOCH_BLOB)?;
        let epoch = self
            .current_epoch()?
            .checked_add(1)
            .ok_or_else(|| self.exhausted(EPOCH_BLOB, "the leader epoch"))?;
        let version = match old {
            None => 1,
            Some(v) => v
                .version
                .checked_add(1)
                .ok_or_else(|| self.exhausted(EPOCH_BLOB, "its version"))?,
        };
        self.write_blob(
            EPOCH_BLOB,
            &encode_blob(EPOCH_BLOB, version, epoch, &epoch.to_le_bytes())?,
        )?;
        Ok(epoch)
    }

    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        self.read_blob(name)
    }

    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError> {
        check_name(name)?;
        if name == EPOCH_BLOB {
            return Err(ExternalStorageError::BadName(name.into()));
        }
        let _g = self.write.lock();
        self.check_epoch(epoch)?;
        let found = self.read_blob(name)?.map_or(0, |v| v.version);
        if let Some(expected) = expected {
            if expected != found {
                return Err(ExternalStorageError::VersionMismatch {
                    name: name.into(),
                    expected,
                    found,
                });
            }
        }
        let version = found
            .checked_add(1)
            .ok_or_else(|| self.exhausted(name, "its version"))?;
        self.write_blob(name, &encode_blob(name, version, epoch, data)?)?;
        Ok(version)
    }

    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError> {
        check_name(name)?;
        let _g = self.write.lock();
        self.check_epoch(epoch)?;
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ExternalStorageError::Io {
                    op: "remove",
                    path: path.display().to_string(),
                    source,
                })
            }
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| ExternalStorageError::Io {
                op: "fsync directory",
                path: self.dir.display().to_string(),
                source,
            })
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

/// An in-memory backend (tests; state is lost with the process).
#[derive(Debug, Default)]
pub struct MemStorage {
    inner: Mutex<(u64, HashMap<String, Versioned>)>,
}

impl ExternalStorage for MemStorage {
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError> {
        let mut g = self.inner.lock();
        g.0 += 1;
        Ok(g.0)
    }
    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        check_name(name)?;
        Ok(self.inner.lock().1.get(name).cloned())
    }
    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError> {
        check_name(name)?;
        let mut g = self.inner.lock();
        if g.0 != epoch {
            return Err(ExternalStorageError::NotLeader {
                ours: epoch,
                current: g.0,
            });
        }
        let found = g.1.get(name).map_or(0, |v| v.version);
        if let Some(expected) = expected {
            if expected != found {
                return Err(ExternalStorageError::VersionMismatch {
                    name: name.into(),
                    expected,
                    found,
                });
            }
        }
        g.1.insert(
            name.to_string(),
            Versioned {
                data: data.to_vec(),
                version: found + 1,
            },
        );
        Ok(found + 1)
    }
    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError> {
        let mut g = self.inner.lock();
        if g.0 != epoch {
            return Err(ExternalStorageError::NotLeader {
                ours: epoch,
                current: g.0,
            });
        }
        g.1.remove(name);
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory (removed on drop) and a path inside it for a store to create.
    fn tempdir(tag: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::Builder::new()
            .prefix(&format!("faascache-ext-{tag}-"))
            .tempdir()
            .unwrap();
        let store = t.path().join("store");
        (t, store)
    }

    #[test]
    fn corrupt_and_truncated_blobs_are_clear_errors() {
        let (_tmp, dir) = tempdir("corrupt");
        let s = FileStorage::open(&dir).unwrap();
        let e = s.acquire_leadership().unwrap();
        s.set(e, "state", b"hello world", None).unwrap();
        let path = dir.join("state");
        let good = std::fs::read(&path).unwrap();
        // Truncated.
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let err = s.get("state").unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, &good[..10]).unwrap();
        assert!(s
            .get("state")
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        // Flipped data byte.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(s.get("state").unwrap_err().to_string().contains("checksum"));
        // Not ours.
        std::fs::write(&path, b"garbage garbage garbage garbage garbage").unwrap();
        assert!(s.get("state").unwrap_err().to_string().contains("magic"));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn storage_locators() {
        assert!(matches!(
            crate::coordinator::open_storage("zk:"),
            Err(ExternalStorageError::BadLocator(_))
        ));
        assert!(matches!(
            crate::coordinator::open_storage("file:"),
            Err(ExternalStorageError::BadLocator(_))
        ));
        let m = MemStorage::default();
        let e = m.acquire_leadership().unwrap();
        assert_eq!(m.set(e, "a", b"1", Some(0)).unwrap(), 1);
        assert!(m.set(e + 1, "a", b"1", None).is_err());
    }
}
