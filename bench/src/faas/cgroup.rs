//! Memory cgroups for sandboxes: one cgroup per sandbox under a harness-owned parent,
//! `memory.limit_in_bytes` (v1) or `memory.max` (v2) = the function's booked memory, OOM kills
//! read back from `memory.oom_control` (v1) or `memory.events` (v2).
//!
//! Paths: v1 `<root>/memory/faascache-bench/run-<pid>/<name>`, v2
//! `<root>/faascache-bench/run-<pid>/<name>` (the memory controller enabled in the parents'
//! `cgroup.subtree_control`): a directory per run, so two runs on one machine never touch each
//! other's sandboxes; a run's start removes the directories of runs whose process is gone. Without a writable
//! memory controller sandboxes run without a limit and the report says so ([`Cgroups::note`]).
//! Names are checked ([`valid_name`]) so a function name cannot walk out of the parent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The harness's parent cgroup's name.
pub const PARENT: &str = "faascache-bench";

/// Which memory controller the sandboxes are limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    V1,
    V2,
    /// No memory controller the harness can write to: no limits, no OOM detection.
    None,
}

/// The parent under which sandboxes' cgroups are made.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub kind: Kind,
    /// This run's directory (`.../faascache-bench/run-<pid>`); empty for [`Kind::None`].
    pub parent: PathBuf,
    /// The harness's directory above every run's (`.../faascache-bench`).
    top: PathBuf,
    /// Why there is no controller (for the report), or which one is used.
    pub note: String,
}

/// One sandbox's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    kind: Kind,
    path: PathBuf,
}

/// A cgroup name the harness makes: 1–64 of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The parent directory for `kind` under a cgroup mount root (normally `/sys/fs/cgroup`).
pub fn parent_path(root: &Path, kind: Kind) -> Option<PathBuf> {
    match kind {
        Kind::V1 => Some(root.join("memory").join(PARENT)),
        Kind::V2 => Some(root.join(PARENT)),
        Kind::None => None,
    }
}

/// The kills counted in a v1 `memory.oom_control` or a v2 `memory.events` (`oom_kill N`).
pub fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

impl Cgroups {
    /// Finds a memory controller under `root` and makes the parent: v1 first (this machine's),
    /// then v2 (`cgroup.controllers` naming `memory`), else [`Kind::None`] with the reason.
    pub fn detect(root: &Path) -> Cgroups {
        let v1 = root.join("memory");
        let mut reasons = Vec::new();
        if v1.join("memory.limit_in_bytes").exists() {
            let top = v1.join(PARENT);
            let parent = run_dir(&top);
            match std::fs::create_dir_all(&parent) {
                Ok(()) => {
                    return Cgroups {
                        kind: Kind::V1,
                        note: format!("cgroup v1 memory controller ({})", parent.display()),
                        parent,
                        top,
                    }
                }
                Err(e) => reasons.push(format!("cannot create {}: {e}", parent.display())),
            }
        }
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let top = root.join(PARENT);
            let parent = run_dir(&top);
            let made = std::fs::create_dir_all(&parent)
                .and_then(|()| enable_memory(&root.join("cgroup.subtree_control")))
                .and_then(|()| enable_memory(&top.join("cgroup.subtree_control")))
                .and_then(|()| enable_memory(&parent.join("cgroup.subtree_control")));
            match made {
                Ok(()) => {
                    return Cgroups {
                        kind: Kind::V2,
                        note: format!("cgroup v2 memory controller ({})", parent.display()),
                        parent,
                        top,
                    }
                }
                Err(e) => reasons.push(format!("cgroup v2 at {}: {e}", parent.display())),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("no memory controller under {}", root.display()));
        }
        Cgroups {
            kind: Kind::None,
            parent: PathBuf::new(),
            top: PathBuf::new(),
            note: format!(
                "sandboxes run WITHOUT memory limits: {}",
                reasons.join("; ")
            ),
        }
    }

    /// No cgroups at all (`--faas-no-cgroups`, tests).
    pub fn disabled(why: &str) -> Cgroups {
        Cgroups {
            kind: Kind::None,
            parent: PathBuf::new(),
            top: PathBuf::new(),
            note: format!("sandboxes run WITHOUT memory limits: {why}"),
        }
    }

    /// Makes the cgroup `name` with a memory limit of `limit` bytes (`None` for [`Kind::None`]).
    /// A leftover cgroup of that name (a crashed earlier run) is emptied and reused.
    pub fn create(&self, name: &str, limit: u64) -> Result<Option<Cgroup>> {
        if !valid_name(name) {
            bail!("bad cgroup name {name:?} (1-64 of A-Z a-z 0-9 _ . -)");
        }
        if self.kind == Kind::None {
            return Ok(None);
        }
        let path = self.parent.join(name);
        if path.exists() {
            let old = Cgroup {
                kind: self.kind,
                path: path.clone(),
            };
            old.remove();
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let cg = Cgroup {
            kind: self.kind,
            path,
        };
        let file = match self.kind {
            Kind::V1 => "memory.limit_in_bytes",
            _ => "memory.max",
        };
        cg.write(file, &limit.to_string())?;
        if self.kind == Kind::V1 {
            // Swap would hide an over-limit function; ignore where swap accounting is off.
            let _ = cg.write("memory.memsw.limit_in_bytes", &limit.to_string());
        }
        Ok(Some(cg))
    }

    /// Start of a run: removes what is left in this run's directory (a reused pid) and the
    /// directories of runs whose process is gone, with their sandboxes (and sandbox cgroups
    /// of the older layout, made straight under the harness's directory). Runs still alive
    /// are left alone.
    pub fn sweep(&self) {
        self.sweep_with(run_alive)
    }

    /// [`Cgroups::sweep`] with `alive` saying whether a run's process is still going.
    fn sweep_with(&self, alive: impl Fn(u32) -> bool) {
        if self.kind == Kind::None {
            return;
        }
        self.empty(&self.parent);
        let Ok(rd) = std::fs::read_dir(&self.top) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if !path.is_dir() || path == self.parent {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_prefix("run-").map(str::parse::<u32>) {
                Some(Ok(pid)) if alive(pid) => {}
                Some(_) => {
                    self.empty(&path);
                    self.cgroup(path).remove();
                }
                None => self.cgroup(path).remove(),
            }
        }
    }

    /// Removes every cgroup directly under `dir`.
    fn empty(&self, dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                self.cgroup(e.path()).remove();
            }
        }
    }

    fn cgroup(&self, path: PathBuf) -> Cgroup {
        Cgroup {
            kind: self.kind,
            path,
        }
    }
}

