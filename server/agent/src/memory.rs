//! Reading real memory: the node's (`/proc/meminfo`, or a *node cgroup* whose limit is the
//! node's memory) and a sandbox's cgroup (v1 or v2), and a process's resident set.
//!
//! What "used" means here:
//! * node from `/proc/meminfo`: `MemTotal − MemAvailable` (the kernel's own estimate of what
//!   cannot be reclaimed without swapping; page cache it can drop is not "used");
//! * node from a cgroup: its usage (`memory.usage_in_bytes` v1, `memory.current` v2) minus its
//!   inactive file pages (`total_inactive_file` v1, `inactive_file` v2, from `memory.stat`),
//!   the cgroup analogue of `MemAvailable`; its total is its limit, capped at `MemTotal`;
//! * a sandbox's cgroup: its usage as the kernel charges it (page cache included: conservative,
//!   and one small file per sandbox per sample instead of two).
//!
//! Every reader returns an [`AgentError`] naming the file; none panics on odd content.

use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// The largest byte count the agent accepts anywhere (1 TiB): larger values from the API are
/// refused, and larger values read from the kernel (v1's "unlimited" is 2^63 − 4096) mean
/// "no limit".
pub const MAX_BYTES: u64 = 1 << 40;

/// The node's memory at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeSample {
    /// Memory of the node in bytes (MemTotal, or the node cgroup's limit).
    pub total: u64,
    /// Memory in use and not reclaimable (see the module comment).
    pub used: u64,
}

fn read(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, AgentError> {
    text.trim().parse().map_err(|_| AgentError::Parse {
        path: path.to_path_buf(),
        what: format!("expected a whole number of bytes, found {:?}", short(text)),
    })
}

fn short(text: &str) -> &str {
    let t = text.trim();
    match t.char_indices().nth(64) {
        Some((i, _)) => &t[..i],
        None => t,
    }
}

/// `(MemTotal, MemAvailable)` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo(path: &Path, text: &str) -> Result<(u64, u64), AgentError> {
    let field = |name: &str| -> Result<u64, AgentError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .ok_or_else(|| AgentError::Parse {
                path: path.to_path_buf(),
                what: format!("no {name} line"),
            })?;
        let mut parts = line.split_whitespace();
        let n: u64 =
            parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| AgentError::Parse {
                    path: path.to_path_buf(),
                    what: format!("{name} is not a number: {:?}", short(line)),
                })?;
        let mult = match parts.next() {
            Some("kB") => 1024,
            None => 1,
            Some(u) => {
                return Err(AgentError::Parse {
                    path: path.to_path_buf(),
                    what: format!("{name} has unknown unit {u:?}"),
                })
            }
        };
        n.checked_mul(mult).ok_or_else(|| AgentError::Parse {
            path: path.to_path_buf(),
            what: format!("{name} overflows"),
        })
    };
    Ok((field("MemTotal")?, field("MemAvailable")?))
}

/// `(MemTotal, MemAvailable)` of this machine.
pub fn read_meminfo(path: &Path) -> Result<(u64, u64), AgentError> {
    parse_meminfo(path, &read(path)?)
}

/// Which cgroup interface a directory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// `memory.usage_in_bytes`, `memory.max_usage_in_bytes`, `memory.limit_in_bytes`.
    V1,
    /// `memory.current`, `memory.peak` (kernel ≥ 5.19), `memory.max`.
    V2,
}

/// A memory cgroup: a directory with v1's or v2's memory files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
    version: CgroupVersion,
}

impl Cgroup {
    /// Open `path`, telling v2 (`memory.current`) from v1 (`memory.usage_in_bytes`).
    pub fn open(path: &Path) -> Result<Cgroup, AgentError> {
        let version = if path.join("memory.current").is_file() {
            CgroupVersion::V2
        } else if path.join("memory.usage_in_bytes").is_file() {
            CgroupVersion::V1
        } else {
            return Err(AgentError::NotACgroup(path.to_path_buf()));
        };
        Ok(Cgroup {
            path: path.to_path_buf(),
            version,
        })
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// v1 or v2.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    fn file(&self, v1: &str, v2: &str) -> PathBuf {
        self.path.join(match self.version {
            CgroupVersion::V1 => v1,
            CgroupVersion::V2 => v2,
        })
    }

