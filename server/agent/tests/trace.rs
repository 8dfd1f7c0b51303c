//! The trace replayer (`faascache_agent::trace`) on the recorded holdout data set and on small
//! synthetic traces: the orderings and invariants a correct replay must show.

#[path = "../examples/trace/model.rs"]
mod model;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use faascache_agent::trace::{arrival_times, run, Arrivals, Invocation, Sizing, TraceConfig};
use faascache_agent::{AgentError, MemoryModel};
use faascache_predictor::replay::read_csv;
use faascache_predictor::PredictorConfig;

const MIB: u64 = 1 << 20;

fn holdout() -> Vec<Invocation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/faas/data/holdout-seed19-2026-12-07.csv");
    model::invocations(&read_csv(&path).expect("the recorded holdout data set"))
}

#[test]
fn oracle_reclaims_most_then_predictor_then_booked() {
    let trace = holdout();
    assert_eq!(trace.len(), 240);
    for seed in [1, 2] {
        let cfg = TraceConfig {
            seed,
            ..TraceConfig::default()
        };
        let booked = run(&trace, &cfg, Sizing::Booked);
        let mut learner = model::Learner::with(PredictorConfig::default());
        let predicted = run(&trace, &cfg, Sizing::Model(&mut learner));
        let oracle = run(&trace, &cfg, Sizing::Oracle);
        for r in [&booked, &predicted, &oracle] {
            // Every invocation ran; the platform admits by booked memory, so the sandboxes'
            // lives do not depend on the sizing.
            assert_eq!(r.invocations, 240);
            assert_eq!(r.refused, 0);
            assert_eq!(r.sandboxes, booked.sandboxes);
            assert_eq!(r.queued, booked.queued);
            assert_eq!(r.mean_booked_free, booked.mean_booked_free);
            assert_eq!(r.mean_actual_free, booked.mean_actual_free);
            assert!(r.sandboxes >= r.max_live as u64 && r.max_live >= r.max_running);
            // Without a would-be OOM, cache + use ≤ node at every moment, so on average too.
            assert_eq!(r.oom_moments, 0, "{r:?}");
            assert!(r.of_actual_free() <= 1.0, "{r:?}");
            assert!(r.min_cache <= r.max_cache && r.mean_cache <= r.max_cache as f64);
            assert!(r.resize_count() > 0 || r.min_cache == r.max_cache);
        }
        assert!(
            oracle.of_booked_free() >= predicted.of_booked_free(),
            "seed {seed}"
        );
        assert!(
            predicted.of_booked_free() > booked.of_booked_free(),
            "seed {seed}"
        );
        assert!(oracle.of_actual_free() >= predicted.of_actual_free());
        assert_eq!(booked.exact_or_over, 240);
        assert_eq!(booked.over_bytes, booked.booked_over_bytes);
        assert_eq!((oracle.exact_or_over, oracle.over_bytes), (240, 0));
        assert_eq!((oracle.worst_miss, booked.worst_miss), (0, 0));
        assert_eq!(predicted.worst_miss > 0, predicted.exact_or_over < 240);
        assert_eq!(oracle.over_ratio(), None);
        assert!(predicted.exact_or_over_rate() >= 0.95, "{predicted:?}");
        assert!(predicted.over_ratio().is_some_and(|x| x > 1.0));
    }
}

/// A model that predicts 16 MiB whatever it is asked.
struct Tiny;

impl MemoryModel for Tiny {
    fn predict(&self, _: &str, _: &BTreeMap<String, f64>, _: u64) -> u64 {
        16 * MIB
    }
    fn observe(&mut self, _: &str, _: &BTreeMap<String, f64>, _: u64, _: u64) {}
    fn save(&self) -> Result<(), AgentError> {
        Ok(())
    }
}

fn big(n: usize) -> Vec<Invocation> {
    (0..n)
        .map(|i| Invocation {
            function: format!("f{}", i % 2),
            booked: 700 * MIB,
            peak: 600 * MIB,
            wall: Duration::from_secs(2),
            features: BTreeMap::new(),
        })
        .collect()
}

#[test]
fn under_predictions_show_as_would_be_ooms_and_pressure() {
    let cfg = TraceConfig {
        node_memory: 1 << 30,
        rate: 0.2,
        keep_alive: Duration::ZERO,
        policy: faascache_agent::PolicyConfig {
            grow_free: 0.0,
            settle: Duration::from_secs(1),
            ..Default::default()
        },
        ..TraceConfig::default()
    };
    let trace = big(10);
    let mut tiny = Tiny;
    let wrong = run(&trace, &cfg, Sizing::Model(&mut tiny));
    assert_eq!(wrong.invocations, 10);
    assert_eq!(wrong.exact_or_over, 0);
    assert_eq!(wrong.worst_miss, 584 * MIB);
    assert!(wrong.oom_moments >= 1, "{wrong:?}");
    assert!(wrong.oom_worst > 0 && wrong.min_headroom == 0);
    assert!(wrong.oom_time > Duration::ZERO);
    assert!(
        wrong.resizes[0] >= 1,
        "the next sample sees pressure: {wrong:?}"
    );
    let booked = run(&trace, &cfg, Sizing::Booked);
    let oracle = run(&trace, &cfg, Sizing::Oracle);
    assert_eq!((booked.oom_moments, oracle.oom_moments), (0, 0));
    assert!(oracle.mean_cache > booked.mean_cache);
}

#[test]
fn arrivals_are_seeded_and_at_the_rate() {
    let cfg = TraceConfig {
        rate: 5.0,
        seed: 7,
        ..TraceConfig::default()
    };
    let a = arrival_times(20_000, &cfg);
    assert_eq!(a, arrival_times(20_000, &cfg));
    assert_ne!(
        a,
        arrival_times(
            20_000,
            &TraceConfig {
                seed: 8,
                ..cfg.clone()
            }
        )
    );
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    let rate = a.len() as f64 / a[a.len() - 1].as_secs_f64();
    assert!((rate - 5.0).abs() < 0.25, "rate {rate}");
    let onoff = TraceConfig {
        arrivals: Arrivals::OnOff {
            on: Duration::from_secs(10),
            off: Duration::from_secs(30),
        },
        ..cfg
    };
    let b = arrival_times(2_000, &onoff);
    assert!(b.iter().all(|t| t.as_secs_f64() % 40.0 <= 10.0));
    assert!(b[b.len() - 1].as_secs_f64() > 3.5 * a[1_999].as_secs_f64());
}
