//! Test definitions and the runner: turns options into measurements and records.
//!
//! The suite is table-driven: [`runners::TESTS`] maps each test name to its runner and
//! description; [`ctx`] is what the runners share (and what drivers that run tests themselves
//! use, without naming the registry).

pub mod ctx;
pub mod runners;

pub use ctx::{driver_spec, environment, metadata, summarise, Ctx};
pub use runners::{run_test, TestDef, TESTS};

use crate::cli::Opts;
use crate::driver::DriverSpec;
use crate::driver::{Driver, DriverInfo};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};
use crate::report::{Record, Report};
use anyhow::{bail, Result};
use runners::{restart_peer, run_memory_local};

/// Whether `name` is a known test.
pub fn is_test(name: &str) -> bool {
    runners::find(name).is_some()
}

/// Runs one test against the driver named in the options; returns the report.
pub fn run_single(opts: &Opts) -> Result<Report> {
    let name = opts.test.as_str();
    if !is_test(name) {
        bail!("unknown test {name:?}; `faascache-bench list` lists them");
    }
    if name == "floor" {
        let ctx = Ctx {
            opts,
            driver: None,
            info: DriverInfo {
                name: "floor".into(),
                ..Default::default()
            },
        };
        let records = run_test(name, &ctx)?;
        return Ok(Report {
            metadata: metadata(opts, vec![]),
            records,
        });
    }
    if name == "echo" && (!opts.echo_server.is_empty() || opts.echo_locator.is_some()) {
        return crate::drivers::faascache::run_in_process(opts);
    }
    let spec = driver_spec(opts, &opts.driver)?;
    let d = crate::drivers::open(&spec, opts.server_pid)?;
    let info = d.info();
    let ctx = Ctx {
        opts,
        driver: Some(&*d),
        info: info.clone(),
    };
    let records = run_test(name, &ctx)?;
    Ok(Report {
        metadata: metadata(opts, vec![info]),
        records,
    })
}

/// Runs `tests` (except `floor`) on one driver, recording failures as notes.
fn run_tests_on(
    ctx: &Ctx<'_>,
    d: &dyn Driver,
    tests: &[String],
    records: &mut Vec<Record>,
    notes: &mut Vec<String>,
) {
    for t in tests {
        if t == "floor" {
            continue;
        }
        eprintln!("== {t} on {}", ctx.info.name);
        match run_test(t, ctx) {
            Ok(r) => records.extend(r),
            Err(e) => {
                let msg = format!("{t} on {}: failed: {e:#}", ctx.info.name);
                eprintln!("   {msg}");
                notes.push(msg);
            }
        }
        if t != "memory" {
            // keep data sets from interfering across tests
            let _ = d.flush_all();
        }
    }
}

/// The tests a local cluster runs on its long-lived server (not the memory test, which starts
/// fresh ones, nor the floor, which needs no server).
fn timed_tests(opts: &Opts) -> Vec<String> {
    opts.tests
        .iter()
        .filter(|t| *t != "memory" && *t != "floor")
        .cloned()
        .collect()
}

/// `faascache:local-memif` in `compare`: the same private cluster, its server serving clients
/// over DPDK memif (shared-memory packet rings between the two processes: the closest thing to
/// a NIC path on one host) and the coordinator over TCP (memif links are point-to-point, so the
/// coordinator is kept on the TCP alternative with `FAASCACHE_TRANSPORTS=tcp`). Needs a
/// `--features dpdk` build of faascache-bench and faascache.
fn compare_local_memif(
    opts: &Opts,
    records: &mut Vec<Record>,
    notes: &mut Vec<String>,
) -> Result<Vec<DriverInfo>> {
    if !cfg!(feature = "dpdk") {
        bail!(
            "this faascache-bench has no DPDK: build both with `cargo build --release -p \
             faascache-bench -p faascache-server --features faascache-bench/dpdk,faascache-server/dpdk`"
        );
    }
    let timed = timed_tests(opts);
    let mut cfg = LocalClusterConfig::new(&opts.fc_poll, Some(opts.server_core))?;
    cfg.memory_bytes = opts.fc_memory_mb << 20;
    cfg.listen = "dpdk:vdev=memif,socket={dir}/memif.sock,huge=0;tcp:host=127.0.0.1,port=0".into();
    cfg.coordinator_env = vec![("FAASCACHE_TRANSPORTS".into(), "tcp".into())];
    let cluster = LocalCluster::start(&cfg)?;
    eprintln!("== faascache (memif): {}", cluster.description);
    let d = crate::drivers::faascache_kv::KvDriver::new(
        cluster.coordinator(),
        Some(cluster.server_pid()),
    )?;
    let used = d.data_transport()?;
    if used != "dpdk" {
        bail!("the benchmark's session to the server uses {used}, not dpdk (memif): see the server log");
    }
    let mut info = d.info();
    info.name = "faascache-memif".into();
    info.notes.push(cluster.description.clone());
    let ctx = Ctx {
        opts,
        driver: Some(&d),
        info: info.clone(),
    };
    run_tests_on(&ctx, &d, &timed, records, notes);
    Ok(vec![info])
}

