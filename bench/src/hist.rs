//! Latency histograms (HdrHistogram, nanosecond resolution, 3 significant digits) and summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest trackable latency: 100 s in nanoseconds.
const MAX_NS: u64 = 100_000_000_000;

/// A latency recorder; cheap to record into, mergeable across threads and runs.
#[derive(Debug, Clone)]
pub struct LatencyHist {
    h: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// Empty histogram.
    pub fn new() -> Self {
        Self {
            h: Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds"),
        }
    }

    /// Records one latency.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.record_ns(d.as_nanos().min(MAX_NS as u128) as u64);
    }

    /// Records one latency given in nanoseconds (clamped into the trackable range).
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.h.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds all samples of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        self.h.add(&other.h).expect("same bounds");
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// Value at quantile `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.h.is_empty() {
            return 0.0;
        }
        self.h.value_at_quantile(q) as f64 / 1000.0
    }

    /// Summary with the standard percentiles.
    pub fn summary(&self) -> Summary {
        Summary {
            samples: self.h.len(),
            p50_us: self.quantile_us(0.50),
            p90_us: self.quantile_us(0.90),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: if self.h.is_empty() {
                0.0
            } else {
                self.h.max() as f64 / 1000.0
            },
            min_us: if self.h.is_empty() {
                0.0
            } else {
                self.h.min() as f64 / 1000.0
            },
            mean_us: if self.h.is_empty() {
                0.0
            } else {
                self.h.mean() / 1000.0
            },
        }
    }

    /// Cumulative distribution as (latency µs, fraction ≤ latency), at most ~`points` points,
    /// spaced by quantile with extra resolution in the tail.
    pub fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(points + 8);
        let n = points.max(2);
        for i in 0..n {
            // 0 .. 0.99 linearly, then the tail by powers of ten
            let q = 0.99 * i as f64 / (n - 1) as f64;
            out.push((self.quantile_us(q), q));
        }
        for q in [0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0] {
            out.push((self.quantile_us(q), q));
        }
        out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        out
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// number of samples
    pub samples: u64,
    /// median
    pub p50_us: f64,
    /// 90th percentile
    pub p90_us: f64,
    /// 99th percentile
    pub p99_us: f64,
    /// 99.9th percentile
    pub p999_us: f64,
    /// maximum
    pub max_us: f64,
    /// minimum
    pub min_us: f64,
    /// mean
    pub mean_us: f64,
}

/// Median of a list (mean of the two middle values for an even count); 0 for an empty list.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median, min and max of a list: the "median with spread" the method checklist asks for.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// median
    pub median: f64,
    /// smallest
    pub min: f64,
    /// largest
    pub max: f64,
}

impl Spread {
    /// From a list of values.
    pub fn of(xs: &[f64]) -> Self {
        if xs.is_empty() {
            return Self::default();
        }
        Self {
            median: median(xs),
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// (max − min) / median, in percent.
    pub fn range_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            100.0 * (self.max - self.min) / self.median
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_values() {
        let mut h = LatencyHist::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.samples, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{}", s.p50_us);
        assert!((s.p90_us - 900.0).abs() <= 1.0);
        assert!((s.p99_us - 990.0).abs() <= 1.0);
        assert!((s.p999_us - 999.0).abs() <= 1.0);
        assert!((s.max_us - 1000.0).abs() <= 1.0);
        assert!((s.min_us - 1.0).abs() <= 0.01);
    }

    #[test]
    fn merging_adds_samples() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for _ in 0..100 {
            a.record(Duration::from_micros(10));
            b.record(Duration::from_micros(1000));
        }
        a.merge(&b);
        assert_eq!(a.len(), 200);
        let s = a.summary();
        assert!((s.p50_us - 10.0).abs() < 0.1);
        assert!((s.p99_us - 1000.0).abs() < 1.0);
    }

    #[test]
    fn empty_and_extreme_values_do_not_panic() {
        let mut h = LatencyHist::new();
        assert_eq!(h.summary().p50_us, 0.0);
        assert!(h.cdf(10).is_empty());
        h.record_ns(0);
        h.record(Duration::from_secs(1000));
        assert_eq!(h.len(), 2);
        let cdf = h.cdf(10);
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().1, 1.0);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = Spread::of(&[10.0, 12.0, 11.0]);
        assert_eq!(s.median, 11.0);
        assert_eq!(s.min, 10.0);
        assert_eq!(s.max, 12.0);
        assert!((s.range_pct() - 18.18).abs() < 0.01);
    }
}
