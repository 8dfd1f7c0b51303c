//! Per-function peak-memory predictor for FaaS invocations (issue 18).
//!
//! After each finished invocation the agent calls [`Predictor::observe`] with the invocation's
//! input features (sizes, image dimensions, parameters: what is known *before* it runs), the
//! memory the tenant booked and the peak it used. Before each new invocation,
//! [`Predictor::predict`] says how much memory to give it: the booked memory until the
//! function's model is mature, then the model's estimate plus a safety margin, never above the
//! booked memory (the platform enforces that limit anyway). An input larger than any the
//! model was trained on (by `max_extrapolation`) gets the booked memory too: trees do not
//! extrapolate.
//!
//! **Model.** Per function, a regression tree (smartcore's `DecisionTreeRegressor`) over the
//! features, fitted to the logarithm of the peak (see `fit.rs` for why). OFC used a J48
//! classification tree over 16 MB memory intervals; a regression tree is the same kind of
//! model without a fixed class set, and its estimate is rounded up to `bucket_bytes` like
//! OFC's interval bound.
//!
//! **Maturity.** A model is used when the function has at least `min_runs` observations *and*
//! the k-fold validation error of the model (mean relative error before the margin) is at most
//! `max_validation_error`. Until then, and for invalid features, the booked memory is predicted.
//!
//! **Margin.** prediction = round_up(estimate × m × (1 + `margin_factor`) + `margin_bytes`,
//! `bucket_bytes`), capped at booked, where m is the `margin_quantile` quantile of the k-fold
//! held-out ratios actual / estimate (at least 1). So the margin is as wide as this function's
//! own held-out errors, not a constant that fits one function and wastes memory on another.
//!
//! **Bounds.** `max_functions` (the least recently observed is forgotten), `max_samples` per
//! function (a window), `max_features` names per function; non-finite features are rejected.
//!
//! **Persistence.** [`Predictor::save`] writes the samples (versioned JSON, atomically: a
//! temporary file in the same directory, fsync, rename); [`Predictor::load`] retrains from them
//! (trees are deterministic), which keeps the file independent of smartcore's internals.
//!
//! **Why smartcore, not linfa-trees.** Evaluated for this crate (December 2026): linfa-trees
//! 0.8 has decision-tree *classification* only (no regression tree, no forest) and pulls
//! ndarray and the linfa framework; smartcore 0.7 (released 2026, maintained) has regression
//! and classification trees, random forests and linear models, is pure Rust without BLAS, and
//! builds in about 20 s here with default features off. A prediction is one tree walk, a few
//! microseconds (`examples/evaluate.rs` measures it).
//!
//! **Evaluation.** `cargo run --release -p faascache-predictor --example evaluate --
//! bench/faas/data/memory-2026-12-07.csv` replays a recorded data set as an online learner; the
//! test `tests/dataset.rs` asserts the targets on it. Numbers: `docs/faas.md`.

#![forbid(unsafe_code)]

mod config;
mod fit;
mod function;
mod persist;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use config::PredictorConfig;
use function::FunctionModel;

/// An invocation's input features by name (e.g. `input_bytes`, `width`, `format=JPEG`).
pub type Features = BTreeMap<String, f64>;

/// Where a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The booked memory: the function is unknown, its model is not mature, the features are
    /// invalid, or the input lies beyond the model's training set (`max_extrapolation`).
    Booked,
    /// The function's mature model, with its margin.
    Model,
}

/// A prediction of an invocation's peak memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction {
    /// The memory to give the invocation, in bytes (≤ booked).
    pub bytes: u64,
    pub source: Source,
    /// The model's estimate before the margin (`Source::Model` only).
    pub estimate: Option<u64>,
    /// Whether the model's prediction was above booked and was capped to it.
    pub capped: bool,
}

/// A function's learning state.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionStats {
    /// Invocations observed ever.
    pub runs: u64,
    /// Samples in the window.
    pub samples: usize,
    /// Whether predictions come from the model.
    pub mature: bool,
    /// The last training's k-fold validation error (mean relative error before the margin).
    pub validation_error: Option<f64>,
    /// The last training's multiplicative margin from held-out ratios.
    pub margin: Option<f64>,
    /// Invocations observed while the model was mature, and how many it under-predicted (what
    /// it would have predicted, checked against the peak on observe).
    pub checked: u64,
    pub under_predictions: u64,
    /// Trainings since this process started, and the last one's duration.
    pub trainings: u64,
    pub last_train_micros: u64,
    pub total_train_micros: u64,
    /// The feature names this function's model uses, and names ignored by the bounds.
    pub features: Vec<String>,
    pub ignored_feature_names: u64,
    /// Why the last training failed (e.g. too few samples), if it did.
    pub fit_error: Option<String>,
}