/// `faascache:local` in `compare`: a private cluster for the latency and throughput tests,
/// and a fresh, data-sized one per pattern for the memory test.
fn compare_local(
    opts: &Opts,
    records: &mut Vec<Record>,
    notes: &mut Vec<String>,
) -> Result<Vec<DriverInfo>> {
    let mut infos = Vec::new();
    let timed = timed_tests(opts);
    if !timed.is_empty() {
        let mut cfg = LocalClusterConfig::new(&opts.fc_poll, Some(opts.server_core))?;
        cfg.memory_bytes = opts.fc_memory_mb << 20;
        let cluster = LocalCluster::start(&cfg)?;
        eprintln!("== faascache: {}", cluster.description);
        let d = crate::drivers::faascache_kv::KvDriver::new(
            cluster.coordinator(),
            Some(cluster.server_pid()),
        )?;
        let mut info = d.info();
        info.notes.push(cluster.description.clone());
        infos.push(info.clone());
        let ctx = Ctx {
            opts,
            driver: Some(&d),
            info,
        };
        run_tests_on(&ctx, &d, &timed, records, notes);
    }
    if opts.tests.iter().any(|t| t == "memory") {
        eprintln!("== memory on faascache (fresh local cluster per pattern)");
        match run_memory_local(opts) {
            Ok((r, info)) => {
                records.extend(r);
                if infos.is_empty() {
                    infos.extend(info);
                }
            }
            Err(e) => {
                let msg = format!("memory on faascache: failed: {e:#}");
                eprintln!("   {msg}");
                notes.push(msg);
            }
        }
    }
    Ok(infos)
}

/// Runs the comparison suite; returns the report and notes about skipped drivers.
pub fn run_compare(opts: &Opts) -> Result<(Report, Vec<String>)> {
    let mut records = Vec::new();
    let mut infos = Vec::new();
    let mut notes = Vec::new();
    if opts.tests.iter().any(|t| t == "floor") {
        eprintln!("== floor (same run, poll={})", opts.poll.as_str());
        let ctx = Ctx {
            opts,
            driver: None,
            info: DriverInfo {
                name: "floor".into(),
                ..Default::default()
            },
        };
        records.extend(run_test("floor", &ctx)?);
    }
    for dspec in &opts.drivers {
        type Local = fn(&Opts, &mut Vec<Record>, &mut Vec<String>) -> Result<Vec<DriverInfo>>;
        let local: Option<Local> = match dspec.trim() {
            "faascache:local" => Some(compare_local),
            "faascache:local-memif" => Some(compare_local_memif),
            _ => None,
        };
        if let Some(run) = local {
            match run(opts, &mut records, &mut notes) {
                Ok(info) => infos.extend(info),
                Err(e) => {
                    let msg = format!("{}: skipped: {e:#}", dspec.trim());
                    eprintln!("== {msg}");
                    notes.push(msg);
                }
            }
            continue;
        }
        let spec = match DriverSpec::parse(dspec) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("{dspec}: skipped: {e}"));
                continue;
            }
        };
        if let (Some(cmd), Some(peer)) = (&opts.restart_cmd, spec.peer_name()) {
            // A fresh peer, pinned like the FaaSCache server.
            if let Err(e) = restart_peer(cmd, peer, opts.server_core) {
                notes.push(format!("{peer}: not restarted: {e:#}"));
            }
        }
        let d = match crate::drivers::open(&spec, None) {
            Ok(d) => d,
            Err(e) => {
                let msg = format!("{}: skipped: {e:#}", spec.describe());
                eprintln!("== {msg}");
                notes.push(msg);
                continue;
            }
        };
        let info = d.info();
        infos.push(info.clone());
        let ctx = Ctx {
            opts,
            driver: Some(&*d),
            info,
        };
        run_tests_on(&ctx, &*d, &opts.tests, &mut records, &mut notes);
    }
    let mut metadata = metadata(opts, infos);
    for n in &notes {
        metadata.environment.push(("note".into(), n.clone()));
    }
    Ok((Report { metadata, records }, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::LatencyHist;
    use crate::load::RunResult;

    #[test]
    fn summarise_takes_medians() {
        let mk = |us: u64, ops: f64| {
            let mut h = LatencyHist::new();
            for _ in 0..100 {
                h.record_ns(us * 1000);
            }
            RunResult {
                hist: h,
                ops: 100,
                ops_per_sec: ops,
                server_cpu: Some(0.5),
                ..Default::default()
            }
        };
        let mut rec = Record::default();
        summarise(&mut rec, &[mk(10, 100.0), mk(30, 300.0), mk(20, 200.0)]);
        assert!((rec.p50_us - 20.0).abs() < 0.1);
        assert_eq!(rec.ops_per_sec, 200.0);
        assert_eq!(rec.ops_spread.min, 100.0);
        assert_eq!(rec.runs.len(), 3);
        assert_eq!(rec.server_cpu, Some(0.5));
        assert!((rec.max_us - 30.0).abs() < 0.1);
    }

    #[test]
    fn all_listed_tests_are_known() {
        let mut names = std::collections::BTreeSet::new();
        for t in TESTS {
            assert!(is_test(t.name));
            assert!(names.insert(t.name), "test {} registered twice", t.name);
            assert!(
                !t.description.is_empty(),
                "test {} has no description",
                t.name
            );
            assert!(
                crate::cli::AFTER_HELP.contains(t.name),
                "--help does not list test {}",
                t.name
            );
        }
        for (c, _) in crate::cli::COMMANDS {
            assert!(!is_test(c), "{c} is a command and a test");
        }
        assert!(!is_test("nope"));
    }
}
