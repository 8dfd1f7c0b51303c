//! The predictor's rules: maturity, margin and cap, bounds, invalid input, persistence.

use std::time::Instant;

use faascache_predictor::{Features, Predictor, PredictorConfig, PredictorError, Source};

const MIB: u64 = 1 << 20;
const BOOKED: u64 = 1024 * MIB;

fn features(size: f64, kind: f64) -> Features {
    Features::from([
        ("input_bytes".to_string(), size),
        ("kind".to_string(), kind),
    ])
}

/// A function whose peak is 20 MiB + 8 × input, with ±2 % deterministic wobble.
fn peak(i: u64, size: f64) -> u64 {
    let wobble = 1.0 + 0.02 * ((i * 7919 % 11) as f64 / 5.0 - 1.0);
    ((20 * MIB) as f64 + 8.0 * size * wobble) as u64
}

fn size(i: u64) -> f64 {
    // Sizes from 64 KiB to ~48 MiB, spread over the range in a scrambled order.
    (64 * 1024) as f64 * 1.04f64.powi((i * 37 % 170) as i32)
}

fn trained(cfg: PredictorConfig, runs: u64) -> Predictor {
    let mut p = Predictor::new(cfg);
    for i in 0..runs {
        let s = size(i);
        p.observe("resize", &features(s, (i % 2) as f64), BOOKED, peak(i, s))
            .unwrap();
    }
    p
}

/// The defaults without the envelope: the model's own rules.
fn model_only() -> PredictorConfig {
    PredictorConfig {
        envelope_margin: 0.0,
        ..PredictorConfig::default()
    }
}

#[test]
fn booked_until_mature_then_model() {
    let cfg = model_only();
    let min_runs = cfg.min_runs;
    let p = trained(cfg.clone(), min_runs - 1);
    let f = features(4.0 * MIB as f64, 0.0);
    let before = p.predict("resize", &f, BOOKED);
    assert_eq!((before.source, before.bytes), (Source::Booked, BOOKED));
    assert!(!p.stats("resize").unwrap().mature);
    assert_eq!(p.predict("unknown", &f, BOOKED).source, Source::Booked);

    let p = trained(cfg.clone(), 120);
    let stats = p.stats("resize").unwrap();
    assert!(stats.mature, "{stats:?}");
    assert!(
        stats.validation_error.unwrap() < cfg.max_validation_error,
        "{stats:?}"
    );
    let after = p.predict("resize", &f, BOOKED);
    assert_eq!(after.source, Source::Model);
    let actual = 20 * MIB + 32 * MIB;
    assert!(
        after.bytes >= actual && after.bytes < BOOKED / 4,
        "{after:?} for a peak of {actual}"
    );
    assert_eq!(
        after.bytes % cfg.bucket_bytes,
        0,
        "rounded up to the bucket"
    );
}

#[test]
fn unexplained_memory_stays_booked() {
    // Peaks unrelated to the features: the validation error stays above the bound.
    let mut p = Predictor::new(model_only());
    for i in 0..100u64 {
        let noise = i * 2_654_435_761 % 1000;
        p.observe(
            "random",
            &features(size(i), 0.0),
            BOOKED,
            (10 + noise) * MIB,
        )
        .unwrap();
    }
    let s = p.stats("random").unwrap();
    assert!(!s.mature, "{s:?}");
    assert!(s.validation_error.unwrap() > PredictorConfig::default().max_validation_error);
    assert_eq!(
        p.predict("random", &features(1e6, 0.0), BOOKED).source,
        Source::Booked
    );
}

