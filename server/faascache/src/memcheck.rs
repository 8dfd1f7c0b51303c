//! Start-up check of `faascache server --memory` against the memory this process may use: the
//! machine's (`MemTotal` of `/proc/meminfo`) and its memory cgroup's limit (v1
//! `memory.limit_in_bytes`, v2 `memory.max`), whichever is smaller. A server asked for more than
//! fits would reserve it (the arena is mapped without reservation), touch it as it fills and be
//! ended by the OOM killer long after it started; refusing at start-up says why at once.
//!
//! What a server needs beyond its log memory: the hash table (8 B per 128 B of log memory) and a
//! baseline for threads, buffers and the backup's first replicas ([`BASELINE`]).

use std::fmt;
use std::path::{Path, PathBuf};

/// Memory a server uses besides its log and hash table (threads, RPC buffers, the first replicas
/// of the backup service), a round upper estimate of what `status` shows on an idle server.
pub const BASELINE: u64 = 64 << 20;

/// Where a memory limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// `MemTotal` in `/proc/meminfo`.
    Machine,
    /// A memory cgroup's limit file.
    Cgroup(PathBuf),
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitSource::Machine => f.write_str("the machine has (MemTotal in /proc/meminfo)"),
            LimitSource::Cgroup(p) => write!(f, "this process's cgroup allows ({})", p.display()),
        }
    }
}

/// `--memory` does not fit in the memory available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--memory {} does not fit: a server with it needs about {} (log memory, hash table and {} for \
     threads and buffers), but {} {}; lower --memory to at most {}, or raise the limit",
    gib(*.requested), gib(*.needed), gib(BASELINE), .limited_by, gib(*.limit), gib(*.max_memory)
)]
pub struct TooLarge {
    /// `--memory`, bytes.
    pub requested: u64,
    /// What the server would need, bytes.
    pub needed: u64,
    /// The smallest limit found, bytes.
    pub limit: u64,
    /// Where it comes from.
    pub limited_by: LimitSource,
    /// The largest `--memory` that fits under `limit`.
    pub max_memory: u64,
}

/// `b` bytes in GiB (one decimal) or, below 1 GiB, in MiB.
pub fn gib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// Bytes a server with `memory` bytes of log memory needs in all (saturating).
pub fn needed(memory: u64) -> u64 {
    memory.saturating_add(memory / 16).saturating_add(BASELINE)
}

/// Checks `memory` against the smallest of `limits`.
pub fn check(memory: u64, limits: &[(u64, LimitSource)]) -> Result<(), TooLarge> {
    let Some((limit, source)) = limits.iter().min_by_key(|l| l.0) else {
        return Ok(());
    };
    let need = needed(memory);
    if need <= *limit {
        return Ok(());
    }
    // needed(m) = m * 17/16 + BASELINE  ⇒  m = (limit - BASELINE) * 16/17.
    let max_memory = limit.saturating_sub(BASELINE) / 17 * 16;
    Err(TooLarge {
        requested: memory,
        needed: need,
        limit: *limit,
        limited_by: source.clone(),
        max_memory,
    })
}

/// The `--max-memory` a server starts with: the one asked for, checked like `--memory`
/// against the limits and against `memory`; not asked, `memory` (a server grows only when
/// its operator reserved room for it: the reservation's bookkeeping costs 24 bytes of
/// memory per 64 KiB of it).
pub fn max_memory(
    memory: usize,
    asked: Option<usize>,
    limits: &[(u64, LimitSource)],
) -> anyhow::Result<usize> {
    let Some(m) = asked else {
        return Ok(memory);
    };
    if m < memory {
        anyhow::bail!(
            "--max-memory {} is below --memory {}: give at least --memory (or leave it out)",
            gib(m as u64),
            gib(memory as u64)
        );
    }
    match check(m as u64, limits) {
        Ok(()) => Ok(m),
        Err(e) => anyhow::bail!(
            "--max-memory {} does not fit: a server grown to it would need about {}, but {} {}; \
             lower --max-memory to at most {}",
            gib(m as u64),
            gib(e.needed),
            e.limited_by,
            gib(e.limit),
            gib(e.max_memory)
        ),
    }
}

/// `MemTotal` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// A cgroup limit file's value: bytes, or `None` for "max" (v2) and text that is no number.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse().ok()
}