    /// Bytes charged to the cgroup now.
    pub fn usage(&self) -> Result<u64, AgentError> {
        let f = self.file("memory.usage_in_bytes", "memory.current");
        parse_u64(&f, &read(&f)?)
    }

    /// The most it was ever charged (v1 `memory.max_usage_in_bytes`; v2 `memory.peak`, absent
    /// before Linux 5.19: `None`).
    pub fn peak(&self) -> Result<Option<u64>, AgentError> {
        let f = self.file("memory.max_usage_in_bytes", "memory.peak");
        if self.version == CgroupVersion::V2 && !f.is_file() {
            return Ok(None);
        }
        parse_u64(&f, &read(&f)?).map(Some)
    }

    /// Its limit, `None` when unlimited (v2 `max`, or at least [`MAX_BYTES`] × 1024: v1 writes
    /// "unlimited" as 2^63 rounded down to a page).
    pub fn limit(&self) -> Result<Option<u64>, AgentError> {
        let f = self.file("memory.limit_in_bytes", "memory.max");
        let text = read(&f)?;
        if text.trim() == "max" {
            return Ok(None);
        }
        let n = parse_u64(&f, &text)?;
        Ok((n < MAX_BYTES.saturating_mul(1024)).then_some(n))
    }

    /// Inactive file pages (reclaimable page cache) from `memory.stat`: v1's hierarchical
    /// `total_inactive_file` (else `inactive_file`), v2's `inactive_file`; 0 when absent.
    pub fn inactive_file(&self) -> Result<u64, AgentError> {
        let f = self.path.join("memory.stat");
        let text = read(&f)?;
        let get = |key: &str| {
            text.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key))
                    .then(|| it.next().and_then(|v| v.parse::<u64>().ok()))
                    .flatten()
            })
        };
        Ok(match self.version {
            CgroupVersion::V1 => get("total_inactive_file").or_else(|| get("inactive_file")),
            CgroupVersion::V2 => get("inactive_file"),
        }
        .unwrap_or(0))
    }
}

/// Where the node's memory is read from.
#[derive(Debug, Clone)]
pub enum NodeSource {
    /// The machine: `/proc/meminfo` (the path, for tests).
    Proc {
        /// Normally `/proc/meminfo`.
        meminfo: PathBuf,
    },
    /// A node cgroup: its limit is the node's memory (tests model a small node this way).
    Cgroup {
        /// The cgroup.
        cgroup: Cgroup,
        /// `/proc/meminfo`, for the cap (a limit above the machine's memory is the machine's).
        meminfo: PathBuf,
    },
}

impl NodeSource {
    /// The machine's memory.
    pub fn proc() -> Self {
        NodeSource::Proc {
            meminfo: PathBuf::from("/proc/meminfo"),
        }
    }

    /// The node is this cgroup.
    pub fn cgroup(path: &Path) -> Result<Self, AgentError> {
        Ok(NodeSource::Cgroup {
            cgroup: Cgroup::open(path)?,
            meminfo: PathBuf::from("/proc/meminfo"),
        })
    }

    /// Sample the node's memory now.
    pub fn sample(&self) -> Result<NodeSample, AgentError> {
        match self {
            NodeSource::Proc { meminfo } => {
                let (total, avail) = read_meminfo(meminfo)?;
                Ok(NodeSample {
                    total,
                    used: total.saturating_sub(avail),
                })
            }
            NodeSource::Cgroup { cgroup, meminfo } => {
                let (mem_total, _) = read_meminfo(meminfo)?;
                let total = cgroup.limit()?.map_or(mem_total, |l| l.min(mem_total));
                let used = cgroup.usage()?.saturating_sub(cgroup.inactive_file()?);
                Ok(NodeSample { total, used })
            }
        }
    }
}

