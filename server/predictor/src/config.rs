//! Every tunable of the predictor, each with its reason. The defaults are the ones the recorded
//! data set (`bench/faas/data/`) was evaluated with; `docs/faas.md` has the numbers.

use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;

/// The predictor's tunables. `PredictorConfig::default()` is the evaluated configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictorConfig {
    /// Runs a function must have been observed before its model may be used (default 20).
    /// Below it, k-fold validation has too few held-out samples to say anything and the margin
    /// (a quantile of held-out ratios) would be a guess; the booked memory is predicted instead.
    pub min_runs: u64,
    /// The largest validation error (mean relative error |predicted − actual| / actual of the
    /// model *before* the margin, over k-fold held-out samples) at which a model counts as mature
    /// (default 0.6). What keeps under-predictions rare is the margin (a quantile of the same
    /// held-out errors), not this bound; the bound keeps on booked memory the functions whose
    /// memory the features barely explain. On the recorded data set 0.25 kept blur on booked
    /// memory for some 75 runs past `min_runs` (its error was 0.3–0.5 while few large images
    /// had been seen), which gave away far more memory than its margin did (tried: 0.25, 0.4,
    /// 0.5, 0.6; `docs/faas.md`).
    pub max_validation_error: f64,
    /// Folds of the k-fold validation run at each training (default 5). Also yields the held-out
    /// ratios the margin is taken from, so every sample is held out exactly once.
    pub folds: usize,
    /// Quantile of held-out ratios actual / predicted used as the multiplicative margin (default
    /// 0.98): with it, about 2 % of held-out samples would still be under-predicted before the
    /// other two margins, which is what `margin_factor` and the bucket round-up absorb.
    pub margin_quantile: f64,
    /// Take that quantile only over the held-out samples inside their fold's training range
    /// (all of them when fewer than `folds` are), since an input beyond it gets booked memory
    /// anyway (default false: tried, it did not lower over-prediction on either recorded data
    /// set and added a miss on the long one — 4 under-predictions, worst 80.8 MiB, against 3 and
    /// 38.9 MiB; `docs/benchmarks.md` §13.1).
    pub margin_in_range_only: bool,
    /// Without a usable model (before `min_runs`, while immature, or for an input beyond the
    /// training set), predict from the *envelope* of the samples instead of the booked memory:
    /// the smallest peak among the samples that dominate the input — every feature at least the
    /// input's, the same one-hot categories — times this factor, plus `margin_bytes`, rounded
    /// up to the bucket (default 1.25; 0 turns it off). It assumes memory does not fall as
    /// every feature grows (sizes, dimensions, parameters); an input no sample dominates, or
    /// with a feature no sample had, still gets the booked memory.
    pub envelope_margin: f64,
    /// Also cap the model's prediction at the envelope's when both exist (default true): both
    /// are upper bounds, and with few samples the model's margin (the largest held-out ratio)
    /// is often the looser one.
    pub envelope_caps_model: bool,
    /// When no sample dominates but the input is inside the box of the largest values seen
    /// (no feature above its largest seen value), use the largest peak seen (default true).
    pub envelope_box: bool,
    /// Samples needed before the envelope is used (default 5).
    pub envelope_min_runs: u64,
    /// Extra multiplicative margin on top of the quantile (default 0.05): the quantile is of
    /// the past, and a new input can be a little larger than any seen.
    pub margin_factor: f64,
    /// Additive margin in bytes (default 4 MiB): small invocations vary by a few pages of
    /// interpreter state that no feature explains; a relative margin on them is too thin.
    pub margin_bytes: u64,
    /// Predictions are rounded up to a multiple of this (default 16 MiB, OFC's interval). The
    /// platform sets memory limits in whole units anyway, and "within-bucket exact" in the
    /// evaluation means the predicted and actual peak round up to the same bucket.
    pub bucket_bytes: u64,
    /// Functions with a model (default 1024). Observing a new function beyond it forgets the
    /// least recently observed one: a worker node's function set drifts, and each function
    /// costs up to `max_samples` samples of memory.
    pub max_functions: usize,
    /// Samples kept per function, newest last (default 256): the training window. Old samples
    /// age out so the model follows a function whose code or inputs change, and training time
    /// stays bounded (it is O(samples · features · log samples) per tree).
    pub max_samples: usize,
    /// Distinct feature names learned per function (default 32); names beyond it are ignored.
    /// Bounds the sample width against a caller that puts, e.g., a request id into a name.
    pub max_features: usize,
    /// Longest feature name accepted, in bytes (default 128); longer names are ignored.
    pub max_feature_name: usize,
    /// Retrain after this many new observations (default 4). One training is `folds + 1` tree
    /// fits (about a millisecond at 256 samples); every few runs is fresh enough, and a
    /// function at the maturity boundary is retrained as soon as it reaches `min_runs`.
    pub retrain_every: u64,
    /// An input whose feature exceeds the largest value of that feature in the training set by
    /// more than this factor (default 1.25), or that has a feature the training set never had
    /// above 0 (a new format), gets the booked memory: a tree cannot extrapolate, it answers
    /// with its largest leaf, and for size features a larger input means more memory.
    pub max_extrapolation: f64,
    /// The value a feature takes in a sample that lacks it (default −1). The features are sizes,
    /// dimensions and parameters (non-negative), so a tree can split missing ones apart.
    pub missing_value: f64,
    /// Deepest tree (default 10) and fewest samples per leaf (default 2): a leaf of one sample
    /// would make the held-out ratios (and so the margin) noisy; 3 averaged away the
    /// format-by-size corners of the image functions (more and larger misses on the data set).
    pub max_depth: u16,
    /// See `max_depth`.
    pub min_samples_leaf: usize,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            min_runs: 20,
            max_validation_error: 0.6,
            folds: 5,
            margin_quantile: 0.98,
            margin_in_range_only: false,
            envelope_margin: 1.25,
            envelope_min_runs: 5,
            envelope_caps_model: true,
            envelope_box: true,
            margin_factor: 0.05,
            margin_bytes: 4 * MIB,
            bucket_bytes: 16 * MIB,
            max_functions: 1024,
            max_samples: 256,
            max_features: 32,
            max_feature_name: 128,
            retrain_every: 4,
            max_extrapolation: 1.25,
            missing_value: -1.0,
            max_depth: 10,
            min_samples_leaf: 2,
        }
    }
}
