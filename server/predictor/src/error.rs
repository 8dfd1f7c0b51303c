//! Why the predictor refused an observation or a file.

use std::path::PathBuf;

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
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}
