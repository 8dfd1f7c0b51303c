//! The masters a backup fences, and their file `DIR/fences`.
//!
//! A master is fenced when the coordinator lists its replicas for recovery
//! (`BackupGetReplicas`) or tells a (re-)enlisting backup that it awaits recovery
//! (`GetFencedMasters`); the fence is dropped when its recovery is complete
//! (`BackupRecoveryDone`, or a later `GetFencedMasters` that no longer lists it). By then the
//! coordinator has waited out the master's lease, so a zombie admits no new write.
//!
//! File: text, replaced atomically (write `fences.tmp`, `fsync`, rename over `fences`, `fsync`
//! the directory): a first line `faascache-fences 1`, one server id (decimal `u64`) per line,
//! a last line `end N` with the number of ids — a file without it is refused at start-up
//! rather than read as a shorter fence set. At most [`MAX_FENCES`] ids.
//!
//! Each fence carries the value of a counter when it was set, so that the coordinator's list
//! (which may have been computed before a recovery fenced another master here) replaces only
//! the fences older than the question ([`Fences::adopt`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use faascache_protocol::msg::backup::MAX_FENCED_MASTERS;
use faascache_protocol::ServerId;

/// Most fences a backup keeps (as many as a `GetFencedMasters` reply holds).
pub const MAX_FENCES: usize = MAX_FENCED_MASTERS;

const MAGIC: &str = "faascache-fences 1";
const FILE: &str = "fences";
const TMP: &str = "fences.tmp";

/// The fence set (kept under the store's map lock).
#[derive(Debug, Default)]
pub(crate) struct Fences {
    set: HashMap<ServerId, u64>,
    clock: u64,
}

impl Fences {
    /// Whether `m` is fenced.
    pub(crate) fn contains(&self, m: &ServerId) -> bool {
        self.set.contains_key(m)
    }

    /// Fence `m`; `true` if it was not fenced yet.
    pub(crate) fn insert(&mut self, m: ServerId) -> bool {
        if self.set.contains_key(&m) {
            return false;
        }
        if self.set.len() >= MAX_FENCES {
            // Never reached by a real cluster (ids are fenced only while their recovery is
            // pending); keep the newest rather than grow without bound.
            if let Some(oldest) = self.set.iter().min_by_key(|e| *e.1).map(|e| *e.0) {
                tracing::error!(dropped = %oldest, "more than {MAX_FENCES} fenced masters: dropping the oldest fence");
                self.set.remove(&oldest);
            }
        }
        self.clock += 1;
        self.set.insert(m, self.clock);
        true
    }

    /// Drop the fence of `m`; `true` if there was one.
    pub(crate) fn remove(&mut self, m: &ServerId) -> bool {
        self.set.remove(m).is_some()
    }

    /// A mark to pass to [`Fences::adopt`] with the answer of a question asked after it.
    pub(crate) fn token(&self) -> u64 {
        self.clock
    }

    /// The coordinator's list of masters awaiting recovery, asked after `token` was taken:
    /// fence every listed master; drop fences set before `token` of masters not listed.
    /// Returns (newly fenced, dropped).
    pub(crate) fn adopt(
        &mut self,
        list: &[ServerId],
        token: u64,
    ) -> (Vec<ServerId>, Vec<ServerId>) {
        let dropped: Vec<ServerId> = self
            .set
            .iter()
            .filter(|(m, &at)| at <= token && !list.contains(m))
            .map(|(m, _)| *m)
            .collect();
        for m in &dropped {
            self.set.remove(m);
        }
        let added = list.iter().filter(|m| self.insert(**m)).copied().collect();
        (added, dropped)
    }

    /// The fenced masters, sorted.
    pub(crate) fn list(&self) -> Vec<ServerId> {
        let mut v: Vec<ServerId> = self.set.keys().copied().collect();
        v.sort();
        v
    }
}

/// Why `DIR/fences` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FenceFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a complete fence file.
    #[error("{path} is not a complete fence file ({reason}): it lists the crashed masters this backup refuses; restore it, or delete it only if every crashed master's recovery is complete (the backup then learns the pending ones from the coordinator when it enlists)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The fences saved in `dir` (none if there is no file).
pub(crate) fn load(dir: &Path) -> Result<Vec<ServerId>, FenceFileError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FenceFileError::Io { path, source }),
    };
    parse(&text).map_err(|Corrupt(reason)| FenceFileError::Corrupt { path, reason })
}

/// What is wrong with a fence file's text.
struct Corrupt(String);

fn parse(text: &str) -> Result<Vec<ServerId>, Corrupt> {
    let bad = |s: String| Err(Corrupt(s));
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return bad(format!("the first line is not `{MAGIC}`"));
    }
    let mut ids = Vec::new();
    for line in lines {
        if let Some(n) = line.strip_prefix("end ") {
            let Ok(n) = n.parse::<usize>() else {
                return bad(format!("bad last line `{line}`"));
            };
            if n != ids.len() {
                return bad(format!("`{line}` but {} ids", ids.len()));
            }
            return Ok(ids);
        }
        if ids.len() >= MAX_FENCES {
            return bad(format!("more than {MAX_FENCES} ids"));
        }
        let Ok(id) = line.parse::<u64>() else {
            return bad(format!("bad line `{line}`"));
        };
        ids.push(ServerId(id));
    }
    bad("no `end` line (truncated)".into())
}

/// Replace `dir/fences` with `ids`, atomically and durably.
pub(crate) fn save(dir: &Path, ids: &[ServerId]) -> std::io::Result<()> {
    let mut text = String::with_capacity(32 + ids.len() * 21);
    text.push_str(MAGIC);
    text.push('\n');
    for id in ids {
        text.push_str(&id.0.to_string());
        text.push('\n');
    }
    text.push_str(&format!("end {}\n", ids.len()));
    let tmp = dir.join(TMP);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Whether `name` is one of the fence files (so a directory scan skips it).
pub(crate) fn is_fence_file(name: &str) -> bool {
    name == FILE || name == TMP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopt_keeps_fences_newer_than_the_question() {
        let (a, b, c) = (
            ServerId::new(1, 1),
            ServerId::new(2, 1),
            ServerId::new(3, 1),
        );
        let mut f = Fences::default();
        f.insert(a);
        let token = f.token();
        // Fenced by a recovery after the question was asked: kept though not listed.
        f.insert(b);
        let (added, dropped) = f.adopt(&[c], token);
        assert_eq!(added, vec![c]);
        assert_eq!(dropped, vec![a]);
        assert_eq!(f.list(), vec![b, c]);
    }

    #[test]
    fn file_round_trip_and_refusals() {
        let ids = vec![ServerId::new(1, 2), ServerId::new(7, 1)];
        let tmp = tempfile::Builder::new()
            .prefix("faascache-fences-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        assert!(load(dir).unwrap().is_empty(), "no file: no fences");
        save(dir, &ids).unwrap();
        assert_eq!(load(dir).unwrap(), ids);
        assert!(!dir.join(TMP).exists());
        // Truncated: refused with what to do.
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        std::fs::write(dir.join(FILE), &text[..text.len() - 6]).unwrap();
        let e = load(dir).unwrap_err().to_string();
        assert!(
            e.contains("truncated") && e.contains("delete it only if"),
            "{e}"
        );
        std::fs::write(dir.join(FILE), "faascache-fences 1\n5\nend 2\n").unwrap();
        assert!(load(dir).is_err());
        std::fs::write(dir.join(FILE), "garbage\n").unwrap();
        assert!(load(dir).is_err());
    }
}
