//! `faascache-bench backed` (formerly `faascache-bench faas`; its flags keep the `--faas-` prefix): backed tables against a real object store (issue 16), in one run.
//!
//! Against a running cluster (`--dir`/`--coordinator`) whose servers have the store's
//! credentials (environment or `--store-config`), and the same credentials in this process's
//! environment, for each size of `--faas-sizes`:
//!
//! 1. *store*: PUT then GET `n` objects straight to the store (`--faas-store`, through
//!    `faascache-objstore`, the clients the servers use);
//! 2. *miss*: a new write-back table backed by the same URL; the first read of each of those
//!    objects through the Rust client reads through from the store;
//! 3. *hit*: three more reads of each;
//! 4. *write-back PUT* (sizes that fit one value, ≤ 1 MiB): client writes of new keys,
//!    acknowledged once replicated, not uploaded;
//!
//! then *drain*: `--faas-drain-objects` objects of 128 KB written to a write-back table and
//! `flush`ed, timed from the first write to the flush's return (objects/s, MB/s), while one
//! client reads hits of 1 KB objects; their p99 during the drain is compared with an idle
//! window of the same length just before.
//!
//! Prints p50/p99 per phase and size and the ratios the issue targets: hit ≤ 1/20 of the
//! store's GET p50 at ≤ 128 KB and ≤ 1/5 at 8 MB, miss ≤ 1.2 × the store's GET, write-back PUT
//! ≤ 1/10 of the store's PUT p50 at ≤ 1 MB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faascache_client::{Client, TableId};
use faascache_objstore::{ClientOptions, GetResult, ObjectStore, PutMeta, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

use crate::cli::Opts;
use crate::hist::LatencyHist;

/// Largest value a client `write` carries (the protocol's value limit).
const MAX_WRITE: usize = 1024 * 1024;

/// One phase's latencies for one size.
#[derive(Debug, Default)]
struct Row {
    size: usize,
    store_put: LatencyHist,
    store_get: LatencyHist,
    miss: LatencyHist,
    hit: LatencyHist,
    wb_put: LatencyHist,
    /// Write-back PUTs each made once the previous one was uploaded (`flush`, not timed): the
    /// acknowledgement without uploads (and the store's own work, on this one machine)
    /// competing for the cores.
    wb_put_drained: LatencyHist,
}

fn rounds(size: usize, scale: f64) -> usize {
    let base = match size {
        s if s <= 128_000 => 200.0,
        s if s <= 1_000_000 => 50.0,
        _ => 20.0,
    };
    ((base * scale) as usize).max(5)
}

fn body(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn coordinator(opts: &Opts) -> Result<String> {
    match (&opts.coordinator, &opts.dir) {
        (Some(l), _) => Ok(l.clone()),
        (None, Some(d)) => faascache_client::cli::locator_from_dir(std::path::Path::new(d))
            .map_err(|e| anyhow::anyhow!(e)),
        (None, None) => bail!("backed needs --coordinator or --dir (a running cluster)"),
    }
}

/// The URL of the objects of one run: the store URL with `faasbench-RUN` appended to its
/// prefix, so runs never see each other's objects.
fn run_url(base: &str, run: &str) -> String {
    format!("{}/faasbench-{run}", base.trim_end_matches('/'))
}

fn read_any(c: &Client, t: TableId, key: &[u8], size: usize) -> Result<usize> {
    if size < MAX_WRITE {
        Ok(c.read(t, key)?.value.len())
    } else {
        Ok(c.read_object(t, key)?.1.len())
    }
}

fn measure_size(c: &Client, url: &str, run: &str, size: usize, scale: f64) -> Result<Row> {
    let store = open_store(url)?;
    let n = rounds(size, scale);
    let mut row = Row {
        size,
        ..Row::default()
    };
    let keys: Vec<String> = (0..n).map(|i| format!("s{size}/o{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let b = body(size, i as u64);
        let t = Instant::now();
        store
            .put(k, bytes::Bytes::from(b).into(), &PutMeta::default())
            .with_context(|| format!("store PUT {k}"))?;
        row.store_put.record(t.elapsed());
    }
    for k in &keys {
        let t = Instant::now();
        match store
            .get(k, None)
            .with_context(|| format!("store GET {k}"))?
        {
            GetResult::Found { body, .. } if body.len() == size => {}
            _ => bail!("store GET {k}: not the {size} bytes just written"),
        }
        row.store_get.record(t.elapsed());
    }
    let table = c
        .create_backed_table(
            &format!("faasbench-{run}-{size}"),
            1,
            &TableBacking::new(url, WritePolicy::WriteBack),
        )
        .context("creating the backed table")?;
    for k in &keys {
        let t = Instant::now();
        let got = read_any(c, table, k.as_bytes(), size)?;
        row.miss.record(t.elapsed());
        if got != size {
            bail!("miss on {k}: {got} bytes, expected {size}");
        }
    }
    for _ in 0..3 {
        for k in &keys {
            let t = Instant::now();
            let got = read_any(c, table, k.as_bytes(), size)?;
            row.hit.record(t.elapsed());
            if got != size {
                bail!("hit on {k}: {got} bytes, expected {size}");
            }
        }
    }
    // Above one value (1 MiB) the client writes in chunks and one commit.
    for i in 0..n {
        let b = body(size, 1_000_000 + i as u64);
        let t = Instant::now();
        c.write(table, format!("s{size}/w{i}").as_bytes(), &b)?;
        row.wb_put.record(t.elapsed());
    }
    // Leave nothing dirty behind for the next size's numbers.
    c.flush(table, None, Duration::from_secs(600))
        .context("flushing the write-back PUTs")?;
    for i in 0..n {
        let b = body(size, 2_000_000 + i as u64);
        let key = format!("s{size}/d{i}");
        let t = Instant::now();
        c.write(table, key.as_bytes(), &b)?;
        row.wb_put_drained.record(t.elapsed());
        c.flush(table, Some(key.as_bytes()), Duration::from_secs(600))
            .context("flushing a write-back PUT")?;
    }
    Ok(row)
}

fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let settings = Settings::resolve(Settings::default(), None)
        .context("store credentials (AWS_* / ST_* / OS_* or FAASCACHE_STORE_CONFIG)")?;
    faascache_objstore::open(url, &settings, &ClientOptions::default())
        .with_context(|| format!("opening {url}"))
}

/// Drain rate and the foreground reads' p99, idle vs while draining.
#[derive(Debug)]
struct Drain {
    objects: usize,
    bytes: usize,
    secs: f64,
    idle: LatencyHist,
    busy: LatencyHist,
}

fn reads_for(c: &Client, table: TableId, keys: &[String], window: Duration) -> LatencyHist {
    let mut h = LatencyHist::new();
    let end = Instant::now() + window;
    let mut i = 0;
    while Instant::now() < end {
        let t = Instant::now();
        if c.read(table, keys[i % keys.len()].as_bytes()).is_ok() {
            h.record(t.elapsed());
        }
        i += 1;
    }
    h
}

fn measure_drain(c: &Arc<Client>, url: &str, run: &str, objects: usize) -> Result<Drain> {
    const SIZE: usize = 128_000;
    let hot = c.create_backed_table(
        &format!("faasbench-{run}-hot"),
        1,
        &TableBacking::new(url, WritePolicy::WriteBack),
    )?;
    let hot_keys: Vec<String> = (0..64).map(|i| format!("hot/{i}")).collect();
    for k in &hot_keys {
        c.write(hot, k.as_bytes(), &body(1000, 7))?;
    }
    c.flush(hot, None, Duration::from_secs(120))?;
    let drain = c.create_backed_table(
        &format!("faasbench-{run}-drain"),
        1,
        &TableBacking::new(url, WritePolicy::WriteBack),
    )?;
    // A first pass to know the window: the drain's length is not known in advance, so the idle
    // window is measured after, with the same length, on the same table.
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, keys2, stop2) = (c.clone(), hot_keys.clone(), stop.clone());
    let reader = std::thread::spawn(move || {
        let mut h = LatencyHist::new();
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) {
            let t = Instant::now();
            if c2.read(hot, keys2[i % keys2.len()].as_bytes()).is_ok() {
                h.record(t.elapsed());
            }
            i += 1;
        }
        h
    });
    let start = Instant::now();
    let b = body(SIZE, 3);
    for i in 0..objects {
        c.write(drain, format!("d/{i}").as_bytes(), &b)?;
    }
    c.flush(drain, None, Duration::from_secs(1800))
        .context("flushing the drain table")?;
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let busy = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    let idle = reads_for(c, hot, &hot_keys, Duration::from_secs_f64(secs.min(30.0)));
    Ok(Drain {
        objects,
        bytes: objects * SIZE,
        secs,
        idle,
        busy,
    })
}

