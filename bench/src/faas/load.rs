//! The load (FaaSLoad's analogue): tenants, their arrivals, and the trace that fixes them.
//!
//! A tenant is a function with an input set (entries of the inputs' manifest) and an arrival
//! process — periodic or Poisson — at a rate. [`generate`] draws every arrival of a run
//! (warm-up included, marked) from a seed; the result is a [`Trace`], saved as JSON and
//! replayable (`--faas-trace FILE`), so each backend of a run, and a later run, sees the same
//! arrivals with the same inputs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Most arrivals a trace may hold (a bad rate or duration fails instead of filling memory).
pub const MAX_ARRIVALS: usize = 1_000_000;
/// Largest trace file read.
pub const MAX_TRACE_BYTES: u64 = 256 << 20;

/// How a tenant's invocations arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    Periodic,
    Poisson,
}

/// A tenant: a function, its inputs (manifest entry indices), arrivals at `rate` per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub function: String,
    pub inputs: Vec<usize>,
    pub arrival: Arrival,
    pub rate: f64,
}

/// One invocation of the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrive {
    /// Microseconds from the start of the run (an integer: the JSON round trip is exact).
    pub at_us: u64,
    /// Index into [`Trace::tenants`].
    pub tenant: usize,
    /// Manifest entry index (the input).
    pub input: usize,
    /// In the warm-up (run, not reported).
    pub warmup: bool,
}

/// A whole run's arrivals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub version: u32,
    pub seed: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub tenants: Vec<Tenant>,
    pub arrivals: Vec<Arrive>,
    /// The inputs the indices name: one tag per manifest entry (`function size path`), so a
    /// replay against other inputs is refused instead of running different work.
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// Parses `periodic` / `poisson`.
pub fn parse_arrival(s: &str) -> Result<Arrival> {
    match s {
        "periodic" => Ok(Arrival::Periodic),
        "poisson" => Ok(Arrival::Poisson),
        _ => bail!("bad arrival process {s:?} (periodic or poisson)"),
    }
}

/// Draws every arrival of `tenants` over `warmup_s + duration_s` seconds. Inputs go round
/// robin through each tenant's input set (so every input size gets its share).
pub fn generate(tenants: Vec<Tenant>, warmup_s: f64, duration_s: f64, seed: u64) -> Result<Trace> {
    if !(warmup_s >= 0.0 && duration_s > 0.0 && warmup_s + duration_s <= 86_400.0) {
        bail!("bad run length: warm-up {warmup_s} s, duration {duration_s} s (0 < total ≤ 1 day)");
    }
    let total_ms = (warmup_s + duration_s) * 1000.0;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut arrivals = Vec::new();
    for (ti, t) in tenants.iter().enumerate() {
        if !(t.rate > 0.0 && t.rate <= 10_000.0) {
            bail!(
                "tenant {}: bad rate {} (0 < rate ≤ 10000 per second)",
                t.name,
                t.rate
            );
        }
        if t.inputs.is_empty() {
            bail!("tenant {}: no inputs", t.name);
        }
        let gap = 1000.0 / t.rate;
        // Tenants start staggered within one period, so periodic tenants do not all collide.
        let mut at = rng.gen_range(0.0..gap);
        let mut n = 0usize;
        while at < total_ms {
            if arrivals.len() >= MAX_ARRIVALS {
                bail!("more than {MAX_ARRIVALS} arrivals: lower the rates or the duration");
            }
            arrivals.push(Arrive {
                at_us: (at * 1000.0) as u64,
                tenant: ti,
                input: t.inputs[n % t.inputs.len()],
                warmup: at < warmup_s * 1000.0,
            });
            n += 1;
            at += match t.arrival {
                Arrival::Periodic => gap,
                Arrival::Poisson => -gap * (1.0 - rng.gen::<f64>()).ln(),
            };
        }
    }
    arrivals.sort_by_key(|a| (a.at_us, a.tenant));
    Ok(Trace {
        inputs: Vec::new(),
        version: 1,
        seed,
        warmup_s,
        duration_s,
        tenants,
        arrivals,
    })
}

