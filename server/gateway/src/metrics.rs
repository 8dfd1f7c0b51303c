//! Request counters of one gateway (a leaf module): requests per operation, per status class,
//! and each operation's latency (p50/p99), shown by `GET /_faascache/status` and by
//! `faascache status`.
//!
//! The operation of a request is named by its handler ([`OpCounts::count`]); [`Requests::run`]
//! runs a request's future with a task-local slot the handler fills, so that the latency is
//! filed under the operation without the front ends passing it back.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

tokio::task_local! {
    static CURRENT_OP: Cell<&'static str>;
}

/// The latency label of a request no handler named (refused before an operation: a bad
/// signature, an unknown method or path).
pub const NO_OP: &str = "Other";

/// Per-operation request counts.
#[derive(Debug, Default)]
pub struct OpCounts(Mutex<BTreeMap<&'static str, u64>>);

impl OpCounts {
    /// Count one request of `op` (and name the running request's operation, for its latency).
    pub fn count(&self, op: &'static str) {
        *self.0.lock().entry(op).or_default() += 1;
        let _ = CURRENT_OP.try_with(|c| c.set(op));
    }
    /// A snapshot.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().clone()
    }
}

/// Latencies above this are recorded as this (one hour, in microseconds).
const MAX_US: u64 = 3_600_000_000;

/// Requests by status class and latency by operation.
#[derive(Debug, Default)]
pub struct Requests {
    /// 1xx..5xx (index 0..4); other codes count as 5xx.
    classes: [AtomicU64; 5],
    latency: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
}

/// One operation's latency summary, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Requests recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Requests {
    /// Run one request's future; returns its output and the operation its handler named
    /// ([`NO_OP`] if none did).
    pub async fn run<F: Future>(fut: F) -> (F::Output, &'static str) {
        CURRENT_OP
            .scope(Cell::new(NO_OP), async move {
                let out = fut.await;
                (out, CURRENT_OP.with(Cell::get))
            })
            .await
    }

    /// Record a finished request: its operation, HTTP status and time to the response head.
    pub fn record(&self, op: &'static str, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_US);
        let mut map = self.latency.lock();
        if !map.contains_key(op) {
            let Ok(h) = Histogram::new_with_bounds(1, MAX_US, 2) else {
                return;
            };
            map.insert(op, h);
        }
        if let Some(h) = map.get_mut(op) {
            h.saturating_record(us);
        }
    }

    /// Requests per status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub fn classes(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// Each operation's latency.
    pub fn latencies(&self) -> BTreeMap<&'static str, Latency> {
        self.latency
            .lock()
            .iter()
            .map(|(op, h)| {
                let l = Latency {
                    count: h.len(),
                    p50_us: h.value_at_quantile(0.5),
                    p99_us: h.value_at_quantile(0.99),
                    max_us: h.max(),
                };
                (*op, l)
            })
            .collect()
    }

    /// The status-JSON fields: `requests` (by class, with the total) and `latency_us`.
    pub fn to_json(&self) -> (serde_json::Value, serde_json::Value) {
        let c = self.classes();
        let requests = serde_json::json!({
            "total": c.iter().sum::<u64>(),
            "1xx": c[0], "2xx": c[1], "3xx": c[2], "4xx": c[3], "5xx": c[4],
        });
        let latency: serde_json::Map<String, serde_json::Value> = self
            .latencies()
            .into_iter()
            .map(|(op, l)| {
                let v = serde_json::json!({
                    "count": l.count, "p50": l.p50_us, "p99": l.p99_us, "max": l.max_us,
                });
                (op.to_string(), v)
            })
            .collect();
        (requests, serde_json::Value::Object(latency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handler_names_the_operation_of_its_latency() {
        let ops = OpCounts::default();
        let (v, op) = Requests::run(async {
            ops.count("GetObject");
            7
        })
        .await;
        assert_eq!((v, op), (7, "GetObject"));
        let ((), op) = Requests::run(async {}).await;
        assert_eq!(op, NO_OP);
        // Outside a request, counting still counts.
        ops.count("PutObject");
        assert_eq!(ops.snapshot().get("PutObject"), Some(&1));
        assert_eq!(ops.snapshot().get("GetObject"), Some(&1));
    }

    #[test]
    fn classes_and_percentiles() {
        let r = Requests::default();
        for ms in 1..=100 {
            r.record("GetObject", 200, Duration::from_millis(ms));
        }
        r.record("GetObject", 404, Duration::from_secs(7200));
        r.record(NO_OP, 99, Duration::ZERO);
        r.record(NO_OP, 600, Duration::ZERO);
        assert_eq!(r.classes(), [1, 100, 0, 1, 1]);
        let l = r.latencies()["GetObject"];
        assert_eq!(l.count, 101);
        // The 51st and 100th of 101 values (51 ms, 100 ms), to two significant digits.
        assert!((50_000..=52_000).contains(&l.p50_us), "{l:?}");
        assert!((99_000..=101_000).contains(&l.p99_us), "{l:?}");
        assert!(
            l.max_us >= MAX_US && l.max_us <= MAX_US + MAX_US / 100,
            "{l:?}"
        );
        let (req, lat) = r.to_json();
        assert_eq!(req["total"], 103);
        assert_eq!(req["4xx"], 1);
        assert_eq!(lat["Other"]["count"], 2);
    }
}
