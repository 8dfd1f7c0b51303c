//! The harness's results: metadata, per-backend outcomes, the cells, the table, `--json`, a CDF
//! plot of invocation times, and the assertions of the run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use super::agent::Summary as AgentSummary;
use super::cachestats::Summary;
use super::invoker::PoolStats;
use super::runner::Outcome;
use super::stats::{cells, table, Cell, Record};
use crate::cli::Opts;

/// Errors kept per backend in the JSON (the count is always exact).
const MAX_ERRORS_KEPT: usize = 50;

/// One backend's totals.
#[derive(Debug, Clone, Serialize)]
pub struct BackendSummary {
    pub name: String,
    pub invocations: usize,
    pub measured: usize,
    pub errors: usize,
    pub mismatches: usize,
    pub first_errors: Vec<String>,
    /// The cluster's counters over the run (backends with a cache: gateway, faascache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Summary>,
    /// The node agent's side (`--faas-agent`): events sent, its status over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSummary>,
}

/// Everything a run reports.
#[derive(Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub load_before: String,
    pub load_after: String,
    pub command: String,
    pub quick: bool,
    pub sizes: Vec<String>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub trace: PathBuf,
    pub notes: Vec<String>,
    pub backends: Vec<BackendSummary>,
    pub pool: PoolStats,
    pub cells: Vec<Cell>,
    pub records: Vec<Record>,
    /// (function, size) pairs the trace measures: each must have invocations on every backend.
    #[serde(skip)]
    pub expected: std::collections::BTreeSet<(String, String)>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Results {
    pub fn new(
        opts: &Opts,
        sizes: &[String],
        run_s: (f64, f64),
        trace: &Path,
        notes: Vec<String>,
    ) -> Results {
        Results {
            date: crate::procinfo::utc_now(),
            load_before: loadavg(),
            load_after: String::new(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            quick: opts.quick,
            sizes: sizes.to_vec(),
            duration_s: run_s.1,
            warmup_s: run_s.0,
            trace: trace.to_path_buf(),
            notes,
            backends: Vec::new(),
            pool: PoolStats::default(),
            cells: Vec::new(),
            records: Vec::new(),
            expected: Default::default(),
        }
    }

    /// Adds a backend's outcome (warm-up invocations are counted but not reported).
    pub fn add_backend(
        &mut self,
        name: &str,
        o: Outcome,
        cache: Option<Summary>,
        agent: Option<AgentSummary>,
    ) {
        let mismatches = o
            .errors
            .iter()
            .filter(|e| e.starts_with("OUTPUT MISMATCH"))
            .count();
        let measured: Vec<Record> = o
            .done
            .iter()
            .filter(|d| !d.warmup)
            .map(|d| d.record.clone())
            .collect();
        self.backends.push(BackendSummary {
            name: name.into(),
            invocations: o.done.len(),
            measured: measured.len(),
            errors: o.errors.len(),
            mismatches,
            first_errors: o.errors.iter().take(MAX_ERRORS_KEPT).cloned().collect(),
            cache,
            agent,
        });
        self.records.extend(measured);
    }

    /// Builds the cells, prints the table, writes JSON and plots, then checks the run.
    pub fn finish(mut self, opts: &Opts, backends: &[String]) -> Result<()> {
        self.load_after = loadavg();
        self.cells = cells(&self.records, backends, "swift");
        println!("{}", table(&self.cells));
        for b in &self.backends {
            println!(
                "- {}: {} invocations ({} measured), {} errors, {} output mismatches",
                b.name, b.invocations, b.measured, b.errors, b.mismatches
            );
            if let Some(c) = &b.cache {
                println!("  {}", cache_line(c));
            }
            if let Some(a) = &b.agent {
                println!("  {}", agent_line(a));
            }
        }
        let p = &self.pool;
        println!(
            "- sandboxes: {} cold starts, {} warm, {} OOM kills, {} failed, {} expired (keep-alive)",
            p.cold_starts, p.warm_starts, p.oom_kills, p.failed, p.expired
        );
        for n in &self.notes {
            println!("- {n}");
        }
        println!(
            "- load average before/after: {} / {}",
            self.load_before, self.load_after
        );
        if let Some(j) = &opts.json {
            let f = std::fs::File::create(j)?;
            serde_json::to_writer_pretty(std::io::BufWriter::new(f), &self)?;
            eprintln!("wrote {}", j.display());
            let svg = j.with_extension("cdf.svg");
            crate::plot::cdf_svg(
                &svg,
                "FaaS invocation time (/run round trip) per backend",
                &self.cdf_series(backends),
            )?;
            eprintln!("wrote {}", svg.display());
            let runs: Vec<(String, Summary)> = self
                .backends
                .iter()
                .filter_map(|b| b.cache.clone().map(|c| (b.name.clone(), c)))
                .collect();
            if let Some(p) = super::plots::cache_memory(&j.with_extension(""), &runs)? {
                eprintln!("wrote {}", p.display());
            }
            let agents: Vec<(String, AgentSummary)> = self
                .backends
                .iter()
                .filter_map(|b| b.agent.clone().map(|a| (b.name.clone(), a)))
                .collect();
            if let Some(p) = super::plots::agent_memory(&j.with_extension(""), &agents)? {
                eprintln!("wrote {}", p.display());
            }
            let bars = super::plots::etl_bars(&j.with_extension(""), &self.cells)?;
            eprintln!(
                "wrote {} E/T/L plots ({}.etl-*.svg)",
                bars.len(),
                j.with_extension("").display()
            );
        }
        self.check(opts, backends)
    }

    fn cdf_series(&self, backends: &[String]) -> Vec<(String, Vec<(f64, f64)>)> {
        backends
            .iter()
            .map(|b| {
                let mut v: Vec<f64> = self
                    .records
                    .iter()
                    .filter(|r| r.backend == *b)
                    .map(|r| r.run_ms * 1000.0)
                    .collect();
                v.sort_by(f64::total_cmp);
                let n = v.len() as f64;
                (
                    b.clone(),
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| (*x, (i + 1) as f64 / n))
                        .collect(),
                )
            })
            .collect()
    }

    /// The run's assertions: no output mismatch ever; with `--quick`, no error and every
    /// backend × function × size with measured invocations, and every cached backend with at
    /// least [`QUICK_MIN_HIT_RATIO`] of its reads hits.
    fn check(&self, opts: &Opts, backends: &[String]) -> Result<()> {
        let mism: usize = self.backends.iter().map(|b| b.mismatches).sum();
        if mism > 0 {
            bail!("{mism} outputs differ from what Swift holds or the manifest expects (see above / the JSON)");
        }
        if !opts.quick {
            return Ok(());
        }
        let errs: usize = self.backends.iter().map(|b| b.errors).sum();
        if errs > 0 {
            let first: Vec<&String> = self
                .backends
                .iter()
                .flat_map(|b| b.first_errors.iter())
                .take(5)
                .collect();
            bail!("{errs} invocations failed, e.g. {first:#?}");
        }
        let funcs: std::collections::BTreeSet<(&str, &str)> = self
            .records
            .iter()
            .map(|r| (r.function.as_str(), r.size.as_str()))
            .collect();
        for b in backends {
            for (f, s) in &funcs {
                if !self
                    .cells
                    .iter()
                    .any(|c| c.backend == *b && c.function == *f && c.size == *s && c.n > 0)
                {
                    bail!("no measured invocation of {f} at {s} on {b}");
                }
            }
        }
        if self.records.is_empty() {
            bail!("no measured invocation at all");
        }
        let cold = cache_problems(&self.backends);
        if !cold.is_empty() {
            bail!("{}", cold.join("; "));
        }
        let agent = agent_problems(&self.backends);
        if !agent.is_empty() {
            bail!("{}", agent.join("; "));
        }
        Ok(())
    }
}

