//! The predictor: per-function models behind `predict` and `observe`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::PredictorConfig;
use crate::error::PredictorError;
use crate::function::FunctionModel;
use crate::persist;
use crate::types::{Features, FunctionStats, Prediction, Source};

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
        Predictor {
            cfg,
            functions: BTreeMap::new(),
            clock: 0,
            evicted: 0,
        }
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.cfg
    }

    /// Loads a predictor saved by [`Predictor::save`] and retrains its models. A missing file
    /// is an empty predictor; an unreadable, corrupt or other-version file is an error.
    pub fn load(path: &Path, cfg: PredictorConfig) -> Result<Self, PredictorError> {
        let (clock, mut functions) = persist::load(path, &cfg)?;
        while functions.len() > cfg.max_functions.max(1) {
            let oldest = functions
                .iter()
                .min_by_key(|(_, m)| m.last_used)
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                functions.remove(&n);
            }
        }
        Ok(Predictor {
            cfg,
            functions,
            clock,
            evicted: 0,
        })
    }

    /// Writes the predictor's samples to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), PredictorError> {
        persist::save(path, self.clock, &self.functions)
    }

    /// The memory to give the next invocation of `function` with `features`; `booked` is the
    /// tenant's limit (> 0).
    pub fn predict(&self, function: &str, features: &Features, booked: u64) -> Prediction {
        let fallback = Prediction {
            bytes: booked,
            source: Source::Booked,
            estimate: None,
            capped: false,
        };
        if features.values().any(|v| !v.is_finite()) {
            return fallback;
        }
        let Some(model) = self.functions.get(function) else {
            return fallback;
        };
        let fitted = model.mature(&self.cfg);
        let modelled = fitted.and_then(|f| {
            FunctionModel::with_margin(f, model.row(features, f.width, &self.cfg), &self.cfg)
        });
        match (modelled, model.envelope(features, &self.cfg)) {
            (Some((estimate, bytes)), env) => {
                let bytes = match env {
                    Some(e) if self.cfg.envelope_caps_model => bytes.min(e),
                    _ => bytes,
                };
                Prediction {
                    bytes: bytes.min(booked),
                    source: Source::Model,
                    estimate: Some(estimate),
                    capped: bytes > booked,
                }
            }
            (None, Some(bytes)) if bytes < booked => Prediction {
                bytes,
                source: Source::Envelope,
                estimate: None,
                capped: false,
            },
            _ => fallback,
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
            return Err(PredictorError::NonFiniteFeature {
                name: name.clone(),
                value,
            });
        }
        if peak == 0 {
            return Err(PredictorError::ZeroPeak {
                function: function.to_string(),
            });
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
            let oldest = self
                .functions
                .iter()
                .min_by_key(|(_, m)| m.last_used)
                .map(|(n, _)| n.clone());
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
