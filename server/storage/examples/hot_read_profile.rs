//! Profiling aid: reads a cache-resident set of keys in a loop (`perf record` this).
use faascache_storage::{Engine, EngineConfig, RejectRules, TableOptions};
fn main() {
    let e = Engine::new(EngineConfig::with_memory(64 << 20)).unwrap();
    e.create_table(1, TableOptions::default()).unwrap();
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("obj-{i:016}-key-pad30").into_bytes())
        .collect();
    for k in &keys {
        e.write(1, k, &[1u8; 100], &RejectRules::NONE).unwrap();
    }
    let mut buf = Vec::with_capacity(128);
    let t = std::time::Instant::now();
    let n = 20_000_000;
    for i in 0..n {
        buf.clear();
        e.read(
            1,
            &keys[(i * 7919) % keys.len()],
            &RejectRules::NONE,
            &mut buf,
        )
        .unwrap();
    }
    println!("{:.1} ns/read", t.elapsed().as_nanos() as f64 / n as f64);
}
