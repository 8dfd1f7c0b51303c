//! A DPDK echo server and client (feature `dpdk`), for the multi-process tests and for trying a
//! DPDK deployment by hand.
//!
//! ```text
//! faascache-dpdk-echo serve <locator> [cores]   # prints `LOCAL <locator>`, serves until stdin closes
//! faascache-dpdk-echo call <locator> <count>    # echoes `count` payloads of 0..=64 KiB, checks them
//! ```
//! `serve` serves the built-in Ping/Echo RPCs. `call` prints `OK <count>` when every echo came
//! back intact, else an error on stderr and exit status 1.

#![deny(unsafe_code)]

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use faascache_transport::{
    connect, serve, ClientConfig, DispatchConfig, LocatorError, NoHandler, Opcode, ServiceLocator,
    Status,
};

const USAGE: &str =
    "usage: faascache-dpdk-echo serve <dpdk-locator> [cores] | call <dpdk-locator> <count>";

/// Why the tool failed.
#[derive(Debug, thiserror::Error)]
enum EchoError {
    #[error("{USAGE}")]
    Usage,
    #[error(transparent)]
    Locator(#[from] LocatorError),
    #[error("{what} must be a number, not {value:?}")]
    NotANumber { what: &'static str, value: String },
    #[error(transparent)]
    Transport(#[from] faascache_transport::Error),
    #[error("stdin/stdout: {0}")]
    Io(#[from] std::io::Error),
    #[error("echo {i} ({n} bytes): {source}")]
    Echo {
        i: usize,
        n: usize,
        source: faascache_transport::Error,
    },
    #[error("echo {i} ({n} bytes) came back wrong (status {status:?})")]
    Wrong { i: usize, n: usize, status: Status },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 2 => run_serve(&args[1], args.get(2)),
        Some("call") if args.len() == 3 => run_call(&args[1], &args[2]),
        _ => Err(EchoError::Usage),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faascache-dpdk-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(loc: &str, cores: Option<&String>) -> Result<(), EchoError> {
    let loc: ServiceLocator = loc.parse()?;
    let cores = match cores {
        Some(c) => c.parse().map_err(|_| EchoError::NotANumber {
            what: "cores",
            value: c.clone(),
        })?,
        None => 1,
    };
    let server = serve(
        &loc,
        Arc::new(NoHandler),
        DispatchConfig {
            cores,
            pin: false,
            ..DispatchConfig::default()
        },
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LOCAL {}", server.local_locator())?;
    out.flush()?;
    drop(out);
    // Serve until stdin closes (the parent exits or closes it).
    let mut line = String::new();
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut line)? > 0 {
        line.clear();
    }
    server.shutdown();
    Ok(())
}

fn run_call(loc: &str, count: &str) -> Result<(), EchoError> {
    let loc: ServiceLocator = loc.parse()?;
    let count: usize = count.parse().map_err(|_| EchoError::NotANumber {
        what: "count",
        value: count.to_string(),
    })?;
    let s = connect(&loc, ClientConfig::default())?;
    for i in 0..count {
        let n = (i * 7919) % (64 * 1024 + 1);
        let p: Vec<u8> = (0..n)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        let (st, r) = s
            .call(Opcode::Echo, &p, Duration::from_secs(30))
            .map_err(|source| EchoError::Echo { i, n, source })?;
        if st != Status::OK || r != p {
            return Err(EchoError::Wrong { i, n, status: st });
        }
    }
    println!("OK {count}");
    Ok(())
}