/// Least hit ratio a cached backend must reach in a `--quick` run: its trace reads every input
/// several times, so only the first read of each may miss (about 85 % hits measured).
pub const QUICK_MIN_HIT_RATIO: f64 = 0.5;

/// The cached backends whose reads did not come from DRAM: a cache that silently passed every
/// read through to the store would still produce right outputs, so this is checked apart.
fn cache_problems(backends: &[BackendSummary]) -> Vec<String> {
    backends
        .iter()
        .filter_map(|b| {
            let c = b.cache.as_ref()?;
            match c.hit_ratio {
                Some(r) if r >= QUICK_MIN_HIT_RATIO => None,
                Some(r) => Some(format!(
                    "backend {}: only {:.1} % of reads hit the cache ({} hits, {} misses; at least {:.0} % expected)",
                    b.name,
                    r * 100.0,
                    c.hits,
                    c.misses,
                    QUICK_MIN_HIT_RATIO * 100.0
                )),
                None => Some(format!(
                    "backend {}: the cache saw no read at all ({} samples, {} failed)",
                    b.name,
                    c.samples.len(),
                    c.failed_samples
                )),
            }
        })
        .collect()
}

/// With `--quick`, the backends whose node agent did not see every sandbox: an event that
/// failed, none sent, or the agent's own counts of created and destroyed sandboxes differing
/// from the invoker's (every sandbox is destroyed before the agent stops).
fn agent_problems(backends: &[BackendSummary]) -> Vec<String> {
    backends
        .iter()
        .filter_map(|b| {
            let a = b.agent.as_ref()?;
            let e = &a.events;
            let why = if e.failed > 0 {
                format!(
                    "{} failed events, the first: {}",
                    e.failed,
                    a.first_event_error.as_deref().unwrap_or("?")
                )
            } else if e.created == 0 {
                "no sandbox was announced to it".to_string()
            } else if a.samples.is_empty() {
                format!(
                    "no status sample ({} failed: {})",
                    a.failed_samples,
                    a.first_sample_error.as_deref().unwrap_or("?")
                )
            } else if (a.agent_created, a.agent_destroyed) != (e.created, e.destroyed) {
                format!(
                    "it counted {} sandboxes created and {} destroyed, the invoker sent {} and {}",
                    a.agent_created, a.agent_destroyed, e.created, e.destroyed
                )
            } else {
                return None;
            };
            Some(format!("backend {}: node agent: {why}", b.name))
        })
        .collect()
}

