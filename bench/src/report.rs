//! Result records, JSON files with full metadata, and Markdown tables.

use crate::driver::DriverInfo;
use crate::hist::{Spread, Summary};
use crate::procinfo::Machine;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One measured configuration of one test against one driver (median over `runs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// ClusterPerf / YCSB test name
    pub test: String,
    /// variant within the test, e.g. `keylen=30`, `clients=2`, `rate=50000`, `tcp/64B`
    pub variant: String,
    /// `redis`, `memcached`, `faascache`, `floor`
    pub driver: String,
    /// e.g. `tcp:127.0.0.1:6379`
    pub transport: String,
    /// client polling mode: `busy` or `block`
    pub poll: String,
    /// `closed` or `open`
    pub load: String,
    /// client threads (one connection each)
    pub clients: usize,
    /// requests in flight per client (closed loop)
    pub pipeline: usize,
    /// key bytes
    pub key_size: usize,
    /// value bytes
    pub value_size: usize,
    /// records in the data set
    pub records: u64,
    /// objects per operation (multi-ops)
    pub objects_per_op: usize,
    /// key distribution
    pub distribution: String,
    /// read fraction of the mix
    pub read_fraction: f64,
    /// median over runs of the p50 latency, µs
    pub p50_us: f64,
    /// median p90, µs
    pub p90_us: f64,
    /// median p99, µs
    pub p99_us: f64,
    /// median p99.9, µs
    pub p999_us: f64,
    /// largest max over runs, µs
    pub max_us: f64,
    /// median achieved ops/s
    pub ops_per_sec: f64,
    /// median achieved objects/s
    pub objects_per_sec: f64,
    /// offered ops/s (open loop)
    pub offered_ops_per_sec: Option<f64>,
    /// median server CPU in cores (utime+stime / wall over the measured interval)
    pub server_cpu: Option<f64>,
    /// median client-process CPU in cores
    pub client_cpu: Option<f64>,
    /// spread of p50 over runs
    pub p50_spread: Spread,
    /// spread of p99 over runs
    pub p99_spread: Spread,
    /// spread of throughput over runs
    pub ops_spread: Spread,
    /// per-run summaries
    pub runs: Vec<RunRecord>,
    /// per-class summaries (merged over runs)
    pub classes: Vec<(String, Summary)>,
    /// latency CDF of all runs merged: (µs, fraction)
    pub cdf: Vec<(f64, f64)>,
    /// error replies (all runs)
    pub errors: u64,
    /// first error text
    pub first_error: Option<String>,
    /// read misses (all runs)
    pub misses: u64,
    /// test-specific numbers (memory ratios, knee, ...)
    pub extra: serde_json::Value,
    /// caveats
    pub notes: Vec<String>,
}

/// One run of a record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRecord {
    /// latency summary
    pub summary: Summary,
    /// achieved ops/s
    pub ops_per_sec: f64,
    /// server CPU, cores
    pub server_cpu: Option<f64>,
    /// measured seconds
    pub elapsed_s: f64,
}

/// Everything about the run that is not a number.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// harness version
    pub harness: String,
    /// git commit of the workspace, if known
    pub git_commit: Option<String>,
    /// UTC start time
    pub started: String,
    /// the exact command line
    pub command: Vec<String>,
    /// the machine
    pub machine: Machine,
    /// client polling mode
    pub client_poll: String,
    /// client cores (empty = unpinned)
    pub client_cores: Vec<usize>,
    /// all options as parsed
    pub options: serde_json::Value,
    /// drivers measured
    pub drivers: Vec<DriverInfo>,
    /// peer tool versions and other environment facts
    pub environment: Vec<(String, String)>,
}

/// A results file: metadata plus records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// metadata
    pub metadata: Metadata,
    /// one record per test configuration
    pub records: Vec<Record>,
}

impl Report {
    /// Writes pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(d) = path.parent() {
            if !d.as_os_str().is_empty() {
                std::fs::create_dir_all(d)?;
            }
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Reads a JSON results file.
    pub fn read_json(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }

    /// Markdown: a metadata block and one table per test.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.metadata;
        let _ = writeln!(s, "# FaaSCache benchmark results\n");
        let _ = writeln!(s, "- started: {}", m.started);
        let _ = writeln!(s, "- command: `{}`", m.command.join(" "));
        let _ = writeln!(
            s,
            "- machine: {} × {}, kernel {}, {} MiB RAM{}, load average at start: {}",
            m.machine.nproc,
            m.machine.cpu_model,
            m.machine.kernel,
            m.machine.mem_total_bytes >> 20,
            if m.machine.virtualized {
                ", virtualised"
            } else {
                ""
            },
            m.machine.loadavg
        );
        let _ = writeln!(
            s,
            "- client: poll={}, cores={}",
            m.client_poll,
            if m.client_cores.is_empty() {
                "unpinned".to_string()
            } else {
                format!("{:?}", m.client_cores)
            }
        );
        if let Some(c) = &m.git_commit {
            let _ = writeln!(s, "- git: {c}");
        }
        for d in &m.drivers {
            let _ = writeln!(
                s,
                "- {}: version {}, {}, {}; server cmd `{}`, cpus {}, threads {}",
                d.name,
                d.server_version.as_deref().unwrap_or("?"),
                d.transport,
                d.protocol,
                d.server_cmdline.as_deref().unwrap_or("?"),
                d.server_cpus.as_deref().unwrap_or("?"),
                d.server_threads
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into())
            );
            for n in &d.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        for (k, v) in &m.environment {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let mut tests: Vec<&str> = Vec::new();
        for r in &self.records {
            if !tests.contains(&r.test.as_str()) {
                tests.push(&r.test);
            }
        }
        for t in tests {
            let _ = writeln!(s, "\n## {t}\n");
            let _ = writeln!(
                s,
                "{}",
                if t == "memory" {
                    memory_table(self.records.iter().filter(|r| r.test == t))
                } else {
                    markdown_table(self.records.iter().filter(|r| r.test == t))
                }
            );
            let mut notes: Vec<String> = Vec::new();
            for r in self.records.iter().filter(|r| r.test == t) {
                for n in &r.notes {
                    let n = format!("{} {}: {n}", r.driver, r.variant);
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

fn f1(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn opt_cpu(x: Option<f64>) -> String {
    x.map(|c| format!("{:.0} %", c * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// A Markdown table of memory-test records.
pub fn memory_table<'a>(records: impl Iterator<Item = &'a Record>) -> String {
    let mut s = String::from(
        "| driver | pattern | sizes | live MiB | objects | RSS MiB | RSS ÷ live | (RSS − baseline) ÷ live | refused |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let e = &r.extra;
        let f = |k: &str| e[k].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.2} | {:.2} | {:.0} |",
            r.driver,
            r.variant,
            r.distribution,
            f("live_bytes") / 1048576.0,
            f("live_objects"),
            f("rss_bytes") / 1048576.0,
            f("rss_per_live"),
            f("rss_growth_per_live"),
            f("refused")
        );
    }
    s
}

/// A Markdown table of records.
pub fn markdown_table<'a>(records: impl Iterator<Item = &'a Record>) -> String {
    let mut s = String::new();
    s.push_str(
        "| driver | variant | poll | load | clients×pipe | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | ops/s (offered) | server CPU | runs (p50 spread) | errors/misses |\n",
    );
    s.push_str("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for r in records {
        let offered = r
            .offered_ops_per_sec
            .map(|o| format!(" ({o:.0})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}×{} | {} | {} | {} | {} | {} | {:.0}{} | {} | {} ({}–{}) | {}/{} |",
            r.driver,
            r.variant,
            r.poll,
            r.load,
            r.clients,
            r.pipeline,
            f1(r.p50_us),
            f1(r.p90_us),
            f1(r.p99_us),
            f1(r.p999_us),
            f1(r.max_us),
            r.ops_per_sec,
            offered,
            opt_cpu(r.server_cpu),
            r.runs.len(),
            f1(r.p50_spread.min),
            f1(r.p50_spread.max),
            r.errors,
            r.misses
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(test: &str, p50: f64) -> Record {
        Record {
            test: test.into(),
            variant: "v".into(),
            driver: "redis".into(),
            transport: "tcp:127.0.0.1:6379".into(),
            poll: "busy".into(),
            load: "closed".into(),
            clients: 1,
            pipeline: 1,
            p50_us: p50,
            p99_us: p50 * 2.0,
            p999_us: p50 * 3.0,
            ops_per_sec: 12345.0,
            server_cpu: Some(0.5),
            runs: vec![RunRecord::default(); 3],
            ..Default::default()
        }
    }

    #[test]
    fn json_round_trip_has_required_fields() {
        let r = Report {
            metadata: Metadata {
                harness: "x".into(),
                ..Default::default()
            },
            records: vec![rec("readDist", 80.0), rec("floor", 5.0)],
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = dir.join("r.json");
        r.write_json(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let rec0 = &v["records"][0];
        for k in [
            "test",
            "driver",
            "transport",
            "p50_us",
            "p99_us",
            "p999_us",
            "ops_per_sec",
            "server_cpu",
        ] {
            assert!(!rec0[k].is_null(), "missing {k}");
        }
        assert!(v["metadata"]["machine"]["nproc"].is_number());
        let back = Report::read_json(&p).unwrap();
        assert_eq!(back.records.len(), 2);
    }

    #[test]
    fn markdown_has_one_table_per_test() {
        let r = Report {
            records: vec![
                rec("readDist", 80.0),
                rec("readDist", 81.0),
                rec("floor", 5.5),
            ],
            ..Default::default()
        };
        let md = r.markdown();
        assert!(md.contains("## readDist"));
        assert!(md.contains("## floor"));
        assert_eq!(md.matches("| driver |").count(), 2);
        assert!(md.contains("| 80.0 |"));
        assert!(md.contains("50 %"));
        assert!(md.contains("12345"));
    }
}