/// Why the predictor refused an observation or a file.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    #[error("feature {name:?} is {value}: features must be finite numbers")]
    NonFiniteFeature { name: String, value: f64 },
    #[error("peak of 0 bytes for function {function:?}: a finished invocation uses memory")]
    ZeroPeak { function: String },
    #[error("predictor file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("predictor file {path} is corrupt ({reason}); move it aside to start empty")]
    Corrupt { path: PathBuf, reason: String },
    #[error("predictor file {path} has format version {found}, this build reads {expected}")]
    Version { path: PathBuf, found: u32, expected: u32 },
}

/// Per-function peak-memory models. Not thread-safe by itself (`&mut` to observe): an agent
/// wraps it in a lock; predictions take microseconds.
#[derive(Debug)]
pub struct Predictor {
    cfg: PredictorConfig,
    functions: BTreeMap<String, FunctionModel>,
    /// Logical clock: observations ever, for least-recently-observed eviction.
    clock: u64,
    evicted: u64,
}

impl Predictor {
    pub fn new(cfg: PredictorConfig) -> Self {
        Predictor { cfg, functions: BTreeMap::new(), clock: 0, evicted: 0 }
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.cfg
    }

    /// Loads a predictor saved by [`Predictor::save`] and retrains its models. A missing file
    /// is an empty predictor; an unreadable, corrupt or other-version file is an error.
    pub fn load(path: &Path, cfg: PredictorConfig) -> Result<Self, PredictorError> {
        persist::load(path, cfg)
    }

    /// Writes the predictor's samples to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), PredictorError> {
        persist::save(self, path)
    }

    /// The memory to give the next invocation of `function` with `features`; `booked` is the
    /// tenant's limit (> 0).
    pub fn predict(&self, function: &str, features: &Features, booked: u64) -> Prediction {
        let fallback = Prediction { bytes: booked, source: Source::Booked, estimate: None, capped: false };
        if features.values().any(|v| !v.is_finite()) {
            return fallback;
        }
        let Some(model) = self.functions.get(function) else {
            return fallback;
        };
        let Some(fitted) = model.mature(&self.cfg) else {
            return fallback;
        };
        let row = model.row(features, fitted.width, &self.cfg);
        match FunctionModel::with_margin(fitted, row, &self.cfg) {
            Some((estimate, bytes)) => Prediction {
                bytes: bytes.min(booked),
                source: Source::Model,
                estimate: Some(estimate),
                capped: bytes > booked,
            },
            None => fallback,
        }
    }

    /// Records a finished invocation: its features, booked memory and measured peak. Trains the
    /// function's model when due (every `retrain_every` observations from `min_runs` on).
    pub fn observe(
        &mut self,
        function: &str,
        features: &Features,
        booked: u64,
        peak: u64,
    ) -> Result<(), PredictorError> {
        if let Some((name, &value)) = features.iter().find(|(_, v)| !v.is_finite()) {
            return Err(PredictorError::NonFiniteFeature { name: name.clone(), value });
        }
        if peak == 0 {
            return Err(PredictorError::ZeroPeak { function: function.to_string() });
        }
        if !self.functions.contains_key(function) {
            self.make_room();
        }
        self.clock += 1;
        let model = self.functions.entry(function.to_string()).or_default();
        model.last_used = self.clock;
        model.observe(features, booked, peak, &self.cfg);
        Ok(())
    }

    /// Forgets least recently observed functions until a new one fits.
    fn make_room(&mut self) {
        while self.functions.len() >= self.cfg.max_functions.max(1) {
            let oldest = self.functions.iter().min_by_key(|(_, m)| m.last_used).map(|(n, _)| n.clone());
            match oldest {
                Some(name) => {
                    self.functions.remove(&name);
                    self.evicted += 1;
                }
                None => break,
            }
        }
    }

    pub fn stats(&self, function: &str) -> Option<FunctionStats> {
        let m = self.functions.get(function)?;
        Some(FunctionStats {
            runs: m.runs,
            samples: m.samples.len(),
            mature: m.mature(&self.cfg).is_some(),
            validation_error: m.fitted.as_ref().map(|f| f.validation_error),
            margin: m.fitted.as_ref().map(|f| f.margin),
            checked: m.checked,
            under_predictions: m.under,
            trainings: m.trainings,
            last_train_micros: m.last_train_micros,
            total_train_micros: m.total_train_micros,
            features: m.names.clone(),
            ignored_feature_names: m.ignored_names,
            fit_error: m.fit_error.clone(),
        })
    }

    /// The functions with a model, in name order.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Functions forgotten to stay within `max_functions` since this process started.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}
