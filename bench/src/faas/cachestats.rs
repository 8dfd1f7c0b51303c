//! The cache's side of a backend's run (gateway, Python client): while the invocations run, a
//! sampler asks every master of the private cluster for its counters (`GetServerInfo`, as
//! `faascache status` shows them) once per period, and [`summarize`] turns the samples into the
//! report's hit ratio, write-back lag and cache memory over time.
//!
//! - **Hits and misses** are the masters' backed-table counters, the difference between the
//!   first and the last sample: a hit is a read answered from DRAM, a miss one that read
//!   through from the store. The harness runs one node, so every hit is local; a remote hit (the
//!   object cached by another node's master) needs a multi-node run and is not counted here.
//! - **Write-back lag** is the age of the oldest dirty object (`oldest_dirty_ms`) at each
//!   sample: how far the store trails the cache. Its median and maximum over the run.
//! - **Memory** is the masters' live log bytes and dirty bytes at each sample, beside their
//!   budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faascache_client::{Client, ClientOptions};
use serde::{Deserialize, Serialize};

use super::stats::percentile;

/// Samples kept per run at most (one a second: over a day); later ones are dropped.
pub const MAX_SAMPLES: usize = 100_000;

/// The cluster's counters at one moment, summed over its up masters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    pub budget_bytes: u64,
    pub live_bytes: u64,
    pub dirty_bytes: u64,
    /// Age of the oldest dirty object of any master (the largest), ms.
    pub oldest_dirty_ms: u64,
    pub hits: u64,
    pub misses: u64,
    pub store_reads: u64,
    pub uploads: u64,
    pub evicted: u64,
}

/// What the report shows of the cache for one backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Reads answered from DRAM during the run (all local: one node).
    pub hits: u64,
    /// Reads that went to the store.
    pub misses: u64,
    /// hits ÷ (hits + misses); `None` without reads.
    pub hit_ratio: Option<f64>,
    /// Objects written back to the store during the run.
    pub uploads: u64,
    /// Objects evicted during the run.
    pub evicted: u64,
    /// Write-back lag (oldest dirty object's age), median and largest over the samples, ms.
    pub wb_lag_p50_ms: f64,
    pub wb_lag_max_ms: u64,
    /// Largest live log bytes seen, and the budget then.
    pub peak_live_bytes: u64,
    pub budget_bytes: u64,
    /// Samples that failed (a master did not answer in time); they are not in `samples`.
    pub failed_samples: u64,
    pub samples: Vec<Sample>,
}

/// The summary of `samples` (in time order; `failed` samples were lost).
pub fn summarize(samples: Vec<Sample>, failed: u64) -> Summary {
    let (Some(first), Some(last)) = (samples.first().copied(), samples.last().copied()) else {
        return Summary {
            failed_samples: failed,
            ..Summary::default()
        };
    };
    let hits = last.hits.saturating_sub(first.hits);
    let misses = last.misses.saturating_sub(first.misses);
    let mut lags: Vec<f64> = samples.iter().map(|s| s.oldest_dirty_ms as f64).collect();
    let peak = samples
        .iter()
        .max_by_key(|s| s.live_bytes)
        .copied()
        .unwrap_or_default();
    Summary {
        hits,
        misses,
        hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        uploads: last.uploads.saturating_sub(first.uploads),
        evicted: last.evicted.saturating_sub(first.evicted),
        wb_lag_p50_ms: percentile(&mut lags, 0.5),
        wb_lag_max_ms: samples.iter().map(|s| s.oldest_dirty_ms).max().unwrap_or(0),
        peak_live_bytes: peak.live_bytes,
        budget_bytes: peak.budget_bytes,
        failed_samples: failed,
        samples,
    }
}

/// Samples a cluster in the background until [`Sampler::stop`].
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<Sample>, u64)>,
}

