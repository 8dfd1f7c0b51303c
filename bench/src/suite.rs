//! Test definitions and the runner: turns options into measurements and records.

use crate::cli::{Opts, TESTS};
use crate::driver::{self, Driver, DriverInfo, DriverSpec, Op};
use crate::floor::{self, FloorSpec, FloorTransport};
use crate::hist::{LatencyHist, Spread};
use crate::keys::KeyChooser;
use crate::load::{self, LoadMode, LoadSpec, OpGen, RecordCount, RunResult, Stop};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};
use crate::memory;
use crate::report::{Metadata, Record, Report, RunRecord};
use crate::workloads::{chooser, preload, KvGen, Pattern, Ycsb};
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

/// Whether `name` is a known test.
pub fn is_test(name: &str) -> bool {
    TESTS.iter().any(|(n, _)| *n == name)
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
    fn driver(&self) -> Result<&dyn Driver> {
        self.driver.context("this test needs a driver")
    }

    fn value_size(&self, default: usize) -> usize {
        self.opts.value_size.unwrap_or(default)
    }

    fn stop(&self) -> Stop {
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

    fn load_data(&self, n: u64, value_size: usize) -> Result<()> {
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
    fn measure(
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

fn check_key_size(key_size: usize, n: u64) -> Result<()> {
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

fn gen_factory<'a>(
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

fn counter(n: u64) -> RecordCount {
    Arc::new(AtomicU64::new(n))
}

/// Runs one named test and returns its records.
pub fn run_test(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
    match name {
        "floor" => run_floor(ctx),
        "memory" => run_memory(ctx),
        "echo" => {
            let vs = ctx.value_size(100);
            let spec = ctx.spec(1, 1);
            let mut rec = ctx.base(name, format!("{vs}B"), &spec);
            rec.value_size = vs;
            let f = gen_factory(
                Pattern::Echo,
                KeyChooser::Single(0),
                ks,
                vs,
                counter(1),
                None,
                o.seed,
            );
            Ok(vec![ctx.measure(rec, &spec, &f)?])
        }
        "readDist" | "writeDist" | "readDistRandom" | "writeDistRandom" => {
            let vs = ctx.value_size(100);
            let random = name.ends_with("Random");
            let read = name.starts_with("read");
            let n = if random { o.keys } else { 1 };
            ctx.load_data(n, vs)?;
            let spec = ctx.spec(1, 1);
            let mut rec = ctx.base(name, format!("{vs}B value, {ks}B key"), &spec);
            rec.value_size = vs;
            rec.records = n;
            rec.read_fraction = if read { 1.0 } else { 0.0 };
            let ch = if random {
                KeyChooser::Uniform(n)
            } else {
                KeyChooser::Single(0)
            };
            rec.distribution = ch.describe();
            let f = gen_factory(
                if read { Pattern::Read } else { Pattern::Write },
                ch,
                ks,
                vs,
                counter(n),
                None,
                o.seed,
            );
            Ok(vec![ctx.measure(rec, &spec, &f)?])
        }
        "readThroughput" | "writeThroughput" => {
            let vs = ctx.value_size(100);
            let read = name.starts_with("read");
            ctx.load_data(o.keys, vs)?;
            let mut out = Vec::new();
            let ch = KeyChooser::Uniform(o.keys);
            let pattern = if read { Pattern::Read } else { Pattern::Write };
            for clients in 1..=o.clients.max(1) {
                let spec = ctx.spec(clients, o.pipeline);
                let f = gen_factory(
                    pattern.clone(),
                    ch.clone(),
                    ks,
                    vs,
                    counter(o.keys),
                    None,
                    o.seed,
                );
                let mk = |variant: String, spec: &LoadSpec| {
                    let mut rec = ctx.base(name, variant, spec);
                    rec.value_size = vs;
                    rec.records = o.keys;
                    rec.read_fraction = if read { 1.0 } else { 0.0 };
                    rec.distribution = ch.describe();
                    rec
                };
                if o.sweep {
                    out.extend(sweep(ctx, &spec, &f, &mk, &format!("clients={clients}"))?);
                } else {
                    out.push(ctx.measure(
                        mk(format!("clients={clients}, pipeline={}", o.pipeline), &spec),
                        &spec,
                        &f,
                    )?);
                }
            }
            Ok(out)
        }
        "multiRead_oneMaster" | "multiWrite_oneMaster" => {
            let vs = ctx.value_size(100);
            let read = name.starts_with("multiRead");
            let maxb = o.batch_sizes.iter().copied().max().unwrap_or(1) as u64;
            let n = o.keys.max(maxb);
            ctx.load_data(n, vs)?;
            let mut out = Vec::new();
            for &b in &o.batch_sizes {
                let spec = ctx.spec(1, 1);
                let mut rec = ctx.base(name, format!("objects={b}"), &spec);
                rec.value_size = vs;
                rec.records = n;
                rec.objects_per_op = b;
                rec.read_fraction = if read { 1.0 } else { 0.0 };
                rec.distribution = format!("{b} consecutive records from a uniform start");
                let pattern = if read {
                    Pattern::MultiRead(b)
                } else {
                    Pattern::MultiWrite(b)
                };
                let f = gen_factory(
                    pattern,
                    KeyChooser::Uniform(n),
                    ks,
                    vs,
                    counter(n),
                    None,
                    o.seed,
                );
                let mut r = ctx.measure(rec, &spec, &f)?;
                r.extra = serde_json::json!({ "latency_per_object_us": r.p50_us / b as f64 });
                out.push(r);
            }
            Ok(out)
        }
        "readVaryingKeyLength" | "writeVaryingKeyLength" => {
            let vs = ctx.value_size(100);
            let read = name.starts_with("read");
            let d = ctx.driver()?;
            let mut out = Vec::new();
            let mut skipped = Vec::new();
            for &kl in &o.key_lengths {
                if kl > d.max_key_len() || kl == 0 {
                    skipped.push(kl);
                    continue;
                }
                let key = random_key(kl, o.seed + kl as u64);
                write_one(d, ctx, &key, vs)?;
                let mut spec = ctx.spec(1, 1);
                // ClusterPerf: 1000 reads or 1 s per key length
                if o.ops.is_none() {
                    spec.stop = Stop::Time(Duration::from_secs_f64(o.duration.min(1.0)));
                    spec.warmup = Duration::from_secs_f64(o.warmup.min(0.1));
                }
                spec.progress = false;
                let mut rec = ctx.base(name, format!("keylen={kl}"), &spec);
                rec.key_size = kl;
                rec.value_size = vs;
                rec.records = 1;
                rec.read_fraction = if read { 1.0 } else { 0.0 };
                let f = gen_factory(
                    if read { Pattern::Read } else { Pattern::Write },
                    KeyChooser::Single(0),
                    kl,
                    vs,
                    counter(1),
                    Some(key),
                    o.seed,
                );
                let mut r = ctx.measure(rec, &spec, &f)?;
                r.extra = serde_json::json!({
                    "bandwidth_mb_s": (kl + vs) as f64 / r.p50_us.max(1e-9) * 1e6 / (1024.0 * 1024.0)
                });
                out.push(r);
            }
            if !skipped.is_empty() {
                eprintln!(
                    "  {}: key lengths {skipped:?} skipped (over the driver's limit of {} B)",
                    ctx.info.name,
                    d.max_key_len()
                );
                if let Some(r) = out.last_mut() {
                    r.notes.push(format!(
                        "key lengths {skipped:?} not supported by {}",
                        ctx.info.name
                    ));
                }
            }
            Ok(out)
        }
        y if (y.starts_with("ycsb") && y.len() == 5) || y == "mix" => {
            let w = if y == "mix" {
                if !(0.0..=1.0).contains(&o.read_fraction) {
                    bail!("--read-fraction must be in [0, 1]");
                }
                Ycsb {
                    name: 'M',
                    mix: crate::workloads::Mix {
                        read: o.read_fraction,
                        update: 1.0 - o.read_fraction,
                        ..Default::default()
                    },
                    distribution: "zipfian",
                }
            } else {
                Ycsb::core(y.chars().nth(4).unwrap_or('?'))
                    .with_context(|| format!("unknown YCSB workload {y}"))?
            };
            let vs = ctx.value_size(if y == "mix" { 100 } else { 1000 });
            ctx.load_data(o.keys, vs)?;
            let mut out = Vec::new();
            let clients = o.clients.max(1);
            let spec = ctx.spec(clients, o.pipeline);
            let ch = if o.zipf == 0.0 {
                KeyChooser::Uniform(o.keys)
            } else {
                chooser(w.distribution, o.keys, o.zipf)?
            };
            let mk = |variant: String, spec: &LoadSpec| {
                let mut rec = ctx.base(name, variant, spec);
                rec.value_size = vs;
                rec.records = o.keys;
                rec.read_fraction = w.mix.read;
                rec.distribution = ch.describe();
                rec.extra = serde_json::json!({ "mix": w.mix });
                if w.mix.scan > 0.0 {
                    rec.notes.push("scan = multi-get of 1..100 consecutive records (hash stores have no ordered scan)".into());
                }
                if w.mix.rmw > 0.0 {
                    rec.notes.push("read-modify-write = read, then write of the same key as the next request; per-class latencies in `classes`".into());
                }
                rec
            };
            // a fresh record counter per run: inserts start after the loaded records
            let records = counter(o.keys);
            let f = gen_factory(
                Pattern::Ycsb(w.mix),
                ch.clone(),
                ks,
                vs,
                records,
                None,
                o.seed,
            );
            if o.sweep {
                out.extend(sweep(ctx, &spec, &f, &mk, &format!("clients={clients}"))?);
            } else {
                out.push(ctx.measure(
                    mk(format!("clients={clients}, pipeline={}", o.pipeline), &spec),
                    &spec,
                    &f,
                )?);
            }
            Ok(out)
        }
        other => bail!("unknown test {other:?}; `faascache-bench list` lists them"),
    }
}

fn random_key(len: usize, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
        .collect()
}

fn write_one(d: &dyn Driver, ctx: &Ctx<'_>, key: &[u8], vs: usize) -> Result<()> {
    let mut c = d.connect(&driver::ClientConfig {
        poll: ctx.opts.poll,
        timeout: Duration::from_millis(ctx.opts.timeout_ms),
    })?;
    let mut v = Vec::new();
    crate::keys::make_value(1, vs, &mut v);
    c.send(&Op::Set { key, value: &v })?;
    c.flush()?;
    match c.recv(None)? {
        Some(driver::Reply::Error(e)) => bail!("write of a {}-byte key refused: {e}", key.len()),
        _ => Ok(()),
    }
}

/// Picks the knee of a sweep: the highest offered rate that was still served
/// (achieved ≥ 95 % of offered) with p99 ≤ 5 × the p99 at the lowest rate.
pub fn knee(points: &[(f64, f64, f64)]) -> Option<usize> {
    let base = points.first()?.2.max(1e-9);
    let mut best = None;
    for (i, &(offered, achieved, p99)) in points.iter().enumerate() {
        if achieved >= 0.95 * offered && p99 <= 5.0 * base {
            best = Some(i);
        } else {
            break;
        }
    }
    best
}

fn sweep(
    ctx: &Ctx<'_>,
    spec: &LoadSpec,
    f: &load::GenFactory<'_>,
    mk: &dyn Fn(String, &LoadSpec) -> Record,
    label: &str,
) -> Result<Vec<Record>> {
    // closed-loop maximum first
    let mut closed = spec.clone();
    closed.mode = LoadMode::Closed;
    let max = ctx.measure(mk(format!("{label}, closed-loop max"), &closed), &closed, f)?;
    let mut out = vec![max.clone()];
    let mut pts = Vec::new();
    for &frac in &ctx.opts.sweep_points {
        let rate = (max.ops_per_sec * frac).max(1.0);
        let mut open = spec.clone();
        open.mode = LoadMode::Open { rate };
        let r = ctx.measure(mk(format!("{label}, rate={rate:.0}"), &open), &open, f)?;
        pts.push((rate, r.ops_per_sec, r.p99_us));
        out.push(r);
    }
    let k = knee(&pts);
    let knee_rate = k.map(|i| pts[i].0);
    eprintln!(
        "  knee: {}",
        knee_rate
            .map(|r| format!("{r:.0} ops/s"))
            .unwrap_or_else(|| "below the lowest rate".into())
    );
    for r in out.iter_mut() {
        r.extra = serde_json::json!({ "sweep": label, "knee_ops_per_sec": knee_rate, "closed_loop_max_ops_per_sec": max.ops_per_sec });
    }
    Ok(out)
}

fn run_floor(ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let client_core = o
        .client_core
        .first()
        .copied()
        .or(if nproc >= 2 { Some(0) } else { None });
    let server_core = o.floor_server_core.or(client_core.map(|c| (c + 1) % nproc));
    let mut out = Vec::new();
    for t in &o.floor_transports {
        let transport = FloorTransport::parse(t)?;
        for &size in &o.floor_sizes {
            let spec = FloorSpec {
                transport,
                size,
                poll: o.poll,
                warmup: Duration::from_secs_f64(o.warmup.min(1.0)),
                duration: Duration::from_secs_f64(o.duration),
                client_core,
                server_core,
            };
            let mut runs = Vec::new();
            for _ in 0..o.runs() {
                runs.push(floor::run(&spec)?);
            }
            let mut rec = floor_record(o, &spec);
            summarise(&mut rec, &runs);
            print_line(&rec);
            out.push(rec);
        }
    }
    Ok(out)
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

fn run_memory(ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let d = ctx.driver()?;
    let mut out = Vec::new();
    for name in &o.memory_patterns {
        let p = memory::pattern(name)?;
        if let Some(cmd) = &o.restart_cmd {
            restart_peer(cmd, &ctx.info.name, o.server_core)?;
        }
        let m = memory::run(d, &p, o.live_mb << 20, o.key_size, o.seed)?;
        let mut rec = memory_record(ctx, &p, &m)?;
        if o.restart_cmd.is_none() {
            rec.notes.push("peer not restarted before the pattern: RSS includes memory kept from earlier data; see rss_growth_per_live".into());
        }
        out.push(rec);
    }
    Ok(out)
}

/// The memory test on a private FaaSCache cluster: a fresh cluster per pattern whose server
/// gets `--fc-memory-factor × --live-mb` of log memory.
fn run_memory_local(opts: &Opts) -> Result<(Vec<Record>, Option<DriverInfo>)> {
    let mut out = Vec::new();
    let mut last_info = None;
    let mem = ((opts.live_mb as f64 * opts.fc_memory_factor).ceil() as u64).max(32) << 20;
    for name in &opts.memory_patterns {
        let p = memory::pattern(name)?;
        let mut cfg = LocalClusterConfig::new(&opts.fc_poll, Some(opts.server_core))?;
        cfg.memory_bytes = mem;
        let cluster = LocalCluster::start(&cfg)?;
        let d = crate::drivers::faascache_kv::KvDriver::new(
            cluster.coordinator(),
            Some(cluster.server_pid()),
        )?;
        let mut info = d.info();
        info.notes.push(cluster.description.clone());
        let ctx = Ctx {
            opts,
            driver: Some(&d),
            info: info.clone(),
        };
        let m = memory::run(&d, &p, opts.live_mb << 20, opts.key_size, opts.seed)?;
        let mut rec = memory_record(&ctx, &p, &m)?;
        rec.notes.push(format!(
            "fresh cluster per pattern; server log memory {} MiB = {} × live data",
            mem >> 20,
            opts.fc_memory_factor
        ));
        out.push(rec);
        last_info = Some(info);
    }
    Ok((out, last_info))
}

/// Restarts a peer with the `compare` restart command, pinned to `core` unless
/// `REDIS_CORE` / `MEMCACHED_CORE` say otherwise.
fn restart_peer(cmd: &str, peer: &str, core: usize) -> Result<()> {
    let c = cmd.replace("{peer}", peer);
    eprintln!("  restarting peer: {c}");
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(&c);
    for var in ["REDIS_CORE", "MEMCACHED_CORE"] {
        if std::env::var_os(var).is_none() {
            command.env(var, core.to_string());
        }
    }
    let st = command.status()?;
    if !st.success() {
        bail!("restart command failed: {c}");
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn memory_record(ctx: &Ctx<'_>, p: &memory::Pattern, m: &memory::MemoryResult) -> Result<Record> {
    let o = ctx.opts;
    eprintln!(
        "  memory {:<3} {:<10} live {:>6.1} MiB in {:>8} objects, RSS {:>7.1} MiB (baseline {:.1}): RSS/live {:.2}, growth/live {:.2}{}",
        m.pattern,
        ctx.info.name,
        m.live_bytes as f64 / 1048576.0,
        m.live_objects,
        m.rss_bytes as f64 / 1048576.0,
        m.rss_baseline_bytes as f64 / 1048576.0,
        m.rss_per_live,
        m.rss_growth_per_live,
        if m.refused > 0 { format!(", {} writes refused", m.refused) } else { String::new() }
    );
    let mut rec = Record {
        test: "memory".into(),
        variant: p.name.into(),
        driver: ctx.info.name.clone(),
        transport: ctx.info.transport.clone(),
        poll: "block".into(),
        load: "load".into(),
        clients: 1,
        pipeline: 128,
        key_size: o.key_size,
        value_size: p.after.1,
        records: m.live_objects,
        distribution: format!(
            "{}-{} B → {}-{} B, {:.0} % deleted first",
            p.before.0,
            p.before.1,
            p.after.0,
            p.after.1,
            p.delete_fraction * 100.0
        ),
        extra: serde_json::to_value(m)?,
        ..Default::default()
    };
    rec.errors = m.refused;
    Ok(rec)
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
    let d = driver::open(&spec, opts.server_pid)?;
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
        let d = match driver::open(&spec, None) {
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

    #[test]
    fn knee_detection() {
        // offered, achieved, p99
        let pts = [
            (1000.0, 1000.0, 50.0),
            (5000.0, 4990.0, 60.0),
            (9000.0, 8950.0, 200.0),
            (12000.0, 9500.0, 5000.0),
        ];
        assert_eq!(knee(&pts), Some(2));
        let pts2 = [(1000.0, 1000.0, 50.0), (5000.0, 4990.0, 300.0)];
        assert_eq!(knee(&pts2), Some(0));
        assert_eq!(knee(&[]), None);
        assert_eq!(knee(&[(10.0, 1.0, 5.0)]), None);
    }

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
        for (t, _) in TESTS {
            assert!(is_test(t));
        }
        assert!(!is_test("nope"));
    }
}
