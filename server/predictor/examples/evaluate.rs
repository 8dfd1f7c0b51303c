//! Replays a recorded memory data set (`bench/faas/record_memory.py`) through the predictor as
//! an online learner and prints the report (markdown).
//!
//! `cargo run --release -p faascache-predictor --example evaluate -- bench/faas/data/memory-2026-12-07.csv`

use std::path::PathBuf;
use std::process::ExitCode;

use faascache_predictor::replay::{read_csv, replay};
use faascache_predictor::PredictorConfig;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: evaluate DATA.csv");
        return ExitCode::from(2);
    };
    let result = read_csv(&path).and_then(|records| {
        println!("{}: {} invocations", path.display(), records.len());
        replay(&records, PredictorConfig::default())
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
