//! Measures the CPU an idle server's dispatch threads use in a poll mode (target for the
//! default adaptive mode: < 1 % of a core).
//!
//! ```text
//! cargo run --release -p faascache-transport --example idle_cpu -- [tcp|udp|loopback] [poll mode] [seconds] [dispatch threads, default 2]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_transport::*;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let kind = a.first().map_or("tcp", String::as_str);
    let poll: PollMode = a
        .get(1)
        .map_or("adaptive", String::as_str)
        .parse()
        .expect("poll mode");
    let secs: u64 = a.get(2).map_or(10, |s| s.parse().expect("seconds"));
    let cores: usize = a.get(3).map_or(2, |s| s.parse().expect("dispatch threads"));
    let loc: ServiceLocator = match kind {
        "loopback" => "loopback:name=idle".parse().unwrap(),
        k => format!("{k}:host=127.0.0.1,port=0").parse().unwrap(),
    };
    let server = serve(
        &loc,
        Arc::new(NoHandler),
        DispatchConfig {
            cores,
            pin: false,
            first_core: 0,
            poll,
            conn: Default::default(),
        },
    )
    .unwrap();
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap();
    for _ in 0..1000 {
        s.call(Opcode::Echo, b"warm", Duration::from_secs(5))
            .unwrap();
    }
    // The session stays open (an idle connected client) during the measurement.
    let (c0, p0, t0) = (server.cpu_time(), process_cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, p1, wall) = (server.cpu_time(), process_cpu_time(), t0.elapsed());
    println!(
        "transport={kind} poll={poll} cores={cores} idle {:.1}s: dispatch threads {:.3}% of one core, whole process {:.3}%",
        wall.as_secs_f64(),
        (c1 - c0).as_secs_f64() * 100.0 / wall.as_secs_f64(),
        (p1 - p0).as_secs_f64() * 100.0 / wall.as_secs_f64(),
    );
    drop(s);
    server.shutdown();
}
