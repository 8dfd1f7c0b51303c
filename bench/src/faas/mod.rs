//! `faascache-bench faas`: the FaaS evaluation harness (issue 20).
//!
//! Real functions (`bench/faas/functions/`, one Python file each) run in sandboxes — OpenWhisk
//! action proxies in memory cgroups ([`invoker`], [`sandbox`], [`cgroup`]) — under a
//! multi-tenant load ([`load`]: one tenant per function, Poisson or periodic arrivals, a warm-up
//! that is run but not reported, the trace saved and replayable), against each backend of the
//! comparison in turn, in one run ([`backends`]). Inputs come from `gen_inputs.py`
//! ([`manifest`]) and are uploaded to Swift once; after each backend's run (and a flush of the
//! cluster's write-back tables) every output object is read back from Swift and its SHA-256
//! compared with what the function returned and with the manifest's expectation — a mismatch
//! fails the run ([`runner`]). The report ([`stats`], [`report`]) gives per backend × function
//! × input size the E/T/L medians and p99, the end-to-end `/run` time and its ratio to Swift
//! direct, cold and warm counts; as a table, `--json FILE`, and SVG plots next to the JSON.

pub mod agent;
pub mod backends;
pub mod cachestats;
pub mod cgroup;
pub mod http;
pub mod invoker;
pub mod load;
pub mod manifest;
pub mod pipeline;
pub mod plots;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::Opts;
use backends::{Backend, Swift};
use invoker::{Invoker, PoolConfig};
use load::{Tenant, Trace};
use manifest::Manifest;
use runner::{IN_BUCKET, OUT_BUCKET};
use sandbox::{Action, Runtime};

/// Where things are, and the run's settings after `--quick` and the defaults.
#[derive(Debug, Clone)]
pub struct Setup {
    pub root: PathBuf,
    pub python: PathBuf,
    pub bin: PathBuf,
    pub sizes: Vec<String>,
    pub duration: f64,
    pub warmup: f64,
    pub backends: Vec<String>,
    pub target: PathBuf,
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Resolves paths and defaults; a missing venv or binary is a clear error.
pub fn setup(opts: &Opts) -> Result<Setup> {
    let root = std::env::current_dir()?;
    if !root.join("bench/faas/functions").is_dir() {
        bail!("run from the repository's root (no bench/faas/functions here)");
    }
    let target = target_dir(&root);
    let python = match &opts.faas_python {
        Some(p) => p.clone(),
        None => {
            let a = target.join("faas-venv/bin/python");
            if a.exists() {
                a
            } else {
                root.join("target/faas-venv/bin/python")
            }
        }
    };
    if !python.exists() {
        bail!(
            "the functions' venv is missing ({}): run scripts/faas-functions.sh install (or pass --faas-python)",
            python.display()
        );
    }
    let bin = match &opts.faas_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("faascache"),
    };
    let needs_cluster = opts
        .faas_backends
        .iter()
        .any(|b| b == "gateway" || b == "faascache");
    if needs_cluster && !bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p faascache (or pass --faas-bin)",
            bin.display()
        );
    }
    let sizes = match (&opts.faas_input_sizes[..], opts.quick) {
        ([], true) => vec!["16KB".into(), "1MB".into()],
        ([], false) => ["16KB", "128KB", "1MB", "3MB", "8MB"]
            .map(String::from)
            .to_vec(),
        (s, _) => s.to_vec(),
    };
    let q = opts.quick;
    let duration = opts.faas_duration.unwrap_or(if q { 6.0 } else { 60.0 });
    let warmup = opts.faas_warmup.unwrap_or(if q { 3.0 } else { 10.0 });
    Ok(Setup {
        root,
        python,
        bin,
        sizes,
        duration,
        warmup,
        backends: opts.faas_backends.clone(),
        target,
    })
}

