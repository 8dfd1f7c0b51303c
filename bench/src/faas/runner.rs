//! Runs a trace against one backend: a dispatcher thread releases each arrival at its time
//! (open loop: an invocation's queueing behind busy workers is recorded, not hidden) to a pool
//! of `workers` threads, each calling the invoker. Afterwards every output object is read back
//! from Swift and its SHA-256 compared with what the function returned and with the manifest's
//! expected value.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::invoker::{Invocation, Invoker};
use super::load::Trace;
use super::manifest::{sha256_hex, Manifest};
use super::pipeline::{critical_path, Etl, PIPELINE};
use super::stats::Record;

/// Set by Ctrl-C: dispatching stops, the run unwinds and cleans up.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The buckets (Swift containers) of the run.
pub const IN_BUCKET: &str = "faas-in";
pub const OUT_BUCKET: &str = "faas-out";

/// An output object to read back from Swift and check.
#[derive(Debug, Clone)]
pub struct Output {
    pub key: String,
    /// What the function returned as its output's SHA-256.
    pub sha256: String,
    /// What the manifest expects, when it says.
    pub expected: Option<String>,
}

/// One finished invocation (or pipeline: its maps' outputs and the reduce's), before checking.
#[derive(Debug, Clone)]
pub struct Done {
    pub record: Record,
    pub warmup: bool,
    pub outputs: Vec<Output>,
}

/// What a backend's run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Done>,
    pub errors: Vec<String>,
    /// Outputs written by the stages of pipelines that then failed (not checked; deleted).
    pub orphans: Vec<String>,
}

/// A pipeline that failed after some of its maps had written their outputs.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
struct PipelineFailed {
    /// Not a `source`: its chain is in the message already.
    error: anyhow::Error,
    written: Vec<String>,
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
                    Err(e) => {
                        if let Some(p) = e.downcast_ref::<PipelineFailed>() {
                            o.orphans.extend(p.written.iter().cloned());
                        }
                        o.errors.push(format!("arrival {i}: {e:#}"));
                    }
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
    if trace.tenants.get(a.tenant).map(|t| t.function.as_str()) == Some(PIPELINE) {
        let (mut record, outputs) = run_pipeline(inv, m, a.input, target, i)?;
        record.queued_ms = queued.as_secs_f64() * 1000.0;
        return Ok(Done {
            record,
            warmup: a.warmup,
            outputs,
        });
    }
    let e = &m.entries[a.input];
    let (args, out_key) = args_for(m, a.input, target, i);
    let st = stage(inv, m, a.input, &args, out_key)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let record = Record {
        backend: target.name.into(),
        function: e.function.clone(),
        size: e.size_label.clone(),
        input_bytes: e.bytes,
        extract_ms: st.etl.extract,
        transform_ms: st.etl.transform,
        load_ms: st.etl.load,
        run_ms: ms(st.inv.run),
        cold_ms: st.inv.cold.map(ms),
        queued_ms: ms(queued),
        connect_ms: connect_ms(&st),
    };
    Ok(Done {
        record,
        warmup: a.warmup,
        outputs: vec![st.out],
    })
}

