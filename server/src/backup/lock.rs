//! The backup directory's lock file (`DIR/lock`, holding the owner's pid): one process per
//! directory; a lock left by a process that is gone is taken over.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::BackupError;

/// `DIR/lock`, holding our pid; removed on drop.
#[derive(Debug)]
pub(crate) struct LockFile(PathBuf);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state field follows the command name in parentheses; `Z` is a zombie.
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

pub(crate) fn take_lock(dir: &Path) -> Result<LockFile, BackupError> {
    let path = dir.join("lock");
    let io = |op, source| BackupError::Io {
        op,
        path: path.display().to_string(),
        source,
    };
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(std::process::id().to_string().as_bytes())
                    .map_err(|e| io("write", e))?;
                f.sync_all().map_err(|e| io("fsync", e))?;
                return Ok(LockFile(path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                if let Ok(pid) = holder.trim().parse::<u32>() {
                    if process_running(pid) {
                        return Err(BackupError::Locked {
                            path: dir.display().to_string(),
                            pid,
                        });
                    }
                }
                // Stale: the process that held it is gone.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(io("create", e)),
        }
    }
    Err(BackupError::Locked {
        path: dir.display().to_string(),
        pid: 0,
    })
}