/// The limit files of this process's memory cgroups, from `/proc/self/cgroup` and
/// `/proc/self/mountinfo`: the v1 `memory` hierarchy's `memory.limit_in_bytes` and the v2
/// hierarchy's `memory.max`, where mounted.
pub fn limit_files(cgroup: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            if let Some(m) = mount_point(mountinfo, |fs, opts| {
                fs == "cgroup" && opts.split(',').any(|o| o == "memory")
            }) {
                files.push(m.join(rel).join("memory.limit_in_bytes"));
            }
        } else if controllers.is_empty() {
            if let Some(m) = mount_point(mountinfo, |fs, _| fs == "cgroup2") {
                files.push(m.join(rel).join("memory.max"));
            }
        }
    }
    files
}

/// The mount point of the first mount whose file system type and super options match.
fn mount_point(mountinfo: &str, want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let (fs, _src, opts) = (post.next()?, post.next()?, post.next()?);
        if !want(fs, opts) {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Every limit that applies to this process, as far as it can be read (none on systems without
/// `/proc`: then nothing is refused).
pub fn limits() -> Vec<(u64, LimitSource)> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut out = Vec::new();
    if let Some(total) = read(Path::new("/proc/meminfo")).and_then(|t| parse_meminfo(&t)) {
        out.push((total, LimitSource::Machine));
    }
    let cgroup = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    let mountinfo = read(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    for f in limit_files(&cgroup, &mountinfo) {
        if let Some(l) = read(&f).and_then(|t| parse_limit(&t)) {
            out.push((l, LimitSource::Cgroup(f)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn fits_or_refuses_with_the_numbers() {
        let machine = [(24 * GIB, LimitSource::Machine)];
        assert_eq!(check(GIB, &machine), Ok(()));
        let e = check(1 << 40, &machine).unwrap_err();
        assert_eq!(e.requested, 1 << 40);
        assert_eq!(e.limit, 24 * GIB);
        assert!(e.max_memory < 24 * GIB && needed(e.max_memory) <= 24 * GIB);
        assert!(needed(e.max_memory + (1 << 20)) > 24 * GIB - (1 << 20));
        let msg = e.to_string();
        assert!(msg.contains("--memory 1024.0 GiB does not fit"), "{msg}");
        assert!(msg.contains("MemTotal"), "{msg}");
        assert!(msg.contains("lower --memory to at most 22."), "{msg}");
        // --max-memory: checked the same way; by default --memory.
        let lim = [(24 * GIB, LimitSource::Machine)];
        assert_eq!(max_memory(1 << 30, None, &lim).unwrap(), 1 << 30);
        assert_eq!(max_memory(1 << 30, Some(2 << 30), &lim).unwrap(), 2 << 30);
        let e = max_memory(1 << 30, Some(1 << 20), &lim)
            .unwrap_err()
            .to_string();
        assert!(e.contains("below --memory"), "{e}");
        let e = max_memory(1 << 30, Some(1 << 40), &lim)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-memory 1024.0 GiB does not fit"), "{e}");
        // The smallest limit wins and is named.
        let both = [
            (24 * GIB, LimitSource::Machine),
            (2 * GIB, LimitSource::Cgroup("/cg/memory.max".into())),
        ];
        let e = check(4 * GIB, &both).unwrap_err();
        assert_eq!(e.limit, 2 * GIB);
        assert!(e.to_string().contains("/cg/memory.max"), "{e}");
        // No limit known: nothing refused; absurd sizes do not overflow.
        assert_eq!(check(u64::MAX, &[]), Ok(()));
        assert_eq!(needed(u64::MAX), u64::MAX);
    }

    #[test]
    fn parses_proc_and_cgroup_files() {
        assert_eq!(
            parse_meminfo("MemTotal:       24683792 kB\nMemFree: 1 kB\n"),
            Some(24683792 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: x kB\n"), None);
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("1073741824\n"), Some(GIB));
        assert_eq!(parse_limit("garbage"), None);
        let cgroup = "4:memory:/pa/x\n1:cpu:/\n0::/user.slice\n";
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            limit_files(cgroup, mountinfo),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/pa/x/memory.limit_in_bytes"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice/memory.max"),
            ]
        );
        assert!(limit_files("garbage", "garbage").is_empty());
    }
}