/// One line of the node agent's side for the summary.
fn agent_line(a: &AgentSummary) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let e = &a.events;
    format!(
        "agent: {} events sent (created {}, start {}, finish {}, DELETE {}), {} failed; cache budget {:.0}–{:.0} MiB, {} resizes, {} refused; sandbox memory reserved ≤ {:.1} MiB, observed ≤ {:.1} MiB; {} status samples{}",
        e.sent(),
        e.created,
        e.started,
        e.finished,
        e.destroyed,
        e.failed,
        a.budget_min_bytes as f64 / MIB,
        a.budget_max_bytes as f64 / MIB,
        a.resizes,
        a.refusals,
        a.reserved_max_bytes as f64 / MIB,
        a.observed_max_bytes as f64 / MIB,
        a.samples.len(),
        if a.failed_samples > 0 {
            format!(" ({} failed)", a.failed_samples)
        } else {
            String::new()
        }
    )
}

/// One line of the cache's counters for the summary.
fn cache_line(c: &Summary) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let ratio = c
        .hit_ratio
        .map_or("no reads".to_string(), |r| format!("{:.1} %", r * 100.0));
    format!(
        "cache: hits {ratio} ({} hits, all local: one node; {} misses read through), write-back lag p50 {:.0} ms / max {} ms, {} uploads, {} evicted, peak {:.1} MiB live of {:.0} MiB{}",
        c.hits,
        c.misses,
        c.wb_lag_p50_ms,
        c.wb_lag_max_ms,
        c.uploads,
        c.evicted,
        c.peak_live_bytes as f64 / MIB,
        c.budget_bytes as f64 / MIB,
        if c.failed_samples > 0 {
            format!(" ({} samples failed)", c.failed_samples)
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_line_says_ratio_lag_and_memory() {
        let c = Summary {
            hits: 90,
            misses: 10,
            hit_ratio: Some(0.9),
            wb_lag_p50_ms: 12.0,
            wb_lag_max_ms: 40,
            peak_live_bytes: 3 << 20,
            budget_bytes: 1 << 30,
            ..Summary::default()
        };
        let l = cache_line(&c);
        assert!(l.contains("hits 90.0 %") && l.contains("10 misses"), "{l}");
        assert!(
            l.contains("p50 12 ms / max 40 ms") && l.contains("3.0 MiB live of 1024 MiB"),
            "{l}"
        );
        assert!(cache_line(&Summary::default()).contains("no reads"));
    }

    #[test]
    fn a_cache_that_served_no_hits_fails_the_quick_run() {
        let b = |name: &str, cache: Option<Summary>| BackendSummary {
            name: name.into(),
            invocations: 1,
            measured: 1,
            errors: 0,
            mismatches: 0,
            first_errors: Vec::new(),
            cache,
            agent: None,
        };
        let ratio = |r: Option<f64>| Summary {
            hit_ratio: r,
            ..Summary::default()
        };
        let ok = [b("swift", None), b("gateway", Some(ratio(Some(0.85))))];
        assert!(cache_problems(&ok).is_empty());
        let bad = [
            b("gateway", Some(ratio(Some(0.1)))),
            b("faascache", Some(ratio(None))),
        ];
        let p = cache_problems(&bad);
        assert_eq!(p.len(), 2);
        assert!(p[0].contains("only 10.0 %"), "{p:?}");
        assert!(p[1].contains("no read at all"), "{p:?}");
    }

    #[test]
    fn agent_line_and_quick_checks() {
        use crate::faas::agent::{EventCounts, Sample};
        let ok = AgentSummary {
            events: EventCounts {
                created: 3,
                started: 9,
                finished: 9,
                destroyed: 3,
                failed: 0,
            },
            agent_created: 3,
            agent_destroyed: 3,
            budget_min_bytes: 256 << 20,
            budget_max_bytes: 512 << 20,
            resizes: 2,
            reserved_max_bytes: 3 << 20,
            observed_max_bytes: 1 << 20,
            samples: vec![Sample::default()],
            ..AgentSummary::default()
        };
        let l = agent_line(&ok);
        assert!(
            l.contains("24 events sent (created 3, start 9, finish 9, DELETE 3), 0 failed"),
            "{l}"
        );
        assert!(
            l.contains("budget 256–512 MiB, 2 resizes") && l.contains("reserved ≤ 3.0 MiB"),
            "{l}"
        );
        let b = |agent: AgentSummary| BackendSummary {
            name: "gateway".into(),
            invocations: 1,
            measured: 1,
            errors: 0,
            mismatches: 0,
            first_errors: Vec::new(),
            cache: None,
            agent: Some(agent),
        };
        assert!(agent_problems(&[b(ok.clone())]).is_empty());
        let mut failed = ok.clone();
        failed.events.failed = 1;
        failed.first_event_error = Some("HTTP 409".into());
        let mut lost = ok.clone();
        lost.agent_destroyed = 2;
        let mut none = ok.clone();
        none.events.created = 0;
        let p = agent_problems(&[b(failed), b(lost), b(none)]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("1 failed events, the first: HTTP 409"),
            "{p:?}"
        );
        assert!(
            p[1].contains("counted 3 sandboxes created and 2 destroyed"),
            "{p:?}"
        );
        assert!(p[2].contains("no sandbox was announced"), "{p:?}");
    }
}
