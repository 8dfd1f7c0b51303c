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
    connect, serve, ClientConfig, DispatchConfig, NoHandler, Opcode, Status,
};

const USAGE: &str =
    "usage: faascache-dpdk-echo serve <dpdk-locator> [cores] | call <dpdk-locator> <count>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 2 => run_serve(&args[1], args.get(2)),
        Some("call") if args.len() == 3 => run_call(&args[1], &args[2]),
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faascache-dpdk-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(loc: &str, cores: Option<&String>) -> Result<(), String> {
    let loc = loc.parse().map_err(|e| format!("{e}"))?;
    let cores = match cores {
        Some(c) => c
            .parse()
            .map_err(|_| format!("cores must be a number, not {c:?}"))?,
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
    )
    .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LOCAL {}", server.local_locator()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    // Serve until stdin closes (the parent exits or closes it).
    let mut line = String::new();
    let stdin = std::io::stdin();
    while stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?
        > 0
    {
        line.clear();
    }
    server.shutdown();
    Ok(())
}

fn run_call(loc: &str, count: &str) -> Result<(), String> {
    let loc = loc.parse().map_err(|e| format!("{e}"))?;
    let count: usize = count
        .parse()
        .map_err(|_| format!("count must be a number, not {count:?}"))?;
    let s = connect(&loc, ClientConfig::default()).map_err(|e| e.to_string())?;
    for i in 0..count {
        let n = (i * 7919) % (64 * 1024 + 1);
        let p: Vec<u8> = (0..n)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        let (st, r) = s
            .call(Opcode::Echo, &p, Duration::from_secs(30))
            .map_err(|e| format!("echo {i} ({n} bytes): {e}"))?;
        if st != Status::OK || r != p {
            return Err(format!(
                "echo {i} ({n} bytes) came back wrong (status {st:?})"
            ));
        }
    }
    println!("OK {count}");
    Ok(())
}
