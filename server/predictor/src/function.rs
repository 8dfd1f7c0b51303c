//! One function's state: its feature names, its window of samples, its model and its counters.
//!
//! Invariants:
//! - `names.len() <= cfg.max_features`; a sample's `x` is as long as `names` was when it was
//!   observed (never longer), and is padded with `cfg.missing_value` when used.
//! - Samples are in observation order (`seq` increasing). The window is trimmed to
//!   `cfg.max_samples` only when the model is retrained, so every sample the current model was
//!   trained on (`seq <= trained_through`) is still in the window: a model rebuilt from persisted
//!   samples is the same model.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::PredictorConfig;
use crate::fit::{self, Fitted};

/// One observed invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Its run number for this function (0-based).
    pub seq: u64,
    pub x: Vec<f64>,
    pub peak: u64,
    pub booked: u64,
}

/// A function's learned state (persisted, less `fitted` which is rebuilt).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FunctionModel {
    pub names: Vec<String>,
    pub samples: VecDeque<Sample>,
    /// Observations ever (the next sample's `seq`).
    pub runs: u64,
    /// The last `seq` of the current model's training set.
    pub trained_through: Option<u64>,
    /// The predictor's logical clock at the last observation (least recently observed goes).
    pub last_used: u64,
    /// Observations made while the model was mature, and those the model under-predicted.
    pub checked: u64,
    pub under: u64,
    /// Feature names ignored because of `max_features` / `max_feature_name`.
    pub ignored_names: u64,
    #[serde(skip)]
    pub fitted: Option<Fitted>,
    /// Why the last training failed, if it did (the model is then absent).
    #[serde(skip)]
    pub fit_error: Option<String>,
    #[serde(skip)]
    pub trainings: u64,
    #[serde(skip)]
    pub last_train_micros: u64,
    #[serde(skip)]
    pub total_train_micros: u64,
}

impl FunctionModel {
    /// The model, if it is mature: enough runs and a validation error within the bound.
    pub fn mature(&self, cfg: &PredictorConfig) -> Option<&Fitted> {
        self.fitted
            .as_ref()
            .filter(|f| self.runs >= cfg.min_runs && f.validation_error <= cfg.max_validation_error)
    }

    /// The feature row for `features` in this function's name order (`width` values): unknown
    /// names are ignored, missing ones take `cfg.missing_value`.
    pub fn row(
        &self,
        features: &BTreeMap<String, f64>,
        width: usize,
        cfg: &PredictorConfig,
    ) -> Vec<f64> {
        self.names[..width]
            .iter()
            .map(|n| features.get(n).copied().unwrap_or(cfg.missing_value))
            .collect()
    }

    /// The envelope prediction (`PredictorConfig::envelope_margin`): bytes, not capped at
    /// booked; None when off, too few runs, a feature is unknown, or no sample dominates.
    pub fn envelope(&self, features: &BTreeMap<String, f64>, cfg: &PredictorConfig) -> Option<u64> {
        if cfg.envelope_margin <= 0.0 || self.runs < cfg.envelope_min_runs.max(1) {
            return None;
        }
        let unknown = |(n, v): (&String, &f64)| *v > 0.0 && !self.names.contains(n);
        if features.iter().any(unknown) {
            return None;
        }
        let width = self.names.len();
        let row = self.row(features, width, cfg);
        let dominates = |s: &&Sample| {
            (0..width).all(|j| s.x.get(j).copied().unwrap_or(cfg.missing_value) >= row[j])
        };
        let dominated = self.samples.iter().filter(dominates).map(|s| s.peak).min();
        // Else, inside the box of the largest values seen: the largest peak seen.
        let inside = || {
            let within = (0..width).all(|j| {
                let top = self
                    .samples
                    .iter()
                    .map(|s| s.x.get(j).copied().unwrap_or(cfg.missing_value));
                row[j] <= top.fold(f64::NEG_INFINITY, f64::max)
            });
            (cfg.envelope_box && within)
                .then(|| self.samples.iter().map(|s| s.peak).max())
                .flatten()
        };
        let peak = dominated.or_else(inside)?;
        let padded = peak as f64 * cfg.envelope_margin + cfg.margin_bytes as f64;
        let bucket = cfg.bucket_bytes.max(1);
        Some(
            (padded.ceil() as u64)
                .div_ceil(bucket)
                .saturating_mul(bucket),
        )
    }

