//! The harness's results: metadata, per-backend outcomes, the cells, the table, `--json`, a CDF
//! plot of invocation times, and the assertions of the run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

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
    pub fn add_backend(&mut self, name: &str, o: Outcome, cache: Option<Summary>) {
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
}
