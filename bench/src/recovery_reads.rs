//! `faascache-bench recoveryReads`: read latency on a node while its backup serves a recovery
//! (issue 15), before and during, in the same run.
//!
//! Against a running cluster (`--coordinator`/`--dir`) in which `--recovery-reader` (node X) and
//! `--recovery-victim` (node V, process `--recovery-victim-pid`) are servers:
//!
//! 1. creates tables (`recoveryReads-N`, one tablet each) until one is on X and one on V;
//! 2. fills V's table with `--recovery-fill-mb` MiB of `--value-size` objects (pipelined writes);
//!    (`--recovery-wait-masters N`: then waits for N masters up, e.g. one started after the fill);
//! 3. reads one object of X's table in a tight loop (one client, `--poll`) for
//!    `--recovery-before` seconds, then SIGKILLs V and reads on, while a second client polls the
//!    server list every 20 ms to mark the phases: *detection* (kill → V listed crashed),
//!    *replay* (crashed → V's tablets served elsewhere and V gone from the list: the backups
//!    read V's replicas, the recovery masters replay them) and *after* (`--recovery-after` s);
//! 4. prints p50/p99/p99.9/max and the count of each phase, and checks that sampled objects of
//!    V's table read back after the recovery.
//!
//! Which servers serve V's replicas and which replay them is the cluster's choice (every up
//! master is a recovery master); the script `scripts/bench-recovery-reads.sh` builds a cluster
//! in which all of V's replicas are on X.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faascache_client::{Client, ClientOptions, TableId};
use faascache_transport as transport;

use crate::cli::Opts;
use crate::hist::LatencyHist;
use crate::net::PollMode;

/// Writes in flight while filling.
const FILL_WINDOW: usize = 32;
/// Most tables created while looking for one on each node.
const MAX_TABLES: usize = 16;
/// How long the replay may take before the run gives up.
const REPLAY_LIMIT: Duration = Duration::from_secs(600);

/// The phases of a run, in order.
const PHASES: [&str; 4] = ["before the crash", "detection", "replay", "after"];

/// When the phases began (offsets from the start of the reads).
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    killed: Option<Instant>,
    crashed: Option<Instant>,
    recovered: Option<Instant>,
}

impl Marks {
    fn phase(&self, t: Instant) -> usize {
        match (self.killed, self.crashed, self.recovered) {
            (Some(k), _, _) if t < k => 0,
            (None, _, _) => 0,
            (_, Some(c), _) if t < c => 1,
            (_, None, _) => 1,
            (_, _, Some(r)) if t < r => 2,
            (_, _, None) => 2,
            _ => 3,
        }
    }
}

fn coordinator_locator(opts: &Opts) -> Result<String> {
    match (&opts.coordinator, &opts.dir) {
        (Some(l), _) => Ok(l.clone()),
        (None, Some(d)) => faascache_client::cli::locator_from_dir(std::path::Path::new(d))
            .map_err(|e| anyhow::anyhow!(e)),
        (None, None) => bail!("recoveryReads needs --coordinator or --dir"),
    }
}

/// A table with one tablet on `reader` and one on `victim` (created as needed).
fn tables_on(c: &Client, reader: &str, victim: &str) -> Result<(TableId, TableId)> {
    let (mut on_reader, mut on_victim) = (None, None);
    for i in 0..MAX_TABLES {
        let name = format!("recoveryReads-{i}");
        let t = c.create_table(&name, 1).context("creating a table")?;
        let owner = c.tablets(t)?.first().map(|x| x.master.clone());
        match owner.as_deref() {
            Some(o) if o == reader && on_reader.is_none() => on_reader = Some(t),
            Some(o) if o == victim && on_victim.is_none() => on_victim = Some(t),
            _ => {}
        }
        if let (Some(r), Some(v)) = (on_reader, on_victim) {
            return Ok((r, v));
        }
    }
    bail!("no table landed on {reader} and on {victim} after {MAX_TABLES} tries: are both servers up masters?")
}

fn key(i: u64, size: usize) -> Vec<u8> {
    format!("{i:0size$}").into_bytes()
}