/// The time the function spent making its store's client (first use in a sandbox).
fn connect_ms(s: &Stage) -> f64 {
    s.inv
        .result
        .get("connect_ms")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// The `output_sha256` a function returned (an error if it gave none).
fn output_sha256(function: &str, v: &Value) -> Result<String> {
    let sha = v
        .get("output_sha256")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if sha.len() != 64 {
        bail!("{function} returned no output_sha256: {v}");
    }
    Ok(sha)
}

/// One stage's invocation, its output and E/T/L.
struct Stage {
    inv: Invocation,
    out: Output,
    etl: Etl,
}

/// Runs the function of manifest entry `entry` with `args` writing `key` (a single-stage
/// invocation, or one stage of a pipeline).
fn stage(inv: &Invoker, m: &Manifest, entry: usize, args: &Value, key: String) -> Result<Stage> {
    let e = &m.entries[entry];
    let r = inv.invoke_with(&e.function, args, &[("input_bytes", e.bytes as f64)])?;
    let v = &r.result;
    let out = Output {
        key,
        sha256: output_sha256(&e.function, v)?,
        expected: e.expected.as_ref().map(|x| x.output_sha256.clone()),
    };
    let etl = Etl {
        extract: num(v, "extract_ms"),
        transform: num(v, "transform_ms"),
        load: num(v, "load_ms"),
    };
    Ok(Stage { inv: r, out, etl })
}

/// One arrival of the pipeline tenant: the maps of the pipeline whose reduce entry is `reduce`
/// run concurrently, one scoped thread each (at most 64; the arrival's worker waits for them —
/// the maps never go through the worker pool, so pipelines cannot starve it of threads; a map
/// beyond `--faas-max-sandboxes` waits for a free `wcmap` sandbox, holding none), each writing
/// its counts to the backend under test; then the reduce reads them there and writes the
/// total. The record: end-to-end from the first map's `/run` to the reduce's answer; E/T/L the
/// critical path ([`critical_path`]); cold if any stage started its sandbox (the critical
/// path's cold start time, likewise).
fn run_pipeline(
    inv: &Invoker,
    m: &Manifest,
    reduce: usize,
    t: Target<'_>,
    i: usize,
) -> Result<(Record, Vec<Output>)> {
    let p = m.pipeline(reduce)?;
    let r = &m.entries[reduce];
    let base = format!("{}/{i:07}-{PIPELINE}-{}", t.prefix, r.size_label);
    let maps: Vec<Result<Stage>> = std::thread::scope(|s| {
        let handles: Vec<_> = p
            .maps
            .iter()
            .enumerate()
            .map(|(part, &entry)| {
                let base = &base;
                s.spawn(move || {
                    let (mut args, _) = args_for(m, entry, t, i);
                    let key = format!("{base}/map{part:02}");
                    args["output"]["key"] = json!(key);
                    stage(inv, m, entry, &args, key)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a map thread panicked")))
            })
            .collect()
    });
    let written: Vec<String> = maps.iter().flatten().map(|s| s.out.key.clone()).collect();
    let failed = |error| PipelineFailed {
        error,
        written: written.clone(),
    };
    let maps = maps
        .into_iter()
        .collect::<Result<Vec<Stage>>>()
        .map_err(failed)?;
    let keys: Vec<&str> = maps.iter().map(|s| s.out.key.as_str()).collect();
    let (mut args, _) = args_for(m, reduce, t, i);
    let key = format!("{base}/reduce");
    args["input"] = json!({"bucket": OUT_BUCKET, "keys": keys});
    args["output"]["key"] = json!(key);
    let red = stage(inv, m, reduce, &args, key).map_err(failed)?;
    let etl = critical_path(&maps.iter().map(|s| s.etl).collect::<Vec<_>>(), red.etl);
    let first = maps
        .iter()
        .map(|s| s.inv.started)
        .min()
        .unwrap_or(red.inv.started);
    let end = red.inv.started + red.inv.run;
    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }
    let stage_max = |f: fn(&Stage) -> f64| maps.iter().map(f).fold(0.0, f64::max);
    let cold = maps.iter().chain([&red]).any(|s| s.inv.cold.is_some());
    let cold_of = |s: &Stage| s.inv.cold.map_or(0.0, ms);
    let record = Record {
        backend: t.name.into(),
        function: PIPELINE.into(),
        size: r.size_label.clone(),
        input_bytes: p.maps.iter().map(|&e| m.entries[e].bytes).sum(),
        extract_ms: etl.extract,
        transform_ms: etl.transform,
        load_ms: etl.load,
        run_ms: ms(end.saturating_duration_since(first)),
        cold_ms: cold.then(|| stage_max(cold_of) + cold_of(&red)),
        queued_ms: 0.0,
        connect_ms: stage_max(connect_ms) + connect_ms(&red),
    };
    let mut outputs: Vec<Output> = maps.into_iter().map(|s| s.out).collect();
    outputs.push(red.out);
    Ok((record, outputs))
}

/// Reads every output of `done` back from `out` (Swift) and compares; the mismatches.
pub fn check_outputs(out: &dyn faascache_objstore::ObjectStore, done: &[Done]) -> Vec<String> {
    let mut bad = Vec::new();
    for d in done.iter().flat_map(|d| &d.outputs) {
        match out.get(&d.key, None) {
            Ok(faascache_objstore::GetResult::Found { body, .. }) => {
                let got = sha256_hex(&body);
                if got != d.sha256 {
                    bad.push(format!(
                        "{}: Swift has sha256 {got}, the function returned {}",
                        d.key, d.sha256
                    ));
                } else if d.expected.as_ref().is_some_and(|x| *x != got) {
                    bad.push(format!(
                        "{}: sha256 {got}, the manifest expects {:?}",
                        d.key, d.expected
                    ));
                }
            }
            Ok(other) => bad.push(format!("{}: not in Swift ({other:?})", d.key)),
            Err(e) => bad.push(format!("{}: reading it back from Swift: {e}", d.key)),
        }
    }
    bad
}

/// Deletes the outputs of `done` (after checking) and the `orphans` (best effort).
pub fn delete_outputs(
    out: &dyn faascache_objstore::ObjectStore,
    done: &[Done],
    orphans: &[String],
) {
    for k in done
        .iter()
        .flat_map(|d| &d.outputs)
        .map(|o| &o.key)
        .chain(orphans)
    {
        let _ = out.delete(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_pipeline_keeps_its_message_and_its_written_outputs() {
        let e: anyhow::Error = PipelineFailed {
            error: anyhow!("sandbox down").context("wcreduce"),
            written: vec!["p/map00".into()],
        }
        .into();
        assert_eq!(format!("{e:#}"), "wcreduce: sandbox down");
        let p = e.downcast_ref::<PipelineFailed>().unwrap();
        assert_eq!(p.written, vec!["p/map00".to_string()]);
    }
}
