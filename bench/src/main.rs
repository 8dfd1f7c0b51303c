//! `faascache-bench`: see `faascache-bench --help`.

#![deny(unsafe_code)]

use anyhow::{Context, Result};
use clap::Parser;
use faascache_bench::cli::{Opts, COMMANDS};
use faascache_bench::{plot, suite};
use std::path::PathBuf;

fn main() {
    let opts = Opts::parse();
    if let Err(e) = run(&opts) {
        eprintln!("faascache-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> Result<()> {
    match opts.test.as_str() {
        "churn" => faascache_bench::churn::run_and_check(opts).map(|_| ()),
        "recoveryReads" => faascache_bench::recovery_reads::run(opts).map(|_| ()),
        "backed" => faascache_bench::backed::run(opts),
        "faas" => faascache_bench::faas::run(opts),
        "list" => {
            for t in suite::TESTS {
                println!("{:<24} {}", t.name, t.description);
            }
            for (n, d) in COMMANDS {
                println!("{n:<24} {d}");
            }
            Ok(())
        }
        "render" => {
            let p = opts
                .json
                .as_ref()
                .context("render needs --json FILE (a results file)")?;
            let report = faascache_bench::report::Report::read_json(p)?;
            match &opts.markdown {
                Some(m) => std::fs::write(m, report.markdown())?,
                None => println!("{}", report.markdown()),
            }
            if let Some(d) = &opts.plots {
                let files = plot::write_all(d, &report.records)?;
                eprintln!("wrote {} plots into {}", files.len(), d.display());
            }
            Ok(())
        }
        "compare" => {
            let dir = opts.out.clone().unwrap_or_else(|| {
                let date = faascache_bench::procinfo::utc_now();
                PathBuf::from("bench/results").join(&date[..10])
            });
            let mut opts = opts.clone();
            if opts.client_core.is_empty() {
                // The client on another core than the servers (which `compare` pins).
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                if n > 1 {
                    opts.client_core = vec![(opts.server_core + 1) % n];
                }
            }
            if opts.restart_cmd.is_none() && std::path::Path::new("scripts/peers.sh").exists() {
                opts.restart_cmd = Some("scripts/peers.sh stop {peer} >/dev/null 2>&1; scripts/peers.sh start {peer} >/dev/null 2>&1".into());
            }
            let (report, notes) = suite::run_compare(&opts)?;
            std::fs::create_dir_all(&dir)?;
            report.write_json(&dir.join("results.json"))?;
            let mut md = report.markdown();
            if !notes.is_empty() {
                md.push_str("\n## Notes\n\n");
                for n in &notes {
                    md.push_str(&format!("- {n}\n"));
                }
            }
            std::fs::write(dir.join("results.md"), md)?;
            let files = plot::write_all(&dir, &report.records)?;
            eprintln!(
                "wrote {} (results.json, results.md, {} plots)",
                dir.display(),
                files.len()
            );
            Ok(())
        }
        _ => {
            let report = suite::run_single(opts)?;
            if let Some(p) = &opts.json {
                report.write_json(p)?;
                eprintln!("wrote {}", p.display());
            }
            if let Some(p) = &opts.markdown {
                std::fs::write(p, report.markdown())?;
                eprintln!("wrote {}", p.display());
            } else {
                println!(
                    "{}",
                    faascache_bench::report::markdown_table(report.records.iter())
                );
            }
            if let Some(d) = &opts.plots {
                let files = plot::write_all(d, &report.records)?;
                eprintln!("wrote {} plots into {}", files.len(), d.display());
            }
            Ok(())
        }
    }
}