    /// Learns the names of `features` not yet known (within the bounds) and returns its row.
    fn learn_row(&mut self, features: &BTreeMap<String, f64>, cfg: &PredictorConfig) -> Vec<f64> {
        for name in features.keys() {
            if self.names.iter().any(|n| n == name) {
                continue;
            }
            if self.names.len() < cfg.max_features && name.len() <= cfg.max_feature_name {
                self.names.push(name.clone());
            } else {
                self.ignored_names += 1;
            }
        }
        self.row(features, self.names.len(), cfg)
    }

    /// The estimate and the prediction in bytes for `row` from a fitted model: the prediction is
    /// estimate × margin × (1 + factor) plus the additive margin, rounded up to the bucket, not
    /// capped at booked. None when the row lies beyond the training set (`max_extrapolation`).
    pub fn with_margin(
        fitted: &Fitted,
        row: Vec<f64>,
        cfg: &PredictorConfig,
    ) -> Option<(u64, u64)> {
        if fitted.beyond(&row, cfg.max_extrapolation) {
            return None;
        }
        let estimate = fitted.estimate(row)?;
        let padded =
            estimate * fitted.margin * (1.0 + cfg.margin_factor.max(0.0)) + cfg.margin_bytes as f64;
        let bucket = cfg.bucket_bytes.max(1);
        let bytes = (padded.ceil() as u64)
            .div_ceil(bucket)
            .saturating_mul(bucket);
        Some((estimate.ceil() as u64, bytes))
    }

    /// Records one finished invocation (features already validated) and retrains if due.
    pub fn observe(
        &mut self,
        features: &BTreeMap<String, f64>,
        booked: u64,
        peak: u64,
        cfg: &PredictorConfig,
    ) {
        if let Some(f) = self.mature(cfg) {
            let row = self.row(features, f.width, cfg);
            if let Some((_, bytes)) = Self::with_margin(f, row, cfg) {
                self.checked += 1;
                if bytes.min(booked.max(1)) < peak.min(booked.max(1)) {
                    self.under += 1;
                }
            }
        }
        let x = self.learn_row(features, cfg);
        self.samples.push_back(Sample {
            seq: self.runs,
            x,
            peak: peak.max(1),
            booked,
        });
        self.runs += 1;
        let pending = match self.trained_through {
            None => self.runs,
            Some(t) => self.runs - 1 - t,
        };
        if self.runs >= cfg.min_runs
            && (self.fitted.is_none() || pending >= cfg.retrain_every.max(1))
        {
            while self.samples.len() > cfg.max_samples.max(1) {
                self.samples.pop_front();
            }
            self.train(self.runs - 1, cfg);
        }
    }

    /// (Re)fits the model on the samples with `seq <= through`.
    pub fn train(&mut self, through: u64, cfg: &PredictorConfig) {
        let start = Instant::now();
        let width = self.names.len();
        let used: Vec<&Sample> = self.samples.iter().filter(|s| s.seq <= through).collect();
        let rows: Vec<Vec<f64>> = used
            .iter()
            .map(|s| {
                let mut r = s.x.clone();
                r.resize(width, cfg.missing_value);
                r
            })
            .collect();
        let peaks: Vec<u64> = used.iter().map(|s| s.peak).collect();
        match fit::train(&rows, &peaks, width, cfg) {
            Ok(f) => (self.fitted, self.fit_error) = (Some(f), None),
            Err(e) => (self.fitted, self.fit_error) = (None, Some(e.0)),
        }
        self.trained_through = Some(through);
        self.trainings += 1;
        self.last_train_micros = start.elapsed().as_micros() as u64;
        self.total_train_micros += self.last_train_micros;
    }
}
