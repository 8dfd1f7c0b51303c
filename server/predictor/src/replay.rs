//! Evaluation on a recorded data set: replay it in recorded order as an online learner
//! (predict, then observe) and tally the predictions against the measured peaks and against
//! the booked-memory baseline.
//!
//! The data set is the CSV of `bench/faas/record_memory.py`: columns `function`,
//! `booked_bytes`, `peak_bytes`, then features. `measure` and `wall_ms` are not features (they
//! are known only after the run). A numeric cell is a feature of the column's name; a text
//! cell `v` in column `c` is the one-hot feature `c=v` (1.0); an empty cell is a missing
//! feature. The CSV has no quoted fields.
//!
//! Definitions (per prediction p of an invocation with peak a and booked b):
//! - *exact or over*: p ≥ a (the invocation fits in what it was given);
//! - *within-bucket exact*: ⌈p / B⌉ = ⌈a / B⌉ for the configured bucket B (OFC's "exact": the
//!   predicted interval is the true one);
//! - *over-prediction*: max(p − a, 0), the memory given and not used; booked's is max(b − a, 0);
//! - *miss*: a − p when p < a.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::PredictorConfig;
use crate::error::PredictorError;
use crate::predictor::Predictor;
use crate::types::{Features, Source};

/// One recorded invocation.
#[derive(Debug, Clone)]
pub struct Record {
    pub function: String,
    pub booked: u64,
    pub peak: u64,
    pub features: Features,
    /// The run's wall time in milliseconds (column `wall_ms`, if present): not a feature, the
    /// trace replayer of `faascache-agent` uses it as the invocation's duration.
    pub wall_ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(transparent)]
    Predictor(#[from] PredictorError),
}

const NOT_FEATURES: [&str; 5] = [
    "function",
    "booked_bytes",
    "peak_bytes",
    "measure",
    "wall_ms",
];

/// Reads a recorded data set.
pub fn read_csv(path: &Path) -> Result<Vec<Record>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let parse_err = |line: usize, reason: String| ReplayError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let wc = col("wall_ms");
    let (Some(fc), Some(bc), Some(pc)) = (col("function"), col("booked_bytes"), col("peak_bytes"))
    else {
        return Err(parse_err(
            1,
            "need columns function, booked_bytes, peak_bytes".into(),
        ));
    };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(parse_err(
                i + 2,
                format!("{} cells for {} columns", cells.len(), header.len()),
            ));
        }
        let int = |c: usize| {
            cells[c]
                .parse::<u64>()
                .map_err(|e| parse_err(i + 2, format!("{}: {e}", header[c])))
        };
        let mut features = Features::new();
        for (h, cell) in header.iter().zip(&cells) {
            if NOT_FEATURES.contains(h) || cell.is_empty() {
                continue;
            }
            match cell.parse::<f64>() {
                Ok(v) => features.insert(h.to_string(), v),
                Err(_) => features.insert(format!("{h}={cell}"), 1.0),
            };
        }
        out.push(Record {
            function: cells[fc].to_string(),
            booked: int(bc)?,
            peak: int(pc)?,
            features,
            wall_ms: wc.and_then(|c| cells[c].parse::<f64>().ok()),
        });
    }
    Ok(out)
}

/// Counts over a set of predictions.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub n: u64,
    pub exact_or_over: u64,
    pub within_bucket: u64,
    pub over_bytes: u128,
    pub booked_over_bytes: u128,
    pub under: u64,
    /// The largest miss, in bytes, and its peak.
    pub worst_miss: u64,
    pub worst_miss_peak: u64,
}

impl Tally {
    fn add(&mut self, predicted: u64, peak: u64, booked: u64, bucket: u64) {
        self.n += 1;
        if predicted >= peak {
            self.exact_or_over += 1;
            self.over_bytes += u128::from(predicted - peak);
        } else {
            self.under += 1;
            if peak - predicted > self.worst_miss {
                self.worst_miss = peak - predicted;
                self.worst_miss_peak = peak;
            }
        }
        if predicted.div_ceil(bucket) == peak.div_ceil(bucket) {
            self.within_bucket += 1;
        }
        self.booked_over_bytes += u128::from(booked.saturating_sub(peak));
    }

    fn merge(&mut self, o: &Tally) {
        self.n += o.n;
        self.exact_or_over += o.exact_or_over;
        self.within_bucket += o.within_bucket;
        self.over_bytes += o.over_bytes;
        self.booked_over_bytes += o.booked_over_bytes;
        self.under += o.under;
        if o.worst_miss > self.worst_miss {
            self.worst_miss = o.worst_miss;
            self.worst_miss_peak = o.worst_miss_peak;
        }
    }

    /// Fraction of predictions at or over the peak.
    pub fn exact_or_over_rate(&self) -> f64 {
        self.exact_or_over as f64 / self.n.max(1) as f64
    }

    pub fn within_bucket_rate(&self) -> f64 {
        self.within_bucket as f64 / self.n.max(1) as f64
    }

    /// Mean over-prediction in bytes, of the predictor and of booked memory.
    pub fn mean_over(&self) -> f64 {
        self.over_bytes as f64 / self.n.max(1) as f64
    }

    pub fn booked_mean_over(&self) -> f64 {
        self.booked_over_bytes as f64 / self.n.max(1) as f64
    }

