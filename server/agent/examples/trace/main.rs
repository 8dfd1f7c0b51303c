//! Replays a recorded memory data set as an invocation trace on a simulated node, in virtual
//! time, through the agent's policy (`faascache_agent::trace`), three times: sandboxes sized by
//! booked memory, by the memory predictor learning online, and by an oracle (the actual peak).
//! Prints a markdown table (or `--json`). `docs/benchmarks.md` §13.4 has the results.
//!
//! ```text
//! cargo run --release -p faascache-agent --example trace -- bench/faas/data/memory-2026-12-07.csv \
//!     [--seed 1] [--node-memory 4GiB] [--rate 4] [--keep-alive 30] [--burst ON,OFF] \
//!     [--time-scale 1] [--idle-fraction 1] [--others 0] [--grow-free 0.4] \
//!     [--predictor JSON] [--json]
//! ```
//!
//! `--rate` is arrivals per second (Poisson; with `--burst ON,OFF` seconds, at that rate during
//! each ON and none during OFF); `--keep-alive` seconds an idle sandbox is kept warm;
//! `--time-scale` multiplies recorded wall times; `--idle-fraction` is an idle sandbox's memory
//! as a fraction of its last peak; `--others` memory used by the rest of the node; `--grow-free`
//! the policy's `grow_free` (default OFC's 0.4); `--predictor` overrides fields of the
//! predictor's configuration, as `evaluate`'s second argument does. Sizes take B, KiB, MiB, GiB.

mod model;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faascache_agent::trace::{run, Arrivals, Sizing, TraceConfig, TraceReport};
use faascache_predictor::replay::read_csv;
use faascache_predictor::PredictorConfig;
use serde_json::json;

const MIB: f64 = (1u64 << 20) as f64;

fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.trim().parse().map_err(|e| format!("size {s:?}: {e}"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("size {s:?}: unit must be B, KiB, MiB or GiB")),
    };
    Ok((n * mult as f64) as u64)
}

fn num(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a non-negative number"))
}

struct Args {
    path: PathBuf,
    cfg: TraceConfig,
    predictor: PredictorConfig,
    json: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut cfg = TraceConfig::default();
    let mut predictor = PredictorConfig::default();
    let (mut path, mut as_json) = (None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            as_json = true;
            continue;
        }
        if !a.starts_with("--") {
            path = Some(PathBuf::from(a));
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--seed" => cfg.seed = v.parse().map_err(|e| format!("--seed: {e}"))?,
            "--node-memory" => cfg.node_memory = size(v)?,
            "--rate" => cfg.rate = num(v)?,
            "--keep-alive" => cfg.keep_alive = Duration::from_secs_f64(num(v)?),
            "--time-scale" => cfg.time_scale = num(v)?,
            "--idle-fraction" => cfg.idle_fraction = num(v)?.min(1.0),
            "--others" => cfg.others = size(v)?,
            "--grow-free" => cfg.policy.grow_free = num(v)?.min(1.0),
            "--predictor" => {
                predictor = serde_json::from_str(v).map_err(|e| format!("--predictor: {e}"))?;
            }
            "--burst" => {
                let (on, off) = v.split_once(',').ok_or("--burst takes ON,OFF seconds")?;
                cfg.arrivals = Arrivals::OnOff {
                    on: Duration::from_secs_f64(num(on)?.max(0.001)),
                    off: Duration::from_secs_f64(num(off)?),
                };
            }
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if cfg.rate <= 0.0 {
        return Err("--rate must be above 0".into());
    }
    Ok(Args {
        path: path.ok_or("give a data set (CSV)")?,
        cfg,
        predictor,
        json: as_json,
    })
}

fn row(name: &str, r: &TraceReport) -> String {
    format!(
        "| {name} | {:.3} | {:.3} | {:.0} | {:.1} % (worst miss {:.1} MiB) | {:.1} | {} | {} ({:.2} s, worst {:.1} MiB) | {:.0} | {} ({}/{}/{}) |",
        r.of_booked_free(),
        r.of_actual_free(),
        r.mean_cache / MIB,
        100.0 * r.exact_or_over_rate(),
        r.worst_miss as f64 / MIB,
        r.mean_over() / MIB,
        r.over_ratio().map_or("—".into(), |x| format!("{x:.1}×")),
        r.oom_moments,
        r.oom_time.as_secs_f64(),
        r.oom_worst as f64 / MIB,
        r.min_headroom as f64 / MIB,
        r.resize_count(),
        r.resizes[0],
        r.resizes[1],
        r.resizes[2],
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Args {
        path,
        cfg,
        predictor,
        json: as_json,
    } = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("trace: {e}\nusage: trace DATA.csv [--seed N] [--node-memory SIZE] [--rate R] [--keep-alive S] [--burst ON,OFF] [--time-scale X] [--idle-fraction F] [--others SIZE] [--grow-free F] [--predictor JSON] [--json]");
            return ExitCode::from(2);
        }
    };
    let records = match read_csv(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trace = model::invocations(&records);
    let booked = run(&trace, &cfg, Sizing::Booked);
    let mut learner = model::Learner::with(predictor);
    let predicted = run(&trace, &cfg, Sizing::Model(&mut learner));
    let oracle = run(&trace, &cfg, Sizing::Oracle);
    if as_json {
        let out = json!({
            "data": path.display().to_string(), "seed": cfg.seed,
            "node_memory_bytes": cfg.node_memory, "rate": cfg.rate,
            "keep_alive_s": cfg.keep_alive.as_secs_f64(), "arrivals": format!("{:?}", cfg.arrivals),
            "time_scale": cfg.time_scale, "idle_fraction": cfg.idle_fraction,
            "others_bytes": cfg.others, "grow_free": cfg.policy.grow_free,
            "booked": booked.to_json(), "predictor": predicted.to_json(), "oracle": oracle.to_json(),
        });
        println!("{out:#}");
        return ExitCode::SUCCESS;
    }
    let r = &booked;
    println!(
        "{}: {} invocations ({} refused) in {:.1} s virtual, seed {}, node {:.0} MiB, {:?} at {}/s, keep-alive {:.0} s, grow_free {}",
        path.display(),
        r.invocations,
        r.refused,
        r.duration.as_secs_f64(),
        cfg.seed,
        cfg.node_memory as f64 / MIB,
        cfg.arrivals,
        cfg.rate,
        cfg.keep_alive.as_secs_f64(),
        cfg.policy.grow_free,
    );
    println!(
        "sandboxes created {}, invocations queued {}, most live {}, most running {}; mean node − booked {:.0} MiB, mean node − actual {:.0} MiB\n",
        r.sandboxes,
        r.queued,
        r.max_live,
        r.max_running,
        r.mean_booked_free / MIB,
        r.mean_actual_free / MIB,
    );
    println!("| sizing | cache ÷ (node − booked) | cache ÷ (node − actual) | mean cache (MiB) | exact or over | mean over (MiB) | booked ÷ this | would-be OOMs | least free (MiB) | resizes (pressure/predicted/grow) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", row("booked", &booked));
    println!("{}", row("predictor", &predicted));
    println!("{}", row("oracle", &oracle));
    ExitCode::SUCCESS
}