#[test]
fn envelope_before_maturity() {
    let cfg = PredictorConfig::default();
    assert!(cfg.envelope_margin > 0.0 && cfg.envelope_min_runs < cfg.min_runs);
    let too_few = trained(cfg.clone(), cfg.envelope_min_runs - 1);
    let small = features(size(0), 0.0);
    assert_eq!(
        too_few.predict("resize", &small, BOOKED).source,
        Source::Booked
    );

    let p = trained(cfg.clone(), cfg.min_runs - 1);
    assert!(!p.stats("resize").unwrap().mature);
    // Sizes seen so far (kinds 0 and 1 alternate), smallest first.
    let mut seen: Vec<(f64, u64)> = (0..cfg.min_runs - 1)
        .map(|i| (size(i), peak(i, size(i))))
        .collect();
    seen.sort_by(|a, b| a.0.total_cmp(&b.0));
    for &(s, _) in &seen {
        let pr = p.predict("resize", &features(s, 0.0), BOOKED);
        // Every seen sample of kind ≥ 0 and size ≥ s dominates; the smallest peak among them.
        let bound = seen
            .iter()
            .filter(|(t, _)| *t >= s)
            .map(|(_, pk)| *pk)
            .min()
            .unwrap();
        let want = ((bound as f64 * cfg.envelope_margin) as u64 + cfg.margin_bytes)
            .div_ceil(cfg.bucket_bytes)
            * cfg.bucket_bytes;
        assert_eq!(pr.source, Source::Envelope, "size {s}");
        assert!(
            pr.bytes >= want - cfg.bucket_bytes && pr.bytes <= want,
            "{pr:?} vs {want}"
        );
        assert!(pr.bytes >= peak(0, s) && pr.bytes < BOOKED, "{pr:?}");
    }
    let largest = seen.last().unwrap().0;
    let beyond = p.predict("resize", &features(largest * 1.01, 0.0), BOOKED);
    assert_eq!(beyond.source, Source::Booked, "larger than any seen input");
    let mut new_kind = features(seen[0].0, 0.0);
    new_kind.insert("format=GIF".into(), 1.0);
    assert_eq!(
        p.predict("resize", &new_kind, BOOKED).source,
        Source::Booked,
        "a category never seen"
    );
}

#[test]
fn prediction_is_capped_at_booked() {
    let p = trained(PredictorConfig::default(), 120);
    let f = features(40.0 * MIB as f64, 1.0);
    let small_booking = 64 * MIB;
    let pr = p.predict("resize", &f, small_booking);
    assert_eq!(
        (pr.source, pr.bytes, pr.capped),
        (Source::Model, small_booking, true)
    );
}

#[test]
fn missing_and_extra_features() {
    let p = trained(PredictorConfig::default(), 120);
    let mut f = Features::from([("input_bytes".to_string(), 1e6)]);
    assert_eq!(
        p.predict("resize", &f, BOOKED).source,
        Source::Model,
        "a missing feature"
    );
    f.insert("never_seen".into(), 3.0);
    assert_eq!(
        p.predict("resize", &f, BOOKED).source,
        Source::Model,
        "an unknown feature"
    );
}

#[test]
fn non_finite_features_are_rejected() {
    let mut p = trained(PredictorConfig::default(), 120);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let f = features(bad, 0.0);
        let err = p.observe("resize", &f, BOOKED, 30 * MIB).unwrap_err();
        assert!(
            matches!(err, PredictorError::NonFiniteFeature { .. }),
            "{err}"
        );
        assert_eq!(p.predict("resize", &f, BOOKED).source, Source::Booked);
    }
    assert_eq!(
        p.stats("resize").unwrap().runs,
        120,
        "rejected observations are not counted"
    );
    assert!(matches!(
        p.observe("resize", &features(1.0, 0.0), BOOKED, 0),
        Err(PredictorError::ZeroPeak { .. })
    ));
}

#[test]
fn bounds_functions_samples_features() {
    let cfg = PredictorConfig {
        max_functions: 2,
        max_samples: 30,
        max_features: 3,
        ..Default::default()
    };
    let mut p = Predictor::new(cfg.clone());
    let f = features(1e6, 0.0);
    p.observe("a", &f, BOOKED, 30 * MIB).unwrap();
    p.observe("b", &f, BOOKED, 30 * MIB).unwrap();
    p.observe("a", &f, BOOKED, 30 * MIB).unwrap();
    p.observe("c", &f, BOOKED, 30 * MIB).unwrap();
    assert_eq!(
        p.functions().collect::<Vec<_>>(),
        ["a", "c"],
        "b was the least recently observed"
    );
    assert_eq!(p.evicted(), 1);

    for i in 0..100u64 {
        let mut f = features(size(i), 0.0);
        f.insert(format!("extra{}", i % 5), 1.0);
        p.observe("a", &f, BOOKED, peak(i, size(i))).unwrap();
    }
    let s = p.stats("a").unwrap();
    assert!(
        s.samples <= cfg.max_samples + cfg.retrain_every as usize,
        "{s:?}"
    );
    assert_eq!(s.features.len(), 3, "{s:?}");
    assert!(s.ignored_feature_names > 0);
}

