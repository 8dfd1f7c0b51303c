//! Echo round-trip latency through the full transport API (server and client in one process).
//!
//! ```text
//! cargo run --release -p faascache-transport --example echo_bench -- \
//!     [tcp|udp|loopback|infrc|<locator>] [server poll: spin|adaptive|block] [client poll] [payload bytes] [iterations] [pipeline depth]
//! ```
//! `infrc` (or an `infrc:` locator, e.g. `infrc:host=10.0.0.1,port=0,dev=mlx5_0,gid=3`) needs
//! `--features verbs` and an RDMA device; the client side picks its device from
//! `FAASCACHE_VERBS_DEV` (default: the first active one). See docs/transports.md, "Verbs".
//! Prints median / p99 / max round trip, throughput, and the server's CPU time per RPC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_transport::*;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let kind = a.first().map_or("tcp", String::as_str);
    let spoll: PollMode = a
        .get(1)
        .map_or("adaptive", String::as_str)
        .parse()
        .expect("server poll mode");
    let cpoll: PollMode = a
        .get(2)
        .map_or("adaptive", String::as_str)
        .parse()
        .expect("client poll mode");
    let size: usize = a.get(3).map_or(100, |s| s.parse().expect("size"));
    let iters: usize = a.get(4).map_or(20_000, |s| s.parse().expect("iterations"));
    let depth: usize = a.get(5).map_or(1, |s| s.parse().expect("depth"));
    // A bare kind, or a whole locator (e.g. `udp:host=127.0.0.1,port=0,mtu=9000`).
    let loc: ServiceLocator = match kind {
        "loopback" => "loopback:name=bench".parse().unwrap(),
        k if k.contains(':') => k.parse().unwrap(),
        k => format!("{k}:host=127.0.0.1,port=0").parse().unwrap(),
    };
    let server = serve(
        &loc,
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin: true,
            first_core: 1,
            poll: spoll,
            conn: Default::default(),
        },
    )
    .unwrap();
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig {
            poll: cpoll,
            ..Default::default()
        },
    )
    .unwrap();
    let payload = vec![0xABu8; size];
    for _ in 0..1000.min(iters) {
        s.call(Opcode::Echo, &payload, Duration::from_secs(5))
            .unwrap();
    }
    let cpu0 = server.cpu_time();
    let mut lat = Vec::with_capacity(iters);
    let t0 = Instant::now();
    if depth <= 1 {
        for _ in 0..iters {
            let t = Instant::now();
            let (st, r) = s
                .call(Opcode::Echo, &payload, Duration::from_secs(5))
                .unwrap();
            lat.push(t.elapsed());
            assert!(st.is_ok() && r.len() == size);
        }
    } else {
        let mut q = std::collections::VecDeque::new();
        for _ in 0..iters {
            if q.len() == depth {
                let (t, mut p): (Instant, PendingRpc) = q.pop_front().unwrap();
                p.wait(Duration::from_secs(5)).unwrap();
                lat.push(t.elapsed());
            }
            q.push_back((Instant::now(), s.send(Opcode::Echo, &payload).unwrap()));
        }
        for (t, mut p) in q {
            p.wait(Duration::from_secs(5)).unwrap();
            lat.push(t.elapsed());
        }
    }
    let total = t0.elapsed();
    let cpu = server.cpu_time() - cpu0;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "transport={kind} server_poll={spoll} client_poll={cpoll} size={size} iters={iters} depth={depth}: \
         median={:.1}us p99={:.1}us max={:.1}us throughput={:.0} rpc/s server_cpu_per_rpc={:.2}us",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        lat.last().unwrap().as_secs_f64() * 1e6,
        iters as f64 / total.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / iters as f64,
    );
    server.shutdown();
}