impl Sampler {
    /// Starts sampling the cluster whose coordinator is `locator` every `period`.
    pub fn start(locator: &str, period: Duration) -> anyhow::Result<Sampler> {
        let opts = ClientOptions::default().timeout(Duration::from_secs(2));
        let client = Client::connect_with(locator, opts)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("faas-cachestats".into())
            .spawn(move || {
                let start = Instant::now();
                let (mut samples, mut failed) = (Vec::new(), 0u64);
                loop {
                    match sample(&client, start) {
                        Ok(s) if samples.len() < MAX_SAMPLES => samples.push(s),
                        Ok(_) => {}
                        Err(_) => failed += 1,
                    }
                    // Sleep in short steps so that stop() is prompt; one last sample after it.
                    let until = Instant::now() + period;
                    while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50).min(period));
                    }
                    if flag.load(Ordering::Relaxed) {
                        if let Ok(s) = sample(&client, start) {
                            samples.push(s);
                        }
                        return (samples, failed);
                    }
                }
            })?;
        Ok(Sampler { stop, handle })
    }

    /// Takes a last sample, stops and summarizes.
    pub fn stop(self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok((samples, failed)) => summarize(samples, failed),
            Err(_) => Summary::default(),
        }
    }
}

/// One sample: every up master's counters, summed (the lag: the largest).
fn sample(client: &Client, start: Instant) -> faascache_client::Result<Sample> {
    let mut s = Sample {
        t_s: start.elapsed().as_secs_f64(),
        ..Sample::default()
    };
    for server in client.servers()? {
        if server.status != "up" || !server.services.contains("master") {
            continue;
        }
        let st = client.server_stats(&server.locator)?;
        s.budget_bytes += st.budget_bytes;
        s.live_bytes += st.live_bytes;
        s.dirty_bytes += st.cache.dirty_bytes;
        s.oldest_dirty_ms = s.oldest_dirty_ms.max(st.cache.oldest_dirty_ms);
        s.hits += st.cache.hits;
        s.misses += st.cache.misses;
        s.store_reads += st.cache.store_reads;
        s.uploads += st.cache.uploads;
        s.evicted += st.cache.evicted;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, hits: u64, misses: u64, lag: u64, live: u64) -> Sample {
        Sample {
            t_s,
            budget_bytes: 1 << 30,
            live_bytes: live,
            oldest_dirty_ms: lag,
            hits,
            misses,
            ..Sample::default()
        }
    }

    #[test]
    fn differences_between_first_and_last_sample() {
        let s = summarize(
            vec![
                at(0.0, 100, 10, 0, 5),
                at(1.0, 150, 12, 40, 9),
                at(2.0, 190, 20, 10, 7),
            ],
            1,
        );
        assert_eq!((s.hits, s.misses), (90, 10));
        assert_eq!(s.hit_ratio, Some(0.9));
        assert_eq!(s.wb_lag_max_ms, 40);
        assert_eq!(s.wb_lag_p50_ms, 10.0);
        assert_eq!(s.peak_live_bytes, 9);
        assert_eq!(s.budget_bytes, 1 << 30);
        assert_eq!(s.failed_samples, 1);
        assert_eq!(s.samples.len(), 3);
    }

    #[test]
    fn no_reads_no_ratio_and_no_samples_an_empty_summary() {
        let s = summarize(vec![at(0.0, 5, 5, 0, 1), at(1.0, 5, 5, 0, 1)], 0);
        assert_eq!(s.hit_ratio, None);
        let e = summarize(Vec::new(), 3);
        assert_eq!(e.hit_ratio, None);
        assert_eq!(e.failed_samples, 3);
        assert!(e.samples.is_empty());
    }

    #[test]
    fn a_restarted_counter_does_not_underflow() {
        let s = summarize(vec![at(0.0, 100, 10, 0, 1), at(1.0, 3, 1, 0, 1)], 0);
        assert_eq!((s.hits, s.misses), (0, 0));
    }
}
