//! A standalone echo server (no handler: the transport answers `Echo` and `Ping` itself), for
//! `faascache-bench echo --echo-locator LOCATOR` and other out-of-process measurements.
//!
//! ```text
//! cargo run --release -p faascache-transport --example echo_server -- \
//!     [locator, default tcp:host=127.0.0.1,port=12247] [poll: spin|adaptive[:DUR]|block] [core] [seconds]
//! ```
//! One dispatch thread, pinned to `core` when given. Prints the locator it serves, then runs for
//! `seconds` (default: until killed) and prints the dispatch thread's CPU use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_transport::*;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let loc: ServiceLocator = a
        .first()
        .map_or("tcp:host=127.0.0.1,port=12247", String::as_str)
        .parse()
        .expect("locator");
    let poll: PollMode = a
        .get(1)
        .map_or("spin", String::as_str)
        .parse()
        .expect("poll mode");
    let core: Option<usize> = a.get(2).map(|s| s.parse().expect("core"));
    let secs: Option<u64> = a.get(3).map(|s| s.parse().expect("seconds"));
    let server = serve(
        &loc,
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin: core.is_some(),
            first_core: core.unwrap_or(0),
            poll,
            conn: Default::default(),
        },
    )
    .expect("serve");
    println!(
        "serving {} poll={poll} core={}",
        server.local_locator(),
        core.map_or("unpinned".into(), |c| c.to_string())
    );
    let t0 = Instant::now();
    match secs {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    println!(
        "dispatch thread CPU: {:.1} % of a core over {:.1} s",
        server.cpu_time().as_secs_f64() * 100.0 / t0.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    server.shutdown();
}
