//! `faascache-bench churn`: client churn as a FaaS platform makes it (issue 14).
//!
//! N short-lived clients (`--churn-clients`, default 1,000,000), P at a time
//! (`--churn-parallel` threads): each connects a new [`faascache_client::Client`], makes one
//! tracked write (so it takes a client lease) and drops the client (which releases the lease).
//! Then one long-lived client writes `--churn-writes` times. Every write's result is counted;
//! the masters' exactly-once state (`GetServerInfo`: clients, saved results, bytes) is printed
//! before, every `--churn-report` seconds during, and at the end.
//!
//! Exit status non-zero if any write failed, or if the exactly-once bytes at the end (after
//! up to `--churn-settle` seconds for the masters to drop the state of released leases) exceed
//! `--churn-max-eo-bytes`. Against `--coordinator`/`--dir`, or a private local cluster (one
//! server, `--churn-lease-term` passed to its coordinator).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faascache_client::{Client, ClientOptions};
use std::sync::Mutex;

use crate::cli::Opts;
use crate::local_cluster::{LocalCluster, LocalClusterConfig};

/// Most distinct keys the churn writes (its data stays small however many clients run).
const KEYS: u64 = 4096;
/// Most failure messages kept for the report.
const KEEP_ERRORS: usize = 5;

/// The masters' exactly-once state, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EoState {
    /// Clients with saved results.
    pub clients: u64,
    /// Saved results.
    pub results: u64,
    /// Bytes.
    pub bytes: u64,
}

impl std::fmt::Display for EoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "eo_clients {} eo_results {} eo_bytes {}",
            self.clients, self.results, self.bytes
        )
    }
}

/// What a churn run measured.
#[derive(Debug, Clone, Default)]
pub struct ChurnOutcome {
    /// Short-lived clients whose write succeeded.
    pub clients_ok: u64,
    /// Short-lived clients that failed (connect, lease or write).
    pub clients_failed: u64,
    /// Short-lived clients per second.
    pub clients_per_s: f64,
    /// Long-lived client's writes that succeeded / failed.
    pub writes_ok: u64,
    /// Failed writes of the long-lived client.
    pub writes_failed: u64,
    /// Exactly-once state before, at the end of the churn, and at the very end.
    pub before: EoState,
    /// After the churn.
    pub after_churn: EoState,
    /// At the end (after settling).
    pub end: EoState,
    /// The first failures.
    pub errors: Vec<String>,
}

/// The masters' exactly-once state now (masters that do not answer are skipped, with a note).
pub fn eo_state(c: &Client) -> Result<EoState> {
    let mut s = EoState::default();
    for srv in c.servers()? {
        if srv.status != "up" || !srv.services.contains("master") {
            continue;
        }
        match c.server_stats(&srv.locator) {
            Ok(st) => {
                s.clients += st.eo_clients;
                s.results += st.eo_results;
                s.bytes += st.eo_bytes;
            }
            Err(e) => eprintln!("churn: server {} did not report: {e}", srv.locator),
        }
    }
    Ok(s)
}

fn one_client(locator: &str, opts: &ClientOptions, i: u64) -> Result<(), faascache_client::Error> {
    let c = Client::connect_with(locator, opts.clone())?;
    let t = c.table_id("churn")?;
    c.write(t, format!("c{}", i % KEYS).as_bytes(), &i.to_le_bytes())?;
    Ok(())
}