/// The inputs: `--faas-inputs DIR`, or generated (once per seed and sizes) under the target dir.
fn inputs(opts: &Opts, s: &Setup) -> Result<Manifest> {
    if let Some(d) = &opts.faas_inputs {
        return Manifest::read(d);
    }
    let dir = s
        .target
        .join(format!("faas-inputs-{}-{}", opts.seed, s.sizes.join("_")));
    if dir.join("manifest.json").exists() {
        if let Ok(m) = Manifest::read(&dir) {
            return Ok(m);
        }
    }
    eprintln!(
        "faas: generating inputs into {} (gen_inputs.py)",
        dir.display()
    );
    let st = std::process::Command::new(&s.python)
        .arg(s.root.join("bench/faas/gen_inputs.py"))
        .arg("--out")
        .arg(&dir)
        .args([
            "--seed",
            &opts.seed.to_string(),
            "--sizes",
            &s.sizes.join(","),
        ])
        .status()
        .context("running gen_inputs.py")?;
    if !st.success() {
        bail!("gen_inputs.py failed ({st})");
    }
    Manifest::read(&dir)
}

/// One tenant per function over the selected sizes.
fn tenants(opts: &Opts, s: &Setup, m: &Manifest) -> Result<Vec<Tenant>> {
    let arrival = load::parse_arrival(&opts.faas_arrival)?;
    let mut out = Vec::new();
    for f in &opts.faas_functions {
        let inputs = if f == pipeline::PIPELINE {
            m.pipelines(&s.sizes)
                .with_context(|| format!("{}", m.dir.display()))?
        } else {
            m.select(f, &s.sizes)
        };
        if inputs.is_empty() {
            bail!(
                "no inputs of {f} at sizes {:?} in {}",
                s.sizes,
                m.dir.display()
            );
        }
        out.push(Tenant {
            name: format!("t-{f}"),
            function: f.clone(),
            inputs,
            arrival,
            rate: opts.faas_rate,
        });
    }
    Ok(out)
}

/// Uploads every input the trace uses (and infer's model) to Swift's `faas-in`.
fn upload(swift: &Swift, m: &Manifest, trace: &Trace) -> Result<()> {
    let store = swift.store(IN_BUCKET)?;
    store.create_bucket()?;
    swift.store(OUT_BUCKET)?.create_bucket()?;
    let mut paths: Vec<String> = trace
        .arrivals
        .iter()
        .flat_map(|a| m.input_paths(a.input))
        .collect();
    if let Some(model) = &m.model {
        if trace.tenants.iter().any(|t| t.function == "infer") {
            paths.push(model.path.clone());
        }
    }
    paths.sort();
    paths.dedup();
    for p in &paths {
        let body = std::fs::read(m.dir.join(p))?;
        let key = if m.model.as_ref().is_some_and(|x| x.path == *p) {
            "model.pkl"
        } else {
            p.as_str()
        };
        store
            .put(key, bytes::Bytes::from(body).into(), &Default::default())
            .with_context(|| format!("uploading {p} to Swift"))?;
    }
    eprintln!(
        "faas: {} inputs in Swift container {IN_BUCKET}",
        paths.len()
    );
    Ok(())
}

/// The actions of `functions` (a replayed trace's tenants may name others than `--faas-functions`).
fn actions(opts: &Opts, s: &Setup, functions: &[String]) -> Result<Vec<Action>> {
    if !(16..=1 << 20).contains(&opts.faas_memory_mb) {
        bail!(
            "--faas-memory-mb {} out of range (16 MiB to 1 TiB)",
            opts.faas_memory_mb
        );
    }
    functions
        .iter()
        .map(|f| {
            if !cgroup::valid_name(f) {
                bail!("bad function name {f:?}");
            }
            let p = s.root.join("bench/faas/functions").join(format!("{f}.py"));
            let code =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Action {
                name: f.clone(),
                code,
                memory: opts.faas_memory_mb << 20,
            })
        })
        .collect()
}

