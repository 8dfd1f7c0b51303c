//! One function's model: a smartcore regression tree over the features, fitted to the logarithm
//! of the peak, with its k-fold validation error and its margin.
//!
//! Why the logarithm: peaks span two orders of magnitude (10 MB for a small text, 500 MB for a
//! large blur) and their noise grows with them, so a tree fitted to bytes would split on the
//! large inputs only and leave the small ones one wide leaf. In log space a leaf's mean is a
//! geometric mean and the errors are relative, which is what a multiplicative margin covers.
//!
//! Why k-fold over the whole window rather than a hold-out of the newest samples: with 20–256
//! samples a hold-out of a few is noise; k-fold holds every sample out once, and its held-out
//! ratios actual / predicted are also the sample the margin's quantile is taken from. Fold `f`
//! is every sample whose index is `f` modulo `folds`: deterministic, so a model retrained from
//! persisted samples is the same model.

use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use crate::config::PredictorConfig;

type Tree = DecisionTreeRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// A fitted model.
#[derive(Debug)]
pub(crate) struct Fitted {
    tree: Tree,
    /// Features the tree was fitted on (the function's names at training time, in order).
    pub width: usize,
    /// Multiplicative margin from the held-out ratios: `max(1, quantile(actual / predicted))`.
    pub margin: f64,
    /// Mean relative error of the held-out predictions, before any margin.
    pub validation_error: f64,
    /// The largest value of each feature in the training set.
    pub max_seen: Vec<f64>,
}

/// Why fitting failed (smartcore's error, as text: it has no structure to act on).
#[derive(Debug)]
pub(crate) struct FitError(pub String);

fn params(cfg: &PredictorConfig) -> DecisionTreeRegressorParameters {
    DecisionTreeRegressorParameters::default()
        .with_max_depth(cfg.max_depth)
        .with_min_samples_leaf(cfg.min_samples_leaf.max(1))
        .with_min_samples_split(2 * cfg.min_samples_leaf.max(1))
}

fn matrix(rows: &[&[f64]], width: usize) -> Result<DenseMatrix<f64>, FitError> {
    let mut values = Vec::with_capacity(rows.len() * width);
    for r in rows {
        values.extend_from_slice(r);
    }
    DenseMatrix::new(rows.len(), width, values, false).map_err(|e| FitError(e.to_string()))
}

fn fit_tree(
    rows: &[&[f64]],
    y: Vec<f64>,
    width: usize,
    cfg: &PredictorConfig,
) -> Result<Tree, FitError> {
    let x = matrix(rows, width)?;
    Tree::fit(&x, &y, params(cfg)).map_err(|e| FitError(e.to_string()))
}

/// Fits a model to `rows` (each `width` long) and their peaks in bytes (all > 0).
pub(crate) fn train(
    rows: &[Vec<f64>],
    peaks: &[u64],
    width: usize,
    cfg: &PredictorConfig,
) -> Result<Fitted, FitError> {
    assert_eq!(rows.len(), peaks.len());
    assert!(rows.iter().all(|r| r.len() == width));
    let n = rows.len();
    let folds = cfg.folds.clamp(2, n.max(2));
    if n < 2 * folds || width == 0 {
        return Err(FitError(format!(
            "{n} samples of {width} features: too few to validate"
        )));
    }
    let logs: Vec<f64> = peaks.iter().map(|&p| (p.max(1) as f64).ln()).collect();
    // Held-out ratios of the samples inside their fold's training range, and of all of them.
    let (mut ratios, mut all_ratios) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut rel_err = 0.0;
    for f in 0..folds {
        let (mut train_rows, mut train_y, mut held) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            if i % folds == f {
                held.push(i);
            } else {
                train_rows.push(rows[i].as_slice());
                train_y.push(logs[i]);
            }
        }
        let fold_max = max_seen(&train_rows, width);
        let tree = fit_tree(&train_rows, train_y, width, cfg)?;
        let held_rows: Vec<&[f64]> = held.iter().map(|&i| rows[i].as_slice()).collect();
        let predicted = tree
            .predict(&matrix(&held_rows, width)?)
            .map_err(|e| FitError(e.to_string()))?;
        for (&i, p) in held.iter().zip(predicted) {
            let estimate = p.exp();
            let actual = peaks[i] as f64;
            all_ratios.push(actual / estimate);
            if !beyond(&rows[i], &fold_max, cfg.max_extrapolation) {
                ratios.push(actual / estimate);
            }
            rel_err += (estimate - actual).abs() / actual;
        }
    }
    // Too few in range to take a quantile of: use every held-out sample.
    if !cfg.margin_in_range_only || ratios.len() < folds {
        ratios = all_ratios;
    }
    ratios.sort_by(f64::total_cmp);
    let q = cfg.margin_quantile.clamp(0.0, 1.0);
    let m = ratios.len();
    let idx = ((q * m as f64).ceil() as usize).clamp(1, m) - 1;
    let all: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    Ok(Fitted {
        max_seen: max_seen(&all, width),
        tree: fit_tree(&all, logs, width, cfg)?,
        width,
        margin: ratios[idx].max(1.0),
        validation_error: rel_err / n as f64,
    })
}

/// The largest value of each feature over `rows`.
fn max_seen(rows: &[&[f64]], width: usize) -> Vec<f64> {
    (0..width)
        .map(|j| rows.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max))
        .collect()
}

/// Whether `row` lies beyond a training set whose largest values are `max_seen` (see
/// [`Fitted::beyond`]).
fn beyond(row: &[f64], max_seen: &[f64], slack: f64) -> bool {
    row.iter()
        .zip(max_seen)
        .any(|(&v, &m)| if m > 0.0 { v > m * slack } else { v > 0.0 })
}

impl Fitted {
    /// Whether `row` lies beyond the training set: some feature above `slack` times its largest
    /// seen value (or a feature seen only as 0 or missing now positive, e.g. a new format). A
    /// tree cannot extrapolate (it answers its largest leaf), and the features are sizes, so
    /// a larger input than any seen is the one most likely to be under-predicted.
    pub fn beyond(&self, row: &[f64], slack: f64) -> bool {
        beyond(row, &self.max_seen, slack)
    }

    /// The model's estimate in bytes for one feature row of `self.width` values, before margins.
    pub fn estimate(&self, row: Vec<f64>) -> Option<f64> {
        debug_assert_eq!(row.len(), self.width);
        let x = DenseMatrix::new(1, self.width, row, false).ok()?;
        let y = self.tree.predict(&x).ok()?;
        y.first().map(|l| l.exp()).filter(|e| e.is_finite())
    }
}