/// Fills `table` with `n` objects, `FILL_WINDOW` writes in flight.
fn fill(c: &Client, table: TableId, n: u64, key_size: usize, value: &[u8]) -> Result<()> {
    let mut q = std::collections::VecDeque::with_capacity(FILL_WINDOW);
    for i in 0..n {
        if q.len() == FILL_WINDOW {
            let p: faascache_client::Pending<u64> = q.pop_front().expect("full");
            p.wait().context("filling the victim")?;
        }
        q.push_back(c.write_async(table, &key(i, key_size), value)?);
    }
    for p in q {
        p.wait().context("filling the victim")?;
    }
    Ok(())
}

/// Waits until `n` masters are up (then 1 s more, for their replication to settle).
fn wait_masters(c: &Client, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = c
            .servers()?
            .iter()
            .filter(|s| s.status == "up" && s.services.contains("master"))
            .count();
        if up >= n {
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{up} masters up after 60 s, waiting for {n}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The watcher: after the kill, polls the server list and the tablet map to mark when the
/// victim is listed crashed and when its tablets are served elsewhere and it is removed.
fn spawn_watcher(
    admin: Client,
    marks: Arc<Mutex<Marks>>,
    stop: Arc<AtomicBool>,
    victim_loc: String,
    filled: TableId,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || -> Result<()> {
        while marks.lock().map(|m| m.killed.is_none()).unwrap_or(true) {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        while !stop.load(Ordering::Acquire) {
            let servers = admin.servers().unwrap_or_default();
            let v = servers.iter().find(|s| s.locator == victim_loc);
            let listed_up = v.is_some_and(|s| s.status == "up");
            let on_victim = admin
                .tablets(filled)
                .map(|ts| ts.iter().any(|t| t.master == victim_loc))
                .unwrap_or(true);
            let now = Instant::now();
            let mut m = marks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if !listed_up && m.crashed.is_none() {
                m.crashed = Some(now);
            }
            // Recovery ends with the tablets served elsewhere and the server removed.
            let removed = v.is_none_or(|s| s.status == "removed");
            if m.crashed.is_some() && !on_victim && removed && m.recovered.is_none() {
                m.recovered = Some(now);
                return Ok(());
            }
            drop(m);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })
}

/// What `report` checks after the recovery.
struct Checked<'a> {
    filled: TableId,
    n: u64,
    key_size: usize,
    value: &'a [u8],
    fill_mb: u64,
}

/// Checks that the recovered data reads back and prints the phases' table.
fn report(
    client: &Client,
    c: &Checked<'_>,
    m: &Marks,
    victim_loc: &str,
    reader_loc: &str,
    hists: &[LatencyHist],
    failed: &[u64; 4],
) -> Result<()> {
    let (filled, n, value) = (c.filled, c.n, c.value);
    // The recovered data reads back.
    for i in (0..n).step_by((n as usize / 100).max(1)) {
        let o = client
            .read(filled, &key(i, c.key_size))
            .with_context(|| format!("object {i} of the crashed master after its recovery"))?;
        if o.value != value {
            bail!("object {i} of the crashed master came back wrong after its recovery");
        }
    }
    let (Some(killed), Some(crashed), Some(recovered)) = (m.killed, m.crashed, m.recovered) else {
        bail!("the run ended without a kill, a crash and a recovery mark: {m:?}");
    };
    println!(
        "recovery of {victim_loc} ({n} objects, {} MiB): detected {:.2} s after the kill, replay {:.2} s",
        c.fill_mb,
        (crashed - killed).as_secs_f64(),
        (recovered - crashed).as_secs_f64()
    );
    println!("| reads of one object on {reader_loc} | reads | failed | p50 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, h) in hists.iter().enumerate() {
        let s = h.summary();
        println!(
            "| {} | {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            PHASES[i], s.samples, failed[i], s.p50_us, s.p99_us, s.p999_us, s.max_us
        );
    }
    Ok(())
}

/// Runs `recoveryReads`; prints the table and returns the per-phase histograms.
pub fn run(opts: &Opts) -> Result<Vec<LatencyHist>> {
    let locator = coordinator_locator(opts)?;
    let reader_loc = opts
        .recovery_reader
        .clone()
        .context("recoveryReads needs --recovery-reader LOCATOR (node X)")?;
    let victim_loc = opts
        .recovery_victim
        .clone()
        .context("recoveryReads needs --recovery-victim LOCATOR (node V)")?;
    let victim_pid = opts
        .recovery_victim_pid
        .context("recoveryReads needs --recovery-victim-pid PID (node V's process)")?;
    let value_size = opts.value_size.unwrap_or(1000);
    let poll = match opts.poll {
        PollMode::Busy => transport::PollMode::Spin,
        PollMode::Block => transport::PollMode::Block,
    };
    let timeout = Duration::from_millis(opts.timeout_ms);
    let client = Client::connect_with(
        &locator,
        ClientOptions::default()
            .timeout(timeout)
            .transport(transport::ClientConfig {
                poll,
                ..transport::ClientConfig::default()
            }),
    )?;
    let admin = Client::connect(&locator)?;
    let (reads, filled) = tables_on(&admin, &reader_loc, &victim_loc)?;
    let n = opts.recovery_fill_mb * 1024 * 1024 / (value_size + opts.key_size) as u64;
    let value = vec![b'v'; value_size];
    eprintln!(
        "filling {victim_loc} with {n} objects of {value_size} B ({} MiB)",
        opts.recovery_fill_mb
    );
    let t = Instant::now();
    fill(&client, filled, n, opts.key_size, &value)?;
    eprintln!("filled in {:.1} s", t.elapsed().as_secs_f64());
    wait_masters(&admin, opts.recovery_wait_masters)?;
    let rkey = key(0, opts.key_size);
    client.write(reads, &rkey, &value)?;

    // The phase marks, set by the watcher thread.
    let marks = Arc::new(Mutex::new(Marks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = spawn_watcher(
        admin,
        marks.clone(),
        stop.clone(),
        victim_loc.clone(),
        filled,
    );

    let mut hists: Vec<LatencyHist> = PHASES.iter().map(|_| LatencyHist::new()).collect();
    let mut failed = [0u64; 4];
    let start = Instant::now();
    let before = Duration::from_secs_f64(opts.recovery_before);
    let after = Duration::from_secs_f64(opts.recovery_after);
    let mut m = Marks::default();
    loop {
        let now = Instant::now();
        if m.killed.is_none() && now - start >= before {
            let ok = std::process::Command::new("kill")
                .args(["-KILL", &victim_pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                stop.store(true, Ordering::Release);
                bail!("kill -KILL {victim_pid} failed");
            }
            if let Ok(mut g) = marks.lock() {
                g.killed = Some(Instant::now());
            }
        }
        if let Ok(g) = marks.lock() {
            m = *g;
        }
        if let Some(r) = m.recovered {
            if now - r >= after {
                break;
            }
        }
        if m.killed.is_some_and(|k| now - k > REPLAY_LIMIT) {
            stop.store(true, Ordering::Release);
            bail!("the recovery did not end within {REPLAY_LIMIT:?}");
        }
        let t0 = Instant::now();
        let r = client.read(reads, &rkey);
        let took = t0.elapsed();
        let phase = m.phase(t0);
        match r {
            Ok(_) => hists[phase].record(took),
            Err(_) => failed[phase] += 1,
        }
    }
    stop.store(true, Ordering::Release);
    let _ = watcher.join();

    report(
        &client,
        &Checked {
            filled,
            n,
            key_size: opts.key_size,
            value: &value,
            fill_mb: opts.recovery_fill_mb,
        },
        &m,
        &victim_loc,
        &reader_loc,
        &hists,
        &failed,
    )?;
    Ok(hists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_marks() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = Marks::default();
        assert_eq!(m.phase(t), 0);
        m.killed = Some(t + s);
        assert_eq!(m.phase(t), 0);
        assert_eq!(m.phase(t + s), 1);
        m.crashed = Some(t + 2 * s);
        assert_eq!(m.phase(t + s), 1);
        assert_eq!(m.phase(t + 2 * s), 2);
        m.recovered = Some(t + 3 * s);
        assert_eq!(m.phase(t + 2 * s), 2);
        assert_eq!(m.phase(t + 3 * s), 3);
    }
}
