//! The tests: one runner per family of tests, and the registry ([`TESTS`]) that names them.

use super::ctx::{counter, floor_record, gen_factory, print_line, summarise, Ctx};
use crate::cli::Opts;
use crate::driver::{self, Driver, DriverInfo, Op};
use crate::floor::{self, FloorSpec, FloorTransport};
use crate::keys::KeyChooser;
use crate::load::{self, LoadMode, LoadSpec, Stop};
use crate::local_cluster::{LocalCluster, LocalClusterConfig};
use crate::memory;
use crate::report::Record;
use crate::workloads::{chooser, Pattern, Ycsb};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Runs one test of a family: the test's name (the family's tests differ by it) and the context.
pub type Runner = fn(&str, &Ctx<'_>) -> Result<Vec<Record>>;

/// One test: its name (ClusterPerf's where one exists), what it measures, and its runner.
#[derive(Debug, Clone, Copy)]
pub struct TestDef {
    /// Name on the command line.
    pub name: &'static str,
    /// One line for `faascache-bench list`.
    pub description: &'static str,
    /// Runs it.
    pub run: Runner,
}

const fn test(name: &'static str, description: &'static str, run: Runner) -> TestDef {
    TestDef {
        name,
        description,
        run,
    }
}

/// Every test, in the order `list` shows them and `compare` runs them.
pub static TESTS: &[TestDef] = &[
    test("floor", "plain-socket ping-pong (TCP and UDP loopback), the physical floor, same polling mode", run_floor_test),
    test("echo", "no-op round trip through the system (Redis ECHO, memcached mn, FaaSCache echo RPC)", run_echo),
    test("readDist", "1 client reads one object repeatedly: latency distribution", run_dist),
    test("readDistRandom", "1 client reads uniformly random objects of a --keys table", run_dist),
    test("writeDist", "1 client overwrites one object repeatedly", run_dist),
    test("writeDistRandom", "1 client overwrites uniformly random objects", run_dist),
    test("readThroughput", "1..=--clients clients read random objects (pipelined with --pipeline): ops/s", run_throughput),
    test("writeThroughput", "1..=--clients clients overwrite random objects: ops/s", run_throughput),
    test("multiRead_oneMaster", "multi-read of N objects (MGET / multi-key get), N = --batch-sizes", run_multi),
    test("multiWrite_oneMaster", "multi-write of N objects (MSET / pipelined sets)", run_multi),
    test("readVaryingKeyLength", "read latency for key lengths 1..60000 B (--key-lengths)", run_key_length),
    test("writeVaryingKeyLength", "write latency for key lengths 1..60000 B", run_key_length),
    test("ycsbA", "YCSB A: 50 % read, 50 % update, zipfian", run_ycsb),
    test("ycsbB", "YCSB B: 95 % read, 5 % update, zipfian", run_ycsb),
    test("ycsbC", "YCSB C: 100 % read, zipfian", run_ycsb),
    test("ycsbD", "YCSB D: 95 % read, 5 % insert, latest", run_ycsb),
    test("ycsbE", "YCSB E: 95 % scan (1..100 records), 5 % insert, zipfian", run_ycsb),
    test("ycsbF", "YCSB F: 50 % read, 50 % read-modify-write, zipfian", run_ycsb),
    test("mix", "--read-fraction reads, the rest overwrites; keys uniform (--zipf 0) or zipfian (for cross-checks)", run_ycsb),
    test("memory", "RSS ÷ live bytes under FAST'14 size shifts W2, W3, W5, W8", run_memory_test),
];

/// The test named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static TestDef> {
    TESTS.iter().find(|t| t.name == name)
}

/// Runs one named test and returns its records.
pub fn run_test(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    match find(name) {
        Some(t) => (t.run)(name, ctx),
        None => bail!("unknown test {name:?}; `faascache-bench list` lists them"),
    }
}

fn run_floor_test(_name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    run_floor(ctx)
}

fn run_memory_test(_name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    run_memory(ctx)
}

fn run_echo(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
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

fn run_dist(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
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

fn run_throughput(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
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

fn run_multi(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
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

fn run_key_length(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
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

fn run_ycsb(name: &str, ctx: &Ctx<'_>) -> Result<Vec<Record>> {
    let o = ctx.opts;
    let ks = o.key_size;
    let w = if name == "mix" {
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
        Ycsb::core(name.chars().nth(4).unwrap_or('?'))
            .with_context(|| format!("unknown YCSB workload {name}"))?
    };
    let vs = ctx.value_size(if name == "mix" { 100 } else { 1000 });
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
            rec.notes.push(
                "scan = multi-get of 1..100 consecutive records (hash stores have no ordered scan)"
                    .into(),
            );
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
pub(super) fn run_memory_local(opts: &Opts) -> Result<(Vec<Record>, Option<DriverInfo>)> {
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
pub(super) fn restart_peer(cmd: &str, peer: &str, core: usize) -> Result<()> {
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
}