/// The resident set of process `pid` (`VmRSS` of `/proc/PID/status`), in bytes.
pub fn process_rss(pid: u32) -> Result<u64, AgentError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| AgentError::Parse {
            path: path.clone(),
            what: "no VmRSS line (a kernel thread, or the process ended)".into(),
        })?;
    Ok(kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let p = Path::new("/proc/meminfo");
        let text = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(p, text).unwrap(),
            (24576000 * 1024, 20000000 * 1024)
        );
        let e = parse_meminfo(p, "MemTotal: 5 kB\n").unwrap_err();
        assert!(e.to_string().contains("no MemAvailable line"), "{e}");
        let e = parse_meminfo(p, "MemTotal: x kB\nMemAvailable: 1 kB\n").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e =
            parse_meminfo(p, "MemTotal: 99999999999999999999 kB\nMemAvailable: 1 kB").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e = parse_meminfo(p, "MemTotal: 18446744073709551 kB\nMemAvailable: 1 kB").unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn this_machine_has_meminfo() {
        let s = NodeSource::proc().sample().unwrap();
        assert!(s.total > 0 && s.used <= s.total, "{s:?}");
    }

    #[test]
    fn fake_cgroups_of_both_versions_are_read() {
        let dir = faascache_testkit::tempdir("agent-mem");
        let v1 = dir.join("v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        std::fs::write(v1.join("memory.max_usage_in_bytes"), "2097152\n").unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            v1.join("memory.stat"),
            "cache 5\ninactive_file 7\ntotal_inactive_file 4096\n",
        )
        .unwrap();
        let cg = Cgroup::open(&v1).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V1);
        assert_eq!(cg.usage().unwrap(), 1 << 20);
        assert_eq!(cg.peak().unwrap(), Some(2 << 20));
        assert_eq!(cg.limit().unwrap(), None);
        assert_eq!(cg.inactive_file().unwrap(), 4096);

        let v2 = dir.join("v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("memory.current"), "300\n").unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.join("memory.stat"), "anon 1\ninactive_file 100\n").unwrap();
        let cg = Cgroup::open(&v2).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V2);
        assert_eq!(cg.usage().unwrap(), 300);
        assert_eq!(cg.peak().unwrap(), None, "no memory.peak before Linux 5.19");
        assert_eq!(cg.limit().unwrap(), None);
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        assert_eq!(cg.limit().unwrap(), Some(1 << 30));
        std::fs::write(v2.join("memory.current"), "lots\n").unwrap();
        let e = cg.usage().unwrap_err();
        assert!(e.to_string().contains("expected a whole number"), "{e}");

        let e = Cgroup::open(&dir.join("nothing")).unwrap_err();
        assert!(matches!(e, AgentError::NotACgroup(_)), "{e}");
    }

    #[test]
    fn a_node_cgroup_is_capped_by_the_machine_and_excludes_inactive_files() {
        let dir = faascache_testkit::tempdir("agent-node");
        std::fs::write(dir.join("memory.current"), "1000000\n").unwrap();
        std::fs::write(dir.join("memory.max"), "4000000\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "inactive_file 200000\n").unwrap();
        let mut node = NodeSource::cgroup(&dir).unwrap();
        let s = node.sample().unwrap();
        assert_eq!(
            s,
            NodeSample {
                total: 4000000,
                used: 800000
            }
        );
        let meminfo = dir.join("meminfo");
        std::fs::write(&meminfo, "MemTotal: 1000 kB\nMemAvailable: 10 kB\n").unwrap();
        if let NodeSource::Cgroup { meminfo: m, .. } = &mut node {
            *m = meminfo;
        }
        assert_eq!(node.sample().unwrap().total, 1000 * 1024);
    }

    #[test]
    fn own_rss_is_read() {
        let rss = process_rss(std::process::id()).unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert!(process_rss(u32::MAX).is_err());
    }
}