/// Which backends can run here; the others are skipped with a note (swift and gateway never).
fn available(s: &Setup, notes: &mut Vec<String>) -> Vec<String> {
    let py_has = |module: &str| {
        std::process::Command::new(&s.python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut out = Vec::new();
    for b in &s.backends {
        let skip = match b.as_str() {
            "faascache" if !py_has("faascache") => {
                Some("the faascache Python module is not in the venv")
            }
            "redis" if !py_has("redis") => Some("the redis Python module is not in the venv"),
            "redis"
                if std::process::Command::new("redis-server")
                    .arg("--version")
                    .output()
                    .is_err() =>
            {
                Some("redis-server is not installed")
            }
            _ => None,
        };
        match skip {
            Some(why) => notes.push(format!("backend {b} skipped: {why}")),
            None => out.push(b.clone()),
        }
    }
    out
}

/// Runs the harness.
pub fn run(opts: &Opts) -> Result<()> {
    let _ = ctrlc::set_handler(|| {
        if runner::STOP.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("\nfaas: stopping (Ctrl-C again to exit at once)");
    });
    let s = setup(opts)?;
    if !s.backends.iter().any(|b| b == "swift") {
        bail!("--faas-backends must include swift (the baseline every ratio is taken against)");
    }
    let swift = Swift::ensure(&s.root)?;
    let m = inputs(opts, &s)?;
    let trace = match &opts.faas_trace {
        Some(p) => Trace::load(p, &m.tags())?,
        None => {
            let mut t = load::generate(tenants(opts, &s, &m)?, s.warmup, s.duration, opts.seed)?;
            t.inputs = m.tags();
            t
        }
    };
    let trace_path = opts
        .faas_save_trace
        .clone()
        .unwrap_or_else(|| match &opts.json {
            Some(j) => j.with_extension("trace.json"),
            None => s.target.join("faas-trace.json"),
        });
    trace.save(&trace_path)?;
    eprintln!(
        "faas: {} tenants, {} arrivals ({} measured) per backend; trace in {}",
        trace.tenants.len(),
        trace.arrivals.len(),
        trace.measured(),
        trace_path.display()
    );
    upload(&swift, &m, &trace)?;
    let mut notes = Vec::new();
    let backends = available(&s, &mut notes);
    let work = tempfile::Builder::new()
        .prefix("faascache-faas.")
        .tempdir()?;
    let cgroups = if opts.faas_no_cgroups {
        cgroup::Cgroups::disabled("--faas-no-cgroups")
    } else {
        cgroup::Cgroups::detect(Path::new("/sys/fs/cgroup"))
    };
    eprintln!("faas: {}", cgroups.note);
    notes.push(cgroups.note.clone());
    let rt = Runtime {
        python: s.python.clone(),
        proxy: s.root.join("bench/faas/runtime/actionproxy.py"),
        log_dir: work.path().to_path_buf(),
        timeout: Duration::from_secs(120),
    };
    if !rt.proxy.exists() {
        bail!("{} is missing", rt.proxy.display());
    }
    let cfg = PoolConfig {
        keep_alive: Duration::from_secs_f64(opts.faas_keep_alive.clamp(0.1, 86_400.0)),
        max_per_function: opts.faas_max_sandboxes.clamp(1, 64),
        acquire_timeout: Duration::from_secs(300),
    };
    let mut functions: Vec<String> = trace
        .tenants
        .iter()
        .flat_map(|t| pipeline::stages(&t.function))
        .collect();
    functions.sort();
    functions.dedup();
    let inv = Invoker::new(rt, cgroups, actions(opts, &s, &functions)?, cfg);
    let expected = trace
        .arrivals
        .iter()
        .filter(|a| !a.warmup)
        .map(|a| {
            let f = &trace.tenants[a.tenant].function;
            let f = if f == pipeline::PIPELINE {
                f
            } else {
                &m.entries[a.input].function
            };
            (f.clone(), m.entries[a.input].size_label.clone())
        })
        .collect();
    let mut results =
        report::Results::new(opts, &s.sizes, (s.warmup, s.duration), &trace_path, notes);
    results.expected = expected;
    for b in &backends {
        if runner::STOP.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let r = run_backend(opts, &s, &swift, &inv, &m, &trace, b, work.path());
        inv.set_agent(None);
        inv.clear();
        let (outcome, cache, agent) = r?;
        results.add_backend(b, outcome, cache, agent);
    }
    results.pool = inv.stats();
    drop(inv);
    if runner::STOP.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    results.finish(opts, &backends)
}

#[allow(clippy::too_many_arguments)]
fn run_backend(
    opts: &Opts,
    s: &Setup,
    swift: &Swift,
    inv: &Invoker,
    m: &Manifest,
    trace: &Trace,
    name: &str,
    work: &Path,
) -> Result<(
    runner::Outcome,
    Option<cachestats::Summary>,
    Option<agent::Summary>,
)> {
    eprintln!("faas: backend {name}: starting");
    let grow = opts.faas_agent.then_some(backends::AGENT_MAX_MEMORY);
    let backend = Backend::start(name, swift, work, &s.bin, &[IN_BUCKET, OUT_BUCKET], grow)?;
    // The node agent beside the cluster's first server (--faas-agent): the invoker tells it
    // about the sandboxes started from now on; its status is sampled once a second.
    let node_agent = match (&backend.cluster, opts.faas_agent) {
        (Some(dir), true) => {
            let a = agent::AgentProcess::start(&agent::AgentSpec {
                bin: &s.bin,
                cluster: dir,
                server: "server-1",
                max_cache: backends::AGENT_MAX_MEMORY,
                work,
                name,
            })
            .with_context(|| format!("starting the node agent of the {name} backend"))?;
            eprintln!("faas: backend {name}: node agent at {}", a.link.base);
            inv.set_agent(Some(a.link.clone()));
            let sampler = agent::Sampler::start(a.link.clone(), Duration::from_secs(1))?;
            Some((a, sampler))
        }
        _ => None,
    };
    // The cache's counters once a second while the trace runs (backends with a cluster).
    let sampler = match &backend.cluster {
        Some(dir) => {
            let loc = std::fs::read_to_string(dir.join("coordinator.locator"))?;
            Some(cachestats::Sampler::start(
                loc.trim(),
                Duration::from_secs(1),
            )?)
        }
        None => None,
    };
    let workers = opts.faas_workers.clamp(1, 256);
    let prefix = format!(
        "{}-{}/{name}",
        crate::procinfo::utc_now().replace([':', ' '], ""),
        std::process::id()
    );
    let target = runner::Target {
        name,
        prefix: &prefix,
        store: &backend.store,
    };
    let t0 = std::time::Instant::now();
    let mut out = runner::run_trace(inv, m, trace, target, workers, opts.quiet);
    let ran = t0.elapsed();
    let cache = sampler.map(cachestats::Sampler::stop);
    // The sandboxes go while the agent still runs (their DELETE events), then the agent.
    inv.set_agent(None);
    inv.clear();
    let agent = node_agent.map(|(a, sampler)| {
        let sum = sampler.stop();
        drop(a);
        sum
    });
    backend.flush(&[OUT_BUCKET])?;
    drop(backend);
    let store = swift.store(OUT_BUCKET)?;
    let bad = runner::check_outputs(store.as_ref(), &out.done);
    runner::delete_outputs(store.as_ref(), &out.done, &out.orphans);
    eprintln!(
        "faas: backend {name}: {} invocations in {:.1} s, {} errors, {} outputs read back from Swift, {} mismatches",
        out.done.len(),
        ran.as_secs_f64(),
        out.errors.len(),
        out.done.iter().map(|d| d.outputs.len()).sum::<usize>(),
        bad.len()
    );
    out.errors
        .extend(bad.iter().map(|b| format!("OUTPUT MISMATCH {b}")));
    Ok((out, cache, agent))
}