fn ms(h: &LatencyHist, q: f64) -> f64 {
    h.quantile_us(q) / 1000.0
}

fn print_rows(url: &str, rows: &[Row]) {
    println!("# faas: {url} — latency ms (p50 / p99), one client, one request at a time");
    println!(
        "| size | store PUT | store GET | miss | hit | write-back PUT | wb PUT, uploads drained | hit ÷ store GET (p50) | miss ÷ store GET | wb PUT ÷ store PUT | drained ÷ store PUT |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let pair = |h: &LatencyHist| {
            if h.is_empty() {
                "—".to_string()
            } else {
                format!("{:.3} / {:.3}", ms(h, 0.5), ms(h, 0.99))
            }
        };
        // `a` relative to `b` (p50s): "1/N" when smaller, "N×" when larger.
        let ratio = |a: &LatencyHist, b: &LatencyHist| {
            if a.is_empty() || b.is_empty() {
                return "—".to_string();
            }
            let (a, b) = (ms(a, 0.5), ms(b, 0.5));
            if a < b {
                format!("1/{:.1}", b / a)
            } else {
                format!("{:.2}×", a / b)
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.size,
            pair(&r.store_put),
            pair(&r.store_get),
            pair(&r.miss),
            pair(&r.hit),
            pair(&r.wb_put),
            pair(&r.wb_put_drained),
            ratio(&r.hit, &r.store_get),
            ratio(&r.miss, &r.store_get),
            ratio(&r.wb_put, &r.store_put),
            ratio(&r.wb_put_drained, &r.store_put),
        );
    }
}

