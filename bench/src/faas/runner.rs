//! Runs a trace against one backend: a dispatcher thread releases each arrival at its time
//! (open loop: an invocation's queueing behind busy workers is recorded, not hidden) to a pool
//! of `workers` threads, each calling the invoker. Afterwards every output object is read back
//! from Swift and its SHA-256 compared with what the function returned and with the manifest's
//! expected value.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::invoker::Invoker;
use super::load::Trace;
use super::manifest::{sha256_hex, Manifest};
use super::stats::Record;

/// Set by Ctrl-C: dispatching stops, the run unwinds and cleans up.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The buckets (Swift containers) of the run.
pub const IN_BUCKET: &str = "faas-in";
pub const OUT_BUCKET: &str = "faas-out";

/// One finished invocation, before checking.
#[derive(Debug, Clone)]
pub struct Done {
    pub record: Record,
    pub warmup: bool,
    pub out_key: String,
    pub sha256: String,
    pub expected: Option<String>,
}

/// What a backend's run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Done>,
    pub errors: Vec<String>,
}

/// The backend a trace runs against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The backend's name (the records').
    pub name: &'a str,
    /// Output keys start with this (unique per run and backend, so an object left by an earlier
    /// run cannot pass for a write that never reached Swift).
    pub prefix: &'a str,
    /// `args.store`.
    pub store: &'a Value,
}

/// The arguments of arrival `i` and its output key.
pub fn args_for(m: &Manifest, entry: usize, t: Target<'_>, i: usize) -> (Value, String) {
    let e = &m.entries[entry];
    let store = t.store;
    let out_key = format!("{}/{i:07}-{}-{}", t.prefix, e.function, e.size_label);
    let mut params = if e.params.is_object() {
        e.params.clone()
    } else {
        json!({})
    };
    if e.function == "infer" {
        params["model"] = json!({"bucket": IN_BUCKET, "key": "model.pkl"});
    }
    let args = json!({
        "store": store,
        "input": {"bucket": IN_BUCKET, "key": e.path.clone().unwrap_or_default()},
        "output": {"bucket": OUT_BUCKET, "key": out_key},
        "params": params,
    });
    (args, out_key)
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// Runs `trace` on `target` with `workers` threads.
pub fn run_trace(
    inv: &Invoker,
    m: &Manifest,
    trace: &Trace,
    target: Target<'_>,
    workers: usize,
    quiet: bool,
) -> Outcome {
    let backend = target.name;
    let (tx, rx) = mpsc::sync_channel::<(usize, Instant)>(4096);
    let rx = Arc::new(Mutex::new(rx));
    let out = Mutex::new(Outcome::default());
    let finished = AtomicUsize::new(0);
    let start = Instant::now() + Duration::from_millis(50);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let (out, finished) = (&out, &finished);
            s.spawn(move || loop {
                let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((i, due)) = next else { return };
                let r = one(inv, m, trace, target, i, due);
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(d) => o.done.push(d),
                    Err(e) => o.errors.push(format!("arrival {i}: {e:#}")),
                }
                finished.fetch_add(1, Ordering::Relaxed);
            });
        }
        let total = trace.arrivals.len();
        let (out, finished) = (&out, &finished);
        let progress = s.spawn(move || {
            // A bar redrawn in place on a terminal; a line every 10 s in a log (CI).
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let every = if tty { 500 } else { 10_000 };
            let mut last: Option<Instant> = None;
            while !quiet
                && finished.load(Ordering::Relaxed) < total
                && !STOP.load(Ordering::Relaxed)
            {
                if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(every)) {
                    last = Some(Instant::now());
                    let errs = out.lock().map_or(0, |o| o.errors.len());
                    let (n, secs) = (
                        finished.load(Ordering::Relaxed),
                        start.elapsed().as_secs_f64(),
                    );
                    let line =
                        format!("  {backend}: {n}/{total} invocations, {errs} errors, {secs:.0} s");
                    if tty {
                        eprint!("\r{line}   ");
                    } else {
                        eprintln!("{line}");
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for (i, a) in trace.arrivals.iter().enumerate() {
            let due = start + Duration::from_micros(a.at_us);
            while Instant::now() < due {
                if STOP.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
            }
            if STOP.load(Ordering::Relaxed) || tx.send((i, due)).is_err() {
                break;
            }
        }
        drop(tx);
        let _ = progress.join();
    });
    if !quiet {
        eprintln!();
    }
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn one(
    inv: &Invoker,
    m: &Manifest,
    trace: &Trace,
    target: Target<'_>,
    i: usize,
    due: Instant,
) -> Result<Done> {
    let a = &trace.arrivals[i];
    let queued = due.elapsed();
    let e = &m.entries[a.input];
    let (args, out_key) = args_for(m, a.input, target, i);
    let r = inv.invoke(&e.function, &args)?;
    let v = &r.result;
    let sha = v
        .get("output_sha256")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if sha.len() != 64 {
        bail!("{} returned no output_sha256: {}", e.function, v);
    }
    let record = Record {
        backend: target.name.into(),
        function: e.function.clone(),
        size: e.size_label.clone(),
        input_bytes: e.bytes,
        extract_ms: num(v, "extract_ms"),
        transform_ms: num(v, "transform_ms"),
        load_ms: num(v, "load_ms"),
        run_ms: r.run.as_secs_f64() * 1000.0,
        cold_ms: r.cold.map(|d| d.as_secs_f64() * 1000.0),
        queued_ms: queued.as_secs_f64() * 1000.0,
        connect_ms: v.get("connect_ms").and_then(Value::as_f64).unwrap_or(0.0),
    };
    Ok(Done {
        record,
        warmup: a.warmup,
        out_key,
        sha256: sha,
        expected: e.expected.as_ref().map(|x| x.output_sha256.clone()),
    })
}

/// Reads every output of `done` back from `out` (Swift) and compares; the mismatches.
pub fn check_outputs(out: &dyn faascache_objstore::ObjectStore, done: &[Done]) -> Vec<String> {
    let mut bad = Vec::new();
    for d in done {
        match out.get(&d.out_key, None) {
            Ok(faascache_objstore::GetResult::Found { body, .. }) => {
                let got = sha256_hex(&body);
                if got != d.sha256 {
                    bad.push(format!(
                        "{}: Swift has sha256 {got}, the function returned {}",
                        d.out_key, d.sha256
                    ));
                } else if d.expected.as_ref().is_some_and(|x| *x != got) {
                    bad.push(format!(
                        "{}: sha256 {got}, the manifest expects {:?}",
                        d.out_key, d.expected
                    ));
                }
            }
            Ok(other) => bad.push(format!("{}: not in Swift ({other:?})", d.out_key)),
            Err(e) => bad.push(format!("{}: reading it back from Swift: {e}", d.out_key)),
        }
    }
    bad
}

/// Deletes the outputs of `done` (after checking; best effort).
pub fn delete_outputs(out: &dyn faascache_objstore::ObjectStore, done: &[Done]) {
    for d in done {
        let _ = out.delete(&d.out_key);
    }
}