    /// How many times less memory the predictor over-gives than booked memory.
    pub fn over_ratio(&self) -> f64 {
        self.booked_mean_over() / self.mean_over().max(1.0)
    }
}

/// One function's (or all functions') results.
#[derive(Debug, Clone, Default)]
pub struct FunctionReport {
    /// Every prediction, booked ones (before maturity) included.
    pub all: Tally,
    /// The model's predictions only.
    pub model: Tally,
    /// The envelope's predictions only (no usable model yet).
    pub envelope: Tally,
    pub booked: u64,
    pub final_validation_error: Option<f64>,
    pub final_margin: Option<f64>,
    pub trainings: u64,
    pub train_micros: u64,
}

/// The result of a replay.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub functions: BTreeMap<String, FunctionReport>,
    pub overall: FunctionReport,
    /// Nanoseconds per `predict` call, sorted.
    pub predict_ns: Vec<u64>,
    /// Nanoseconds per `observe` call (training included when due), sorted.
    pub observe_ns: Vec<u64>,
    pub bucket: u64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

impl Report {
    pub fn predict_p50_ns(&self) -> u64 {
        percentile(&self.predict_ns, 0.5)
    }
    pub fn predict_p99_ns(&self) -> u64 {
        percentile(&self.predict_ns, 0.99)
    }
}

/// Replays `records` in order through a fresh predictor: predict, then observe.
pub fn replay(records: &[Record], cfg: PredictorConfig) -> Result<Report, ReplayError> {
    let bucket = cfg.bucket_bytes.max(1);
    let mut p = Predictor::new(cfg);
    let mut r = Report {
        bucket,
        ..Report::default()
    };
    for rec in records {
        let t = Instant::now();
        let pred = p.predict(&rec.function, &rec.features, rec.booked);
        r.predict_ns.push(t.elapsed().as_nanos() as u64);
        let f = r.functions.entry(rec.function.clone()).or_default();
        f.booked = f.booked.max(rec.booked);
        f.all.add(pred.bytes, rec.peak, rec.booked, bucket);
        match pred.source {
            Source::Model => f.model.add(pred.bytes, rec.peak, rec.booked, bucket),
            Source::Envelope => f.envelope.add(pred.bytes, rec.peak, rec.booked, bucket),
            Source::Booked => {}
        }
        let t = Instant::now();
        p.observe(&rec.function, &rec.features, rec.booked, rec.peak)?;
        r.observe_ns.push(t.elapsed().as_nanos() as u64);
    }
    for (name, f) in &mut r.functions {
        if let Some(s) = p.stats(name) {
            f.final_validation_error = s.validation_error;
            f.final_margin = s.margin;
            f.trainings = s.trainings;
            f.train_micros = s.total_train_micros;
        }
        r.overall.all.merge(&f.all);
        r.overall.model.merge(&f.model);
        r.overall.envelope.merge(&f.envelope);
        r.overall.trainings += f.trainings;
        r.overall.train_micros += f.train_micros;
    }
    r.predict_ns.sort_unstable();
    r.observe_ns.sort_unstable();
    Ok(r)
}

const MIB: f64 = (1u64 << 20) as f64;

fn row(f: &mut fmt::Formatter<'_>, name: &str, what: &str, t: &Tally) -> fmt::Result {
    writeln!(
        f,
        "| {name} | {what} | {} | {:.1} % | {:.1} % | {:.1} | {:.1} | {:.1}x | {} | {:.1} |",
        t.n,
        100.0 * t.exact_or_over_rate(),
        100.0 * t.within_bucket_rate(),
        t.mean_over() / MIB,
        t.booked_mean_over() / MIB,
        t.over_ratio(),
        t.under,
        t.worst_miss as f64 / MIB,
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bucket {} MiB; MiB figures are means per prediction",
            self.bucket >> 20
        )?;
        writeln!(f)?;
        writeln!(f, "| function | predictions | n | exact or over | within bucket | mean over (MiB) | booked mean over (MiB) | booked / ours | under | worst miss (MiB) |")?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|")?;
        for (name, r) in self
            .functions
            .iter()
            .chain([(&"all".to_string(), &self.overall)])
        {
            row(f, name, "all", &r.all)?;
            row(f, name, "model", &r.model)?;
            row(f, name, "envelope", &r.envelope)?;
        }
        writeln!(f)?;
        for (name, r) in &self.functions {
            writeln!(
                f,
                "{name}: booked {} MiB, final validation error {:.3}, margin x{:.3}, {} trainings in {:.1} ms",
                r.booked >> 20,
                r.final_validation_error.unwrap_or(f64::NAN),
                r.final_margin.unwrap_or(f64::NAN),
                r.trainings,
                r.train_micros as f64 / 1000.0,
            )?;
        }
        writeln!(
            f,
            "predict: p50 {:.1} us, p99 {:.1} us, max {:.1} us; observe (training included): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            self.predict_p50_ns() as f64 / 1000.0,
            self.predict_p99_ns() as f64 / 1000.0,
            percentile(&self.predict_ns, 1.0) as f64 / 1000.0,
            percentile(&self.observe_ns, 0.5) as f64 / 1000.0,
            percentile(&self.observe_ns, 0.99) as f64 / 1000.0,
            percentile(&self.observe_ns, 1.0) as f64 / 1000.0,
        )
    }
}
