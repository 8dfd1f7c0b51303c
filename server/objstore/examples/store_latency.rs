//! GET and PUT latency of the real stores through FaaSCache's clients: Swift through its S3
//! API, Swift's native API and moto, for 1 KB, 16 KB, 128 KB, 1 MB and 8 MB objects. Starts
//! the stores through `scripts/swift.sh` and `scripts/moto.sh`.
//!
//!   cargo run -p faascache-objstore --example store_latency [-- ROUNDS_SCALE]
//!
//! Each size is written and read a bounded number of times (200 at ≤ 128 KB, 50 at 1 MB, 20 at
//! 8 MB, times ROUNDS_SCALE, default 1) after 5 warm-up rounds; one client thread, so the
//! numbers are per-request latency, not throughput under load.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{pattern, Backend};
use faascache_objstore::{GetResult, ObjectStore, PutMeta};
use hdrhistogram::Histogram;

const SIZES: [(usize, &str); 5] = [
    (1_000, "1 KB"),
    (16_000, "16 KB"),
    (128_000, "128 KB"),
    (1_000_000, "1 MB"),
    (8_000_000, "8 MB"),
];

fn rounds(size: usize, scale: f64) -> usize {
    let base = match size {
        s if s <= 128_000 => 200.0,
        s if s <= 1_000_000 => 50.0,
        _ => 20.0,
    };
    ((base * scale) as usize).max(5)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn measure(b: Backend, s: &dyn ObjectStore, scale: f64) {
    for (size, label) in SIZES {
        let body = Bytes::from(pattern(size, 7));
        let n = rounds(size, scale);
        let mut put = Histogram::<u64>::new(3).unwrap();
        let mut get = Histogram::<u64>::new(3).unwrap();
        for i in 0..n + 5 {
            let key = format!("obj-{size}-{}", i % 8);
            let t = Instant::now();
            s.put(&key, body.clone().into(), &PutMeta::default())
                .expect("put");
            let put_us = t.elapsed().as_micros() as u64;
            let t = Instant::now();
            let GetResult::Found { body: got, .. } = s.get(&key, None).expect("get") else {
                panic!("{key} missing right after its put")
            };
            let get_us = t.elapsed().as_micros() as u64;
            assert_eq!(got.len(), size);
            if i >= 5 {
                put.record(put_us.max(1)).unwrap();
                get.record(get_us.max(1)).unwrap();
            }
        }
        let mbps = |h: &Histogram<u64>| size as f64 / (h.mean() / 1e6) / 1e6;
        println!(
            "{:<13} {:>7}  n={:<4} GET p50 {:>7.2} ms p99 {:>7.2} ms ({:>6.1} MB/s)   PUT p50 {:>7.2} ms p99 {:>7.2} ms ({:>6.1} MB/s)",
            b.name(),
            label,
            n,
            ms(&get, 0.5),
            ms(&get, 0.99),
            mbps(&get),
            ms(&put, 0.5),
            ms(&put, 0.99),
            mbps(&put)
        );
        for i in 0..8 {
            s.delete(&format!("obj-{size}-{i}")).expect("delete");
        }
    }
}

fn main() {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS_SCALE is a number"))
        .unwrap_or(1.0);
    for b in Backend::ALL {
        let Some(s) = b.open("store_latency") else {
            println!("{}: not installed, skipped", b.name());
            continue;
        };
        s.check().expect("the store is reachable");
        measure(b, s.as_ref(), scale);
    }
}