/// Runs the churn (see the module doc); `Err` if the run itself could not start.
pub fn run(opts: &Opts) -> Result<ChurnOutcome> {
    let mut _local = None;
    let locator = match (&opts.coordinator, &opts.dir) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => faascache_client::cli::locator_from_dir(std::path::Path::new(d))?,
        (None, None) => {
            let mut cfg = LocalClusterConfig::new("block", None)?;
            cfg.coordinator_args = vec![
                "--client-lease-term".into(),
                format!("{}ms", (opts.churn_lease_term * 1000.0).round().max(1.0)),
            ];
            let lc = LocalCluster::start(&cfg)?;
            eprintln!("churn: {}", lc.description);
            let loc = lc.coordinator().to_string();
            _local = Some(lc);
            loc
        }
    };
    let mut copts = ClientOptions::default().timeout(Duration::from_millis(opts.timeout_ms));
    if opts.poll == crate::net::PollMode::Block {
        // More churning threads than cores: waiting clients sleep instead of spinning on
        // recv, leaving the cores to the coordinator and the master.
        copts = copts.transport(faascache_transport::ClientConfig {
            poll: faascache_transport::PollMode::Block,
            ..faascache_transport::ClientConfig::default()
        });
    }
    let admin = Client::connect_with(&locator, copts.clone()).context("connecting")?;
    admin.create_table("churn", 1)?;
    let mut out = ChurnOutcome {
        before: eo_state(&admin)?,
        ..ChurnOutcome::default()
    };
    println!("before: {}", out.before);
    let n = opts.churn_clients;
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let workers: Vec<_> = (0..opts.churn_parallel.max(1))
        .map(|w| {
            let (next, ok, failed, errors) =
                (next.clone(), ok.clone(), failed.clone(), errors.clone());
            let (locator, copts) = (locator.clone(), copts.clone());
            std::thread::Builder::new()
                .name(format!("churn-{w}"))
                .spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    match one_client(&locator, &copts, i) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut g = errors.lock().unwrap_or_else(|e| e.into_inner());
                            if g.len() < KEEP_ERRORS {
                                g.push(format!("client {i}: {e}"));
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                })
                .context("starting a churn thread")
        })
        .collect::<Result<_>>()?;
    let every = Duration::from_secs_f64(opts.churn_report.max(0.1));
    let mut last = Instant::now();
    while workers
        .iter()
        .any(|w: &std::thread::JoinHandle<()>| !w.is_finished())
    {
        std::thread::sleep(Duration::from_millis(50).min(every));
        if last.elapsed() >= every {
            last = Instant::now();
            let done = ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
            let rate = done as f64 / start.elapsed().as_secs_f64();
            match eo_state(&admin) {
                Ok(s) => println!("during: {done}/{n} clients ({rate:.0} clients/s), {s}"),
                Err(e) => {
                    println!("during: {done}/{n} clients ({rate:.0} clients/s), no state: {e}")
                }
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let took = start.elapsed().as_secs_f64();
    out.clients_ok = ok.load(Ordering::Relaxed);
    out.clients_failed = failed.load(Ordering::Relaxed);
    out.clients_per_s = (out.clients_ok + out.clients_failed) as f64 / took.max(1e-9);
    out.after_churn = eo_state(&admin)?;
    println!(
        "churn: {} clients in {took:.1} s ({:.0} clients/s), {} failed; {}",
        out.clients_ok + out.clients_failed,
        out.clients_per_s,
        out.clients_failed,
        out.after_churn
    );
    // The long-lived client.
    let t = admin.table_id("churn")?;
    for i in 0..opts.churn_writes {
        match admin.write(t, format!("long{}", i % KEYS).as_bytes(), &i.to_le_bytes()) {
            Ok(_) => out.writes_ok += 1,
            Err(e) => {
                if out.writes_failed == 0 {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("long-lived write {i}: {e}"));
                }
                out.writes_failed += 1;
            }
        }
    }
    println!(
        "long-lived client: {} writes ok, {} failed",
        out.writes_ok, out.writes_failed
    );
    // Let the masters drop released clients' state (they check leases about once a second).
    let settle = Instant::now() + Duration::from_secs_f64(opts.churn_settle.max(0.0));
    loop {
        out.end = eo_state(&admin)?;
        let within = opts.churn_max_eo_bytes.is_none_or(|b| out.end.bytes <= b);
        if within || Instant::now() >= settle {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("end: {}", out.end);
    out.errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for e in &out.errors {
        eprintln!("churn: failure: {e}");
    }
    Ok(out)
}

/// [`run`], then the verdict: `Err` if a write failed or the bound was exceeded.
pub fn run_and_check(opts: &Opts) -> Result<ChurnOutcome> {
    let out = run(opts)?;
    if out.clients_failed > 0 || out.writes_failed > 0 {
        bail!(
            "{} short-lived clients and {} long-lived writes failed (first: {})",
            out.clients_failed,
            out.writes_failed,
            out.errors.first().map_or("-", String::as_str)
        );
    }
    if let Some(b) = opts.churn_max_eo_bytes {
        if out.end.bytes > b {
            bail!(
                "the masters' exactly-once state is {} bytes at the end, above the bound --churn-max-eo-bytes {b}",
                out.end.bytes
            );
        }
    }
    println!("churn: ok (every write succeeded)");
    Ok(out)
}
