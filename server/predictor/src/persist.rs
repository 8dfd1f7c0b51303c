//! The predictor's file: versioned JSON of every function's samples and counters.
//!
//! Layout (version 1): `{"format": "faascache-predictor", "version": 1, "clock": u64,
//! "functions": {name: {names, samples: [{seq, x, peak, booked}], runs, trained_through,
//! last_used, checked, under, ignored_names}}}`. Models are not stored: `load` refits each one
//! on the samples with `seq <= trained_through`, which are exactly the ones it was fitted on
//! (see `function.rs`), so predictions after a load equal those before the save.
//!
//! Version changes: bump `VERSION` when a field changes meaning; a file of another version is
//! refused with [`PredictorError::Version`] rather than misread.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::PredictorConfig;
use crate::error::PredictorError;
use crate::function::FunctionModel;

const FORMAT: &str = "faascache-predictor";
const VERSION: u32 = 1;

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'a str,
    version: u32,
    clock: u64,
    functions: &'a BTreeMap<String, FunctionModel>,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
struct FileIn {
    clock: u64,
    functions: BTreeMap<String, FunctionModel>,
}

/// The functions and the clock, as the predictor holds them.
type State = (u64, BTreeMap<String, FunctionModel>);

pub(crate) fn save(
    path: &Path,
    clock: u64,
    functions: &BTreeMap<String, FunctionModel>,
) -> Result<(), PredictorError> {
    let io = |source| PredictorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let body = FileOut {
        format: FORMAT,
        version: VERSION,
        clock,
        functions,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| io(e.into()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(&bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // The rename is durable once the directory is; a failure here loses at most this save.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a file and refits its models; a missing file is an empty state.
pub(crate) fn load(path: &Path, cfg: &PredictorConfig) -> Result<State, PredictorError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, BTreeMap::new())),
        Err(source) => {
            return Err(PredictorError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |reason: String| PredictorError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if header.format != FORMAT {
        return Err(corrupt(format!(
            "format {:?}, expected {FORMAT:?}",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(PredictorError::Version {
            path: path.to_path_buf(),
            found: header.version,
            expected: VERSION,
        });
    }
    let file: FileIn = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut functions = BTreeMap::new();
    for (name, mut m) in file.functions {
        if let Some(r) = broken(&m) {
            return Err(corrupt(format!("function {name:?}: {r}")));
        }
        // A smaller configuration than the file's: trim to it (the model then differs).
        m.names.truncate(cfg.max_features);
        let width = m.names.len();
        for s in &mut m.samples {
            s.x.truncate(width);
        }
        let keep = cfg.max_samples.max(1) + cfg.retrain_every.max(1) as usize;
        while m.samples.len() > keep {
            m.samples.pop_front();
        }
        if let Some(t) = m.trained_through {
            m.train(t, cfg);
        }
        functions.insert(name, m);
    }
    Ok((file.clock, functions))
}

/// What JSON's types do not check: the invariants `function.rs` relies on. The broken one, if any.
fn broken(m: &FunctionModel) -> Option<String> {
    let mut last = None;
    for s in &m.samples {
        if s.x.len() > m.names.len() {
            return Some(format!(
                "sample {} has {} features for {} names",
                s.seq,
                s.x.len(),
                m.names.len()
            ));
        }
        if s.x.iter().any(|v| !v.is_finite()) || s.peak == 0 {
            return Some(format!(
                "sample {} has a non-finite feature or a zero peak",
                s.seq
            ));
        }
        if last.is_some_and(|l| s.seq <= l) || s.seq >= m.runs {
            return Some(format!(
                "sample {} is out of order (runs {})",
                s.seq, m.runs
            ));
        }
        last = Some(s.seq);
    }
    None
}
