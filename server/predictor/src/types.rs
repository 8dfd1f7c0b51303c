//! The values the predictor's API takes and gives.

use std::collections::BTreeMap;

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
    /// No usable model: the envelope of the samples (`PredictorConfig::envelope_margin`).
    Envelope,
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
