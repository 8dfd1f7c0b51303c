//! What every test shares: the context ([`Ctx`]: options, driver, its facts), load specs and
//! records built from it, measuring and summarising runs, and the report's metadata. A leaf of
//! the suite: drivers that run tests themselves (the in-process FaaSCache echo) use it without
//! depending on the suite's registry.

use crate::cli::Opts;
use crate::driver::{Driver, DriverInfo, DriverSpec};
use crate::floor::FloorSpec;
use crate::hist::{LatencyHist, Spread};
use crate::keys::KeyChooser;
use crate::load::{self, LoadMode, LoadSpec, OpGen, RecordCount, RunResult, Stop};
use crate::report::{Metadata, Record, RunRecord};
use crate::workloads::{preload, KvGen, Pattern};
use anyhow::{bail, Context, Result};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Everything a test needs.
pub struct Ctx<'a> {
    /// options
    pub opts: &'a Opts,
    /// the system under test (None for `floor`)
    pub driver: Option<&'a dyn Driver>,
    /// its facts
    pub info: DriverInfo,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("info", &self.info).finish()
    }
}

/// Resolves the driver spec from the options.
pub fn driver_spec(opts: &Opts, driver_arg: &str) -> Result<DriverSpec> {
    if let Some(d) = &opts.dir {
        return Ok(DriverSpec::FaasCacheDir(d.clone()));
    }
    if let Some(c) = &opts.coordinator {
        return Ok(DriverSpec::FaasCacheCoordinator(c.clone()));
    }
    DriverSpec::parse(driver_arg)
}

impl Ctx<'_> {
    pub(crate) fn driver(&self) -> Result<&dyn Driver> {
        self.driver.context("this test needs a driver")
    }

    pub(crate) fn value_size(&self, default: usize) -> usize {
        self.opts.value_size.unwrap_or(default)
    }

    pub(crate) fn stop(&self) -> Stop {
        match self.opts.ops {
            Some(n) => Stop::Ops(n),
            None => Stop::Time(Duration::from_secs_f64(self.opts.duration)),
        }
    }

    pub(crate) fn spec(&self, clients: usize, pipeline: usize) -> LoadSpec {
        LoadSpec {
            clients,
            pipeline,
            mode: match self.opts.rate {
                Some(rate) => LoadMode::Open { rate },
                None => LoadMode::Closed,
            },
            warmup: Duration::from_secs_f64(self.opts.warmup),
            stop: self.stop(),
            poll: self.opts.poll,
            client_cores: self.opts.client_core.clone(),
            timeout: Duration::from_millis(self.opts.timeout_ms),
            seed: self.opts.seed,
            progress: !self.opts.quiet,
            max_outstanding: 1024,
            server_pid: self.driver.and_then(|d| d.server_pid()),
        }
    }

    pub(crate) fn base(&self, test: &str, variant: String, spec: &LoadSpec) -> Record {
        Record {
            test: test.to_string(),
            variant,
            driver: self.info.name.clone(),
            transport: self.info.transport.clone(),
            poll: spec.poll.as_str().to_string(),
            load: match spec.mode {
                LoadMode::Closed => "closed".into(),
                LoadMode::Open { .. } => "open".into(),
            },
            clients: spec.clients,
            pipeline: if matches!(spec.mode, LoadMode::Closed) {
                spec.pipeline
            } else {
                1
            },
            key_size: self.opts.key_size,
            objects_per_op: 1,
            extra: serde_json::Value::Null,
            ..Default::default()
        }
    }

    pub(crate) fn load_data(&self, n: u64, value_size: usize) -> Result<()> {
        if self.opts.no_load {
            return Ok(());
        }
        check_key_size(self.opts.key_size, n)?;
        eprintln!(
            "  loading {n} records ({} B keys, {value_size} B values) into {}",
            self.opts.key_size, self.info.name
        );
        preload(
            self.driver()?,
            n,
            self.opts.key_size,
            value_size,
            self.opts.poll,
        )
    }

    /// Runs `spec` `runs` times with generators from `make`, and summarises.
    pub(crate) fn measure(
        &self,
        mut rec: Record,
        spec: &LoadSpec,
        make: &load::GenFactory<'_>,
    ) -> Result<Record> {
        let d = self.driver()?;
        let mut runs = Vec::new();
        for i in 0..self.opts.runs() {
            let mut s = spec.clone();
            s.seed = spec.seed.wrapping_add(1000 * i as u64);
            runs.push(load::run(d, make, &s)?);
        }
        summarise(&mut rec, &runs);
        print_line(&rec);
        Ok(rec)
    }
}

pub(crate) fn check_key_size(key_size: usize, n: u64) -> Result<()> {
    let need = crate::keys::min_key_len(n);
    if key_size < need {
        bail!("--key-size {key_size} is too short for {n} records: need at least {need}");
    }
    Ok(())
}

