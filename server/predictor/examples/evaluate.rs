//! Replays a recorded memory data set (`bench/faas/record_memory.py`) through the predictor as
//! an online learner and prints the report (markdown).
//!
//! `cargo run --release -p faascache-predictor --example evaluate -- bench/faas/data/memory-2026-12-07.csv`
//!
//! A second argument, JSON, overrides fields of the default configuration, e.g.
//! `'{"margin_quantile": 0.9, "bucket_bytes": 8388608}'`.

use std::path::PathBuf;
use std::process::ExitCode;

use faascache_predictor::replay::{read_csv, replay};
use faascache_predictor::PredictorConfig;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: evaluate DATA.csv [CONFIG-JSON]");
        return ExitCode::from(2);
    };
    let cfg = match std::env::args()
        .nth(2)
        .map(|j| serde_json::from_str::<PredictorConfig>(&j))
    {
        None => PredictorConfig::default(),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("evaluate: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let result = read_csv(&path).and_then(|records| {
        println!("{}: {} invocations", path.display(), records.len());
        replay(&records, cfg)
    });
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("evaluate: {e}");
            ExitCode::FAILURE
        }
    }
}
