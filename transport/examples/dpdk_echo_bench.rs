//! Echo round trip over DPDK (memif) and over TCP loopback in the same run (feature `dpdk`):
//! server and client in one process (one EAL, two memif vdevs), one dispatch thread and the
//! client thread both spinning — one polling core per side — for each transport in turn,
//! `rounds` times alternating, so both see the same machine load.
//!
//! ```text
//! cargo run --release -p faascache-transport --features dpdk --example dpdk_echo_bench -- \
//!     [payload bytes=64] [iterations=20000] [rounds=3] [poll mode of both sides=spin] [nopin|pin]
//! ```
//! By default both threads are left to the scheduler: on the shared development VM, `pin` (client
//! on core 0, dispatch thread on core 1) gave scheduler-tick-quantised round trips (8 ms) for
//! both transports alike.
//! Prints p50 / p99 per round and the median of the per-round p50s, and the load average.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_transport::*;

fn run(loc: &str, size: usize, iters: usize, poll: PollMode, pin: bool) -> (Duration, Duration) {
    let server = serve(
        &loc.parse().expect("locator"),
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin,
            first_core: 1,
            poll,
            conn: Default::default(),
        },
    )
    .expect("serve");
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig {
            poll,
            ..Default::default()
        },
    )
    .expect("connect");
    let payload = vec![0xABu8; size];
    for _ in 0..1000.min(iters) {
        s.call(Opcode::Echo, &payload, Duration::from_secs(5))
            .expect("warm-up echo");
    }
    let mut lat = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let (st, r) = s
            .call(Opcode::Echo, &payload, Duration::from_secs(5))
            .expect("echo");
        lat.push(t.elapsed());
        assert!(st.is_ok() && r.len() == size);
    }
    // Stop the server while the client is idle (memif teardown), then drop the session.
    server.shutdown();
    drop(s);
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (pct(0.5), pct(0.99))
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = a.first().map_or(64, |s| s.parse().expect("size"));
    let iters: usize = a.get(1).map_or(20_000, |s| s.parse().expect("iterations"));
    let rounds: usize = a.get(2).map_or(3, |s| s.parse().expect("rounds"));
    let poll: PollMode = a
        .get(3)
        .map_or("spin", String::as_str)
        .parse()
        .expect("poll mode: spin, adaptive or block");
    let pin = a.get(4).is_some_and(|s| s == "pin");
    if pin {
        if let Some(c) = core_affinity::get_core_ids().and_then(|c| c.first().copied()) {
            core_affinity::set_for_current(c);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (mut tcp50, mut dpdk50) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (p50, p99) = run("tcp:host=127.0.0.1,port=0", size, iters, poll, pin);
        println!("round {r} tcp : p50={:.1}us p99={:.1}us", us(p50), us(p99));
        tcp50.push(p50);
        let sock = format!("/tmp/faascache-bench-{}-{r}.sock", std::process::id());
        let (p50, p99) = run(
            &format!("dpdk:vdev=memif,socket={sock},huge=0"),
            size,
            iters,
            poll,
            pin,
        );
        println!("round {r} dpdk: p50={:.1}us p99={:.1}us", us(p50), us(p99));
        dpdk50.push(p50);
    }
    tcp50.sort();
    dpdk50.sort();
    let (t, d) = (tcp50[tcp50.len() / 2], dpdk50[dpdk50.len() / 2]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "size={size} iters={iters} rounds={rounds} poll={poll} pin={pin}: median p50 tcp={:.1}us dpdk(memif)={:.1}us \
         ratio dpdk/tcp={:.2}; load average after: {}",
        us(t),
        us(d),
        d.as_secs_f64() / t.as_secs_f64(),
        load.trim()
    );
}