/// Runs the benchmark; prints a Markdown table.
pub fn run(opts: &Opts) -> Result<()> {
    let base = opts
        .faas_store
        .as_deref()
        .context("faas needs --faas-store s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX]")?;
    let run = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let url = run_url(base, &run);
    let c = Arc::new(Client::connect(&coordinator(opts)?)?);
    let mut rows = Vec::new();
    for &size in &opts.faas_sizes {
        let r = measure_size(&c, &url, &run, size, opts.faas_rounds)
            .with_context(|| format!("size {size}"))?;
        eprintln!(
            "faas: {size} B done (store GET p50 {:.3} ms, hit p50 {:.3} ms)",
            ms(&r.store_get, 0.5),
            ms(&r.hit, 0.5)
        );
        rows.push(r);
    }
    print_rows(&url, &rows);
    if opts.faas_drain_objects > 0 {
        let d = measure_drain(&c, &url, &run, opts.faas_drain_objects)?;
        println!(
            "\n# drain: {} objects of 128 KB ({} MB) written and flushed in {:.2} s: {:.0} objects/s, {:.1} MB/s",
            d.objects,
            d.bytes / 1_000_000,
            d.secs,
            d.objects as f64 / d.secs,
            d.bytes as f64 / 1e6 / d.secs
        );
        println!(
            "# foreground 1 KB hits: idle p50 {:.3} ms p99 {:.3} ms ({} reads); during the drain p50 {:.3} ms p99 {:.3} ms ({} reads)",
            ms(&d.idle, 0.5),
            ms(&d.idle, 0.99),
            d.idle.len(),
            ms(&d.busy, 0.5),
            ms(&d.busy, 0.99),
            d.busy.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_urls_and_rounds() {
        assert_eq!(run_url("s3://b/p/", "7"), "s3://b/p/faasbench-7");
        assert_eq!(run_url("swift://c", "7"), "swift://c/faasbench-7");
        assert_eq!(rounds(1000, 1.0), 200);
        assert_eq!(rounds(8_000_000, 0.01), 5);
        assert_eq!(body(16, 1), body(16, 1));
        assert_ne!(body(16, 1), body(16, 2));
    }
}
