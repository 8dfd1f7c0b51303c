//! The memory readers against real cgroups: a child cgroup is created, a process moved into it
//! allocates and touches N MiB, and the reader must see it (usage, peak, limit, and the cgroup
//! as a node). v1 at /sys/fs/cgroup/memory; v2 wherever cgroup2 is mounted with the memory
//! controller. A missing hierarchy prints SKIP — or fails under `CI=true` or when
//! `FAASCACHE_REQUIRE` names `cgroup`.
//!
//! The allocating process is this test binary itself, re-run as the `alloc_helper` test with
//! `FAASCACHE_AGENT_ALLOC_MIB` set: it allocates and touches that many MiB, says `ALLOCATED`,
//! and holds the memory until its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faascache_agent::memory::{Cgroup, CgroupVersion, NodeSource};

const MIB: u64 = 1 << 20;
const ALLOC_ENV: &str = "FAASCACHE_AGENT_ALLOC_MIB";

/// Not a test of its own: the allocating child (does nothing unless `ALLOC_ENV` is set).
#[test]
fn alloc_helper() {
    let Ok(mib) = std::env::var(ALLOC_ENV) else {
        return;
    };
    let mib: usize = mib.parse().expect("MiB");
    let mut v = vec![0u8; mib << 20];
    // Touch every page (vec![0; n] may be untouched zero pages).
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    let mut out = std::io::stdout();
    writeln!(
        out,
        "ALLOCATED {}",
        v.iter().step_by(4096).map(|&b| b as usize).sum::<usize>()
    )
    .unwrap();
    out.flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn must_have() -> bool {
    std::env::var("CI").as_deref() == Ok("true") || faascache_testkit::require::required("cgroup")
}

fn skip(test: &str, why: &str) {
    assert!(
        !must_have(),
        "{test}: cgroups are required here (CI=true or FAASCACHE_REQUIRE=cgroup) but {why}"
    );
    println!("SKIP: {test}: {why}");
}

/// A child cgroup removed on drop (after its processes are gone).
struct TempCgroup(PathBuf);

impl Drop for TempCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(&self.0).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn make_cgroup(parent: &Path, tag: &str) -> TempCgroup {
    let p = parent.join(format!("faascache-agent-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir(&p);
    std::fs::create_dir(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    TempCgroup(p)
}

/// Start the helper inside `cgroup` (the shell moves itself in, then execs the helper), and
/// wait until it has allocated.
fn allocate_in(cgroup: &Path, mib: u64) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && exec \"$0\" --exact alloc_helper --nocapture --test-threads 1")
        .arg(&exe)
        .arg(cgroup)
        .env(ALLOC_ENV, mib.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("ALLOCATED") => break,
            Some(Ok(_)) => continue,
            other => {
                let _ = child.kill();
                panic!("the helper ended before allocating: {other:?}");
            }
        }
    }
    child
}

fn finish(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

fn check_reader(cg_dir: &Path, version: CgroupVersion, limit_file: &str) {
    const N: u64 = 64;
    let cg = Cgroup::open(cg_dir).unwrap();
    assert_eq!(cg.version(), version);
    std::fs::write(cg_dir.join(limit_file), format!("{}", 512 * MIB)).unwrap();
    assert_eq!(cg.limit().unwrap(), Some(512 * MIB));
    let before = cg.usage().unwrap();
    let child = allocate_in(cg_dir, N);
    let usage = cg.usage().unwrap();
    assert!(
        usage >= N * MIB,
        "usage {usage} < {N} MiB (before: {before})"
    );
    assert!(usage < 512 * MIB, "usage {usage} above the limit");
    if let Some(peak) = cg.peak().unwrap() {
        assert!(peak >= usage.min(N * MIB), "peak {peak}");
    }
    let node = NodeSource::cgroup(cg_dir).unwrap().sample().unwrap();
    assert_eq!(node.total, 512 * MIB);
    assert!(node.used >= N * MIB && node.used <= node.total, "{node:?}");
    finish(child);
    // The memory is uncharged when the process exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cg.usage().unwrap() >= N * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cg.usage().unwrap() < N * MIB, "still charged after exit");
}

#[test]
fn cgroup_v1_usage_of_a_real_process_is_seen() {
    let root = Path::new("/sys/fs/cgroup/memory");
    if !root.join("memory.usage_in_bytes").is_file() {
        return skip(
            "cgroup_v1_usage_of_a_real_process_is_seen",
            "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory (mount it, as root)",
        );
    }
    let cg = make_cgroup(root, "v1");
    check_reader(&cg.0, CgroupVersion::V1, "memory.limit_in_bytes");
}

/// Where cgroup2 is mounted with the memory controller available, if anywhere.
fn v2_root() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    let root = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .next()
        .ok_or("no cgroup2 file system is mounted")?;
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(format!(
            "cgroup2 at {} has no memory controller (its controllers: {:?}; memory is bound to the v1 hierarchy here)",
            root.display(),
            controllers.trim()
        ));
    }
    Ok(root)
}

#[test]
fn cgroup_v2_usage_of_a_real_process_is_seen() {
    let root = match v2_root() {
        Ok(r) => r,
        Err(why) => {
            // Only the missing controller is a reason to skip; CI machines may lack it.
            println!("SKIP: cgroup_v2_usage_of_a_real_process_is_seen: {why}");
            return;
        }
    };
    let subtree = root.join("cgroup.subtree_control");
    if !std::fs::read_to_string(&subtree)
        .unwrap_or_default()
        .contains("memory")
    {
        std::fs::write(&subtree, "+memory").unwrap_or_else(|e| {
            panic!(
                "cannot enable the memory controller in {}: {e}",
                subtree.display()
            )
        });
    }
    let cg = make_cgroup(&root, "v2");
    check_reader(&cg.0, CgroupVersion::V2, "memory.max");
}