/// Fills the summary fields of `rec` from runs.
pub fn summarise(rec: &mut Record, runs: &[RunResult]) {
    let mut merged = LatencyHist::new();
    let mut classes: Vec<(crate::load::OpClass, LatencyHist)> = Vec::new();
    let (mut p50, mut p90, mut p99, mut p999, mut ops, mut objs, mut cpu, mut ccpu) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    rec.runs.clear();
    rec.max_us = 0.0;
    for r in runs {
        let s = r.hist.summary();
        merged.merge(&r.hist);
        for (c, h) in &r.classes {
            match classes.iter_mut().find(|(k, _)| k == c) {
                Some((_, m)) => m.merge(h),
                None => classes.push((*c, h.clone())),
            }
        }
        p50.push(s.p50_us);
        p90.push(s.p90_us);
        p99.push(s.p99_us);
        p999.push(s.p999_us);
        rec.max_us = rec.max_us.max(s.max_us);
        ops.push(r.ops_per_sec);
        objs.push(r.objects_per_sec);
        if let Some(c) = r.server_cpu {
            cpu.push(c);
        }
        if let Some(c) = r.client_cpu {
            ccpu.push(c);
        }
        rec.errors += r.errors;
        rec.misses += r.misses;
        if rec.first_error.is_none() {
            rec.first_error.clone_from(&r.first_error);
        }
        if rec.offered_ops_per_sec.is_none() {
            rec.offered_ops_per_sec = r.offered_ops_per_sec;
        }
        rec.runs.push(RunRecord {
            summary: s,
            ops_per_sec: r.ops_per_sec,
            server_cpu: r.server_cpu,
            elapsed_s: r.elapsed_s,
        });
    }
    let med = crate::hist::median;
    rec.p50_us = med(&p50);
    rec.p90_us = med(&p90);
    rec.p99_us = med(&p99);
    rec.p999_us = med(&p999);
    rec.ops_per_sec = med(&ops);
    rec.objects_per_sec = med(&objs);
    rec.server_cpu = (!cpu.is_empty()).then(|| med(&cpu));
    rec.client_cpu = (!ccpu.is_empty()).then(|| med(&ccpu));
    rec.p50_spread = Spread::of(&p50);
    rec.p99_spread = Spread::of(&p99);
    rec.ops_spread = Spread::of(&ops);
    rec.cdf = merged.cdf(100);
    rec.classes = classes
        .iter()
        .map(|(c, h)| (c.as_str().to_string(), h.summary()))
        .collect();
    if merged.len() < 10_000 && rec.p999_us > 0.0 {
        rec.notes.push(format!(
            "only {} samples: p99.9 is not well resolved",
            merged.len()
        ));
    }
}

pub(crate) fn print_line(r: &Record) {
    eprintln!(
        "  {:<22} {:<10} {:<18} p50 {:>8.1} µs  p99 {:>8.1}  p99.9 {:>8.1}  {:>10.0} ops/s{}  server CPU {}  (runs {}, p50 {:.1}–{:.1}){}",
        r.test,
        r.driver,
        r.variant,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        r.ops_per_sec,
        r.offered_ops_per_sec.map(|o| format!(" of {o:.0}")).unwrap_or_default(),
        r.server_cpu.map(|c| format!("{:.0} %", c * 100.0)).unwrap_or_else(|| "–".into()),
        r.runs.len(),
        r.p50_spread.min,
        r.p50_spread.max,
        if r.errors + r.misses > 0 { format!("  errors {} misses {}", r.errors, r.misses) } else { String::new() }
    );
}

pub(crate) fn gen_factory<'a>(
    pattern: Pattern,
    ch: KeyChooser,
    key_size: usize,
    value_size: usize,
    records: RecordCount,
    fixed_key: Option<Vec<u8>>,
    seed: u64,
) -> impl Fn(usize) -> Result<Box<dyn OpGen>> + Sync + 'a {
    move |t| {
        let g = KvGen::new(
            pattern.clone(),
            ch.clone(),
            key_size,
            value_size,
            records.clone(),
            seed + t as u64,
        );
        Ok(Box::new(match &fixed_key {
            Some(k) => g.with_fixed_key(k.clone()),
            None => g,
        }) as Box<dyn OpGen>)
    }
}

pub(crate) fn counter(n: u64) -> RecordCount {
    Arc::new(AtomicU64::new(n))
}

/// An empty floor record for `spec` (fill it with [`summarise`]).
pub(crate) fn floor_record(o: &Opts, spec: &FloorSpec) -> Record {
    let mut rec = Record {
        test: "floor".into(),
        variant: format!("{}/{}B", spec.transport.as_str(), spec.size),
        driver: "floor".into(),
        transport: format!("{}:127.0.0.1 loopback", spec.transport.as_str()),
        poll: o.poll.as_str().into(),
        load: "closed".into(),
        clients: 1,
        pipeline: 1,
        value_size: spec.size,
        objects_per_op: 1,
        extra: serde_json::json!({ "client_core": spec.client_core, "server_core": spec.server_core }),
        ..Default::default()
    };
    rec.notes.push("server_cpu = CPU of the echo thread".into());
    rec
}

/// Environment facts: tool versions.
pub fn environment() -> Vec<(String, String)> {
    let mut env = Vec::new();
    let run = |cmd: &str, args: &[&str]| -> Option<String> {
        let o = std::process::Command::new(cmd).args(args).output().ok()?;
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    if let Some(v) = run("redis-server", &["--version"]) {
        env.push(("redis-server".into(), v));
    }
    if let Some(v) = run("memcached", &["-V"]) {
        env.push(("memcached".into(), v));
    }
    if let Some(v) = run("rustc", &["--version"]) {
        env.push(("rustc".into(), v));
    }
    env.push((
        "harness build".into(),
        if cfg!(debug_assertions) {
            "debug".into()
        } else {
            "release".into()
        },
    ));
    env
}

/// Metadata for a report.
pub fn metadata(opts: &Opts, drivers: Vec<DriverInfo>) -> Metadata {
    let git_commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Metadata {
        harness: format!("faascache-bench {}", env!("CARGO_PKG_VERSION")),
        git_commit,
        started: crate::procinfo::utc_now(),
        command: std::env::args().collect(),
        machine: crate::procinfo::Machine::detect(),
        client_poll: opts.poll.as_str().into(),
        client_cores: opts.client_core.clone(),
        options: serde_json::to_value(opts).unwrap_or_default(),
        drivers,
        environment: environment(),
    }
}