#[test]
fn save_load_round_trip_predicts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictor.json");
    let cfg = PredictorConfig::default();
    // 122 runs: the last two are observed after the last training (retrain every 4).
    let mut p = trained(cfg.clone(), 122);
    p.observe("other", &features(1.0, 0.0), BOOKED, 12 * MIB)
        .unwrap();
    p.save(&path).unwrap();
    let q = Predictor::load(&path, cfg).unwrap();
    for i in 0..200u64 {
        let f = features(size(i * 3), (i % 3) as f64);
        assert_eq!(
            p.predict("resize", &f, BOOKED),
            q.predict("resize", &f, BOOKED),
            "input {i}"
        );
    }
    let (a, b) = (p.stats("resize").unwrap(), q.stats("resize").unwrap());
    assert_eq!(
        (a.runs, a.samples, a.mature, a.validation_error, a.margin),
        (b.runs, b.samples, b.mature, b.validation_error, b.margin)
    );
    assert_eq!(q.functions().count(), 2);
    assert_eq!(q.stats("other").unwrap().runs, 1);
}

#[test]
fn missing_file_is_empty_and_corrupt_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictor.json");
    let p = Predictor::load(&path, PredictorConfig::default()).unwrap();
    assert_eq!(p.functions().count(), 0);

    std::fs::write(&path, b"{\"format\": \"faascache-predictor\", \"vers").unwrap();
    let err = Predictor::load(&path, PredictorConfig::default()).unwrap_err();
    assert!(matches!(err, PredictorError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");

    std::fs::write(
        &path,
        br#"{"format": "faascache-predictor", "version": 99}"#,
    )
    .unwrap();
    let err = Predictor::load(&path, PredictorConfig::default()).unwrap_err();
    assert!(
        matches!(err, PredictorError::Version { found: 99, .. }),
        "{err}"
    );

    // Well-formed JSON that breaks an invariant (a sample wider than the names).
    std::fs::write(
        &path,
        br#"{"format":"faascache-predictor","version":1,"clock":1,"functions":{"f":{"names":[],
        "samples":[{"seq":0,"x":[1.0],"peak":5,"booked":9}],"runs":1,"trained_through":null,
        "last_used":1,"checked":0,"under":0,"ignored_names":0}}}"#,
    )
    .unwrap();
    let err = Predictor::load(&path, PredictorConfig::default()).unwrap_err();
    assert!(matches!(err, PredictorError::Corrupt { .. }), "{err}");
}

#[test]
fn save_is_atomic_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictor.json");
    let p = trained(PredictorConfig::default(), 30);
    p.save(&path).unwrap();
    p.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["predictor.json"]);
}

#[test]
fn predict_takes_well_under_a_millisecond() {
    let p = trained(PredictorConfig::default(), 256);
    let mut ns = Vec::new();
    for i in 0..2000u64 {
        let f = features(size(i), (i % 2) as f64);
        let t = Instant::now();
        let pr = p.predict("resize", &f, BOOKED);
        ns.push(t.elapsed().as_nanos() as u64);
        assert_eq!(pr.source, Source::Model);
    }
    ns.sort_unstable();
    let p50 = ns[ns.len() / 2];
    eprintln!("predict: p50 {p50} ns, p99 {} ns", ns[ns.len() * 99 / 100]);
    // A sanity bound on a shared, loaded machine, not a benchmark.
    assert!(p50 < 1_000_000, "p50 {p50} ns");
}
