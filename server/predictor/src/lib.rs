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
//! **Why smartcore, not linfa-trees.** Compared for this crate (December 2026, both current
//! on crates.io): linfa-trees 0.8.1 has decision-tree *classification* only (no regression
//! tree, no forest) and brings ndarray and the linfa framework; smartcore 0.7.0 has regression
//! and classification trees, random forests and linear models, is pure Rust without BLAS, and
//! with default features off needs only num, rand, ordered-float and approx. A prediction is
//! one tree walk: under 4 µs at p99 here (`examples/evaluate.rs` measures it). A classifier
//! over memory buckets like OFC's J48 would need a bucket set per function and could not
//! express "a little above the largest bucket seen"; the regression tree plus a margin can.
//!
//! **Evaluation.** `cargo run --release -p faascache-predictor --example evaluate --
//! bench/faas/data/memory-2026-12-07.csv` replays a recorded data set as an online learner; the
//! test `tests/dataset.rs` asserts the targets on it. Numbers: `docs/faas.md`.

#![forbid(unsafe_code)]

mod config;
mod error;
mod fit;
mod function;
mod persist;
mod predictor;
pub mod replay;
mod types;

pub use config::PredictorConfig;
pub use error::PredictorError;
pub use predictor::Predictor;
pub use types::{Features, FunctionStats, Prediction, Source};