impl Trace {
    /// Writes the trace as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(f), self)?;
        Ok(())
    }

    /// Reads and checks a trace against the manifest's entry tags (`inputs`).
    pub fn load(path: &Path, inputs: &[String]) -> Result<Trace> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > MAX_TRACE_BYTES {
            bail!(
                "{}: {len} bytes, more than {MAX_TRACE_BYTES}",
                path.display()
            );
        }
        let text = std::fs::read(path)?;
        let t: Trace = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a faas trace", path.display()))?;
        t.check(inputs)
            .with_context(|| format!("{}", path.display()))?;
        Ok(t)
    }

    /// A trace that can be run: known version, bounded, indices in range, times in order.
    pub fn check(&self, inputs: &[String]) -> Result<()> {
        let n_inputs = inputs.len();
        if !self.inputs.is_empty() {
            for a in &self.arrivals {
                let (was, now) = (self.inputs.get(a.input), inputs.get(a.input));
                if was != now {
                    bail!(
                        "input {} was {was:?} when the trace was made, is {now:?} now: replay with the same inputs (--faas-inputs, --seed, --faas-input-sizes)",
                        a.input
                    );
                }
            }
        }
        if self.version != 1 {
            bail!("trace version {} (this harness reads 1)", self.version);
        }
        if self.arrivals.len() > MAX_ARRIVALS {
            bail!("{} arrivals, more than {MAX_ARRIVALS}", self.arrivals.len());
        }
        let end = (self.warmup_s + self.duration_s) * 1e6;
        if !(end.is_finite() && end > 0.0 && end <= 86_400e6) {
            bail!("bad run length {} + {} s", self.warmup_s, self.duration_s);
        }
        let mut last = 0;
        for (i, a) in self.arrivals.iter().enumerate() {
            if a.tenant >= self.tenants.len() || a.input >= n_inputs {
                bail!(
                    "arrival {i}: tenant {} or input {} out of range",
                    a.tenant,
                    a.input
                );
            }
            if a.at_us < last || a.at_us as f64 > end {
                bail!(
                    "arrival {i}: time {} µs out of order or outside the run",
                    a.at_us
                );
            }
            let pipeline = self.tenants[a.tenant].function == super::pipeline::PIPELINE;
            if pipeline && !inputs[a.input].starts_with(super::pipeline::REDUCE) {
                bail!(
                    "arrival {i}: a pipeline tenant's input must be a {} entry, is {:?}",
                    super::pipeline::REDUCE,
                    inputs[a.input]
                );
            }
            if a.warmup != ((a.at_us as f64) < self.warmup_s * 1e6) {
                bail!("arrival {i}: warm-up flag disagrees with its time");
            }
            last = a.at_us;
        }
        Ok(())
    }

    /// Arrivals measured (not warm-up).
    pub fn measured(&self) -> usize {
        self.arrivals.iter().filter(|a| !a.warmup).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(arrival: Arrival, rate: f64) -> Tenant {
        Tenant {
            name: "t".into(),
            function: "f".into(),
            inputs: vec![0, 1],
            arrival,
            rate,
        }
    }

    #[test]
    fn periodic_arrivals_are_evenly_spaced() {
        let t = generate(vec![tenant(Arrival::Periodic, 10.0)], 1.0, 2.0, 7).unwrap();
        assert!(
            (29..=30).contains(&t.arrivals.len()),
            "{}",
            t.arrivals.len()
        );
        for w in t.arrivals.windows(2) {
            assert!((w[1].at_us as i64 - w[0].at_us as i64 - 100_000).abs() <= 1);
            assert_ne!(w[0].input, w[1].input, "inputs alternate");
        }
        assert!(t
            .arrivals
            .iter()
            .filter(|a| a.warmup)
            .all(|a| a.at_us < 1_000_000));
        assert_eq!(
            t.measured(),
            t.arrivals.iter().filter(|a| a.at_us >= 1_000_000).count()
        );
    }

    #[test]
    fn poisson_rate_is_about_right_and_seeded() {
        let a = generate(vec![tenant(Arrival::Poisson, 50.0)], 0.0, 100.0, 3).unwrap();
        let n = a.arrivals.len() as f64;
        assert!((4500.0..5500.0).contains(&n), "{n}");
        let b = generate(vec![tenant(Arrival::Poisson, 50.0)], 0.0, 100.0, 3).unwrap();
        assert_eq!(a, b);
        let c = generate(vec![tenant(Arrival::Poisson, 50.0)], 0.0, 100.0, 4).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(generate(vec![tenant(Arrival::Periodic, 0.0)], 0.0, 1.0, 1).is_err());
        assert!(generate(vec![tenant(Arrival::Periodic, f64::NAN)], 0.0, 1.0, 1).is_err());
        assert!(generate(vec![tenant(Arrival::Periodic, 1.0)], 0.0, 0.0, 1).is_err());
        assert!(generate(vec![tenant(Arrival::Periodic, 10_000.0)], 0.0, 86_000.0, 1).is_err());
        let mut t = tenant(Arrival::Periodic, 1.0);
        t.inputs.clear();
        assert!(generate(vec![t], 0.0, 1.0, 1).is_err());
        assert!(parse_arrival("bursty").is_err());
    }

    #[test]
    fn trace_round_trip_and_checks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("trace.json");
        let t = generate(vec![tenant(Arrival::Poisson, 20.0)], 0.5, 1.0, 9).unwrap();
        t.save(&p).unwrap();
        let tags = vec!["f 16KB a.png".to_string(), "f 1MB b.png".to_string()];
        assert_eq!(Trace::load(&p, &tags).unwrap(), t);
        assert!(Trace::load(&p, &tags[..1]).is_err(), "input 1 out of range");
        let mut tagged = t.clone();
        tagged.inputs = tags.clone();
        tagged.save(&p).unwrap();
        assert_eq!(Trace::load(&p, &tags).unwrap(), tagged);
        let other = vec![tags[0].clone(), "f 1MB c.png".to_string()];
        let e = Trace::load(&p, &other).unwrap_err();
        assert!(format!("{e:#}").contains("same inputs"), "{e:#}");
        let mut bad = t.clone();
        bad.arrivals.swap(0, 1);
        bad.save(&p).unwrap();
        assert!(Trace::load(&p, &tags).is_err(), "out of order");
        std::fs::write(&p, b"{\"version\": 1}").unwrap();
        assert!(Trace::load(&p, &tags).is_err());
        std::fs::write(&p, b"not json").unwrap();
        assert!(Trace::load(&p, &tags).is_err());
    }

    #[test]
    fn pipeline_tenant_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("trace.json");
        let tags: Vec<String> = [
            "wordcount 16KB text-16KB.txt",
            "wcmap 16KB text-16KB.part0.txt",
            "wcreduce 16KB -",
            "wcmap 1MB text-1MB.part0.txt",
            "wcreduce 1MB -",
        ]
        .map(String::from)
        .to_vec();
        let mut pipe = tenant(Arrival::Poisson, 5.0);
        pipe.function = super::super::pipeline::PIPELINE.into();
        pipe.inputs = vec![2, 4];
        let mut single = tenant(Arrival::Periodic, 3.0);
        single.inputs = vec![0];
        let mut t = generate(vec![single, pipe], 1.0, 2.0, 5).unwrap();
        t.inputs = tags.clone();
        t.save(&p).unwrap();
        let back = Trace::load(&p, &tags).unwrap();
        assert_eq!(back, t, "exact replay");
        let piped: Vec<usize> = back
            .arrivals
            .iter()
            .filter(|a| a.tenant == 1)
            .map(|a| a.input)
            .collect();
        assert!(piped.contains(&2) && piped.contains(&4), "{piped:?}");
        // A pipeline tenant whose input is not a reduce entry is refused.
        let mut bad = t.clone();
        bad.tenants[1].inputs = vec![1];
        for a in bad.arrivals.iter_mut().filter(|a| a.tenant == 1) {
            a.input = 1;
        }
        bad.save(&p).unwrap();
        let e = Trace::load(&p, &tags).unwrap_err();
        assert!(format!("{e:#}").contains("wcreduce"), "{e:#}");
        // An old trace (no `inputs` tags) still loads.
        let mut old = serde_json::to_value(&t).unwrap();
        old.as_object_mut().unwrap().remove("inputs");
        std::fs::write(&p, old.to_string()).unwrap();
        assert_eq!(Trace::load(&p, &tags).unwrap().arrivals, t.arrivals);
    }
}