/// This run's directory under the harness's.
fn run_dir(top: &Path) -> PathBuf {
    top.join(format!("run-{}", std::process::id()))
}

/// Whether the run of process `pid` is still going: the process exists and is the harness
/// (`faascache-bench`; a reused pid of another program does not count).
fn run_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim_end().starts_with("faascache-ben"))
}

fn enable_memory(subtree_control: &Path) -> std::io::Result<()> {
    let now = std::fs::read_to_string(subtree_control).unwrap_or_default();
    if now.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    std::fs::write(subtree_control, "+memory")
}

impl Cgroup {
    fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.path.join(file);
        std::fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// OOM kills in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.kind {
            Kind::V1 => "memory.oom_control",
            _ => "memory.events",
        };
        std::fs::read_to_string(self.path.join(file)).map_or(0, |t| parse_oom_kills(&t))
    }

    /// Peak memory use, bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` where present).
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.kind {
            Kind::V1 => "memory.max_usage_in_bytes",
            _ => "memory.peak",
        };
        std::fs::read_to_string(self.path.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Restarts the peak from the current use (v1: `0` into `memory.max_usage_in_bytes`), so
    /// that [`Cgroup::peak_bytes`] after a run is that run's peak. False where the peak cannot
    /// be reset (v2's `memory.peak` is the cgroup's life-long peak here).
    pub fn reset_peak(&self) -> bool {
        self.kind == Kind::V1 && self.write("memory.max_usage_in_bytes", "0").is_ok()
    }

    /// Kills what is left in the cgroup and removes it (best effort, bounded to ~1 s).
    pub fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("faas: could not remove cgroup {}", self.path.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_parent() {
        assert!(valid_name("thumbnail-3"));
        assert!(valid_name("a.b_c"));
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn parent_paths_per_version() {
        let r = Path::new("/sys/fs/cgroup");
        assert_eq!(
            parent_path(r, Kind::V1).unwrap(),
            Path::new("/sys/fs/cgroup/memory/faascache-bench")
        );
        assert_eq!(
            parent_path(r, Kind::V2).unwrap(),
            Path::new("/sys/fs/cgroup/faascache-bench")
        );
        assert!(parent_path(r, Kind::None).is_none());
    }

    #[test]
    fn oom_kills_from_v1_and_v2_files() {
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n"),
            2
        );
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
        assert_eq!(parse_oom_kills("oom_kill x\n"), 0);
    }

    #[test]
    fn detect_on_a_fake_root_without_controllers() {
        let d = tempfile::tempdir().unwrap();
        let c = Cgroups::detect(d.path());
        assert_eq!(c.kind, Kind::None);
        assert!(c.note.contains("WITHOUT"), "{}", c.note);
        assert!(c.create("x", 1).unwrap().is_none());
        assert!(c.create("../x", 1).is_err());
    }

    /// A fake cgroup v1 root with a memory controller, and the harness's cgroups on it.
    fn fake_v1() -> (tempfile::TempDir, Cgroups) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        let c = Cgroups::detect(d.path());
        (d, c)
    }

    #[test]
    fn v1_layout_on_a_fake_root() {
        let (_d, c) = fake_v1();
        assert_eq!(c.kind, Kind::V1);
        let cg = c.create("f-1", 128 << 20).unwrap().unwrap();
        let lim = std::fs::read_to_string(cg.path().join("memory.limit_in_bytes")).unwrap();
        assert_eq!(lim, (128u64 << 20).to_string());
        std::fs::write(cg.path().join("memory.oom_control"), "oom_kill 1\n").unwrap();
        assert_eq!(cg.oom_kills(), 1);
    }

    #[test]
    fn sweep_removes_dead_runs_and_old_layout_but_not_live_runs() {
        let (d, c) = fake_v1();
        let top = d.path().join("memory").join(PARENT);
        assert_eq!(c.parent, top.join(format!("run-{}", std::process::id())));
        // A dead run with a sandbox, a sandbox of the old layout, a leftover of this run.
        let dead = top.join("run-4294967295");
        std::fs::create_dir_all(dead.join("thumbnail-1")).unwrap();
        std::fs::create_dir_all(top.join("blur-3")).unwrap();
        std::fs::create_dir_all(c.parent.join("convert-2")).unwrap();
        // A live run (pid 7, as `alive` says) with a sandbox: left alone.
        let live = top.join("run-7");
        std::fs::create_dir_all(live.join("infer-4")).unwrap();
        c.sweep_with(|pid| pid == 7);
        assert!(live.join("infer-4").exists());
        assert!(!dead.exists());
        assert!(!top.join("blur-3").exists());
        assert!(c.parent.exists() && !c.parent.join("convert-2").exists());
    }

    #[test]
    fn a_run_is_alive_only_while_its_harness_process_is() {
        assert!(!run_alive(4_294_967_295));
        // pid 1 exists but is not faascache-bench.
        assert!(!run_alive(1));
    }
}
