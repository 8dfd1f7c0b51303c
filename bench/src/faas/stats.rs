//! Per-invocation records and the report's cells: per backend × function × input size, the
//! E/T/L medians and p99 (as the function timed them), the end-to-end `/run` round trip as the
//! invoker saw it, cold and warm counts, and the end-to-end median's ratio to Swift direct's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One measured invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub backend: String,
    pub function: String,
    pub size: String,
    pub input_bytes: u64,
    pub extract_ms: f64,
    pub transform_ms: f64,
    pub load_ms: f64,
    /// `/run` round trip.
    pub run_ms: f64,
    /// Cold start time when this invocation started its sandbox.
    pub cold_ms: Option<f64>,
    /// Arrival to dispatch (queueing in the load generator).
    pub queued_ms: f64,
    /// Making the store's client in the function (first use in a sandbox; not in E or L).
    #[serde(default)]
    pub connect_ms: f64,
}

/// Median and p99 of a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Pct {
    pub p50: f64,
    pub p99: f64,
}

/// Nearest-rank percentile `q` (0–1) of `v` (sorted here); 0 for an empty sample.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn pct(mut v: Vec<f64>) -> Pct {
    Pct {
        p50: percentile(&mut v, 0.5),
        p99: percentile(&mut v, 0.99),
    }
}

/// Bytes of a size label (`16KB`, `1MB`, `3MiB`; binary units as gen_inputs.py), for ordering;
/// `u64::MAX` for a label that is not a size.
pub fn label_bytes(label: &str) -> u64 {
    let t = label.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let Ok(n) = n.parse::<u64>() else {
        return u64::MAX;
    };
    let mul = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        _ => return u64::MAX,
    };
    n.saturating_mul(mul)
}

/// One cell of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub backend: String,
    pub function: String,
    pub size: String,
    pub n: usize,
    pub cold: usize,
    pub warm: usize,
    /// Sandbox start (spawn → `/init` answered) of the cold invocations.
    pub cold_start: Pct,
    pub extract: Pct,
    pub transform: Pct,
    pub load: Pct,
    pub end_to_end: Pct,
    /// End-to-end median ÷ Swift direct's for the same function and size.
    pub vs_swift: Option<f64>,
}

/// The cells of `records`, ordered by function, size, then backend in `backends` order;
/// `baseline` names the backend ratios are taken against.
pub fn cells(records: &[Record], backends: &[String], baseline: &str) -> Vec<Cell> {
    let mut groups: BTreeMap<(String, u64, String, usize), Vec<&Record>> = BTreeMap::new();
    for r in records {
        let bi = backends
            .iter()
            .position(|b| *b == r.backend)
            .unwrap_or(usize::MAX);
        let key = (r.function.clone(), label_bytes(&r.size), r.size.clone(), bi);
        groups.entry(key).or_default().push(r);
    }
    let mut out: Vec<Cell> = groups
        .values()
        .map(|all| {
            // Times are of warm invocations (a cold start's /run includes neither the
            // sandbox's start nor its first imports, but its first store connections); cold
            // starts are counted and their start time given apart. A cell of only cold
            // invocations uses them.
            let warm: Vec<&Record> = all
                .iter()
                .copied()
                .filter(|r| r.cold_ms.is_none())
                .collect();
            let rs = if warm.is_empty() { all } else { &warm };
            let col = |f: fn(&Record) -> f64| pct(rs.iter().map(|r| f(r)).collect());
            let cold = all.len() - warm.len();
            let cold_start = pct(all.iter().filter_map(|r| r.cold_ms).collect());
            Cell {
                backend: all[0].backend.clone(),
                function: all[0].function.clone(),
                size: all[0].size.clone(),
                n: all.len(),
                cold,
                warm: warm.len(),
                cold_start,
                extract: col(|r| r.extract_ms),
                transform: col(|r| r.transform_ms),
                load: col(|r| r.load_ms),
                end_to_end: col(|r| r.run_ms),
                vs_swift: None,
            }
        })
        .collect();
    let base: BTreeMap<(String, String), f64> = out
        .iter()
        .filter(|c| c.backend == baseline)
        .map(|c| ((c.function.clone(), c.size.clone()), c.end_to_end.p50))
        .collect();
    for c in &mut out {
        if let Some(b) = base.get(&(c.function.clone(), c.size.clone())) {
            if *b > 0.0 {
                c.vs_swift = Some(c.end_to_end.p50 / b);
            }
        }
    }
    out
}

/// The cells as a Markdown table.
pub fn table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| function | size | backend | n | cold/warm | E p50/p99 ms | T p50/p99 ms | L p50/p99 ms | end-to-end p50/p99 ms | × Swift | cold start p50 ms |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let ratio = c.vs_swift.map_or("—".to_string(), |r| format!("{r:.2}"));
        let cold = if c.cold > 0 {
            format!("{:.0}", c.cold_start.p50)
        } else {
            "—".to_string()
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} |\n",
            c.function,
            c.size,
            c.backend,
            c.n,
            c.cold,
            c.warm,
            c.extract.p50,
            c.extract.p99,
            c.transform.p50,
            c.transform.p99,
            c.load.p50,
            c.load.p99,
            c.end_to_end.p50,
            c.end_to_end.p99,
            ratio,
            cold
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(backend: &str, run: f64, cold: bool) -> Record {
        Record {
            backend: backend.into(),
            function: "thumbnail".into(),
            size: "16KB".into(),
            input_bytes: 16384,
            extract_ms: run / 4.0,
            transform_ms: run / 2.0,
            load_ms: run / 4.0,
            run_ms: run,
            cold_ms: cold.then_some(100.0),
            queued_ms: 0.0,
            connect_ms: 0.0,
        }
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        assert_eq!(percentile(&mut v, 0.5), 50.0);
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert_eq!(percentile(&mut v, 1.0), 100.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
        assert_eq!(percentile(&mut [3.0], 0.99), 3.0);
    }

    #[test]
    fn size_labels_order() {
        assert_eq!(label_bytes("16KB"), 16384);
        assert_eq!(label_bytes("1MB"), 1 << 20);
        assert!(label_bytes("128KB") < label_bytes("1MB"));
        assert_eq!(label_bytes("big"), u64::MAX);
        assert_eq!(label_bytes("3XB"), u64::MAX);
    }

    #[test]
    fn cells_ratios_and_table() {
        let mut rs = vec![
            rec("swift", 10.0, true),
            rec("swift", 10.0, false),
            rec("swift", 12.0, false),
        ];
        rs.extend([rec("gateway", 4.0, true), rec("gateway", 5.0, false)]);
        let backends = vec!["swift".to_string(), "gateway".to_string()];
        let cs = cells(&rs, &backends, "swift");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].backend, "swift", "backends in the given order");
        assert_eq!((cs[0].n, cs[0].cold, cs[0].warm), (3, 1, 2));
        assert_eq!(cs[0].end_to_end.p50, 10.0, "warm invocations only");
        assert_eq!(cs[0].end_to_end.p99, 12.0);
        assert_eq!(cs[0].cold_start.p50, 100.0);
        assert_eq!(cs[0].vs_swift, Some(1.0));
        assert_eq!(cs[1].vs_swift, Some(0.5));
        let t = table(&cs);
        assert!(
            t.contains("| thumbnail | 16KB | gateway | 2 | 1/1 |"),
            "{t}"
        );
        assert!(t.contains("| 0.50 | 100 |"), "{t}");
        // Different inputs of one size label share a cell.
        let mut other = rec("swift", 30.0, false);
        other.input_bytes = 17000;
        rs.push(other);
        assert_eq!(cells(&rs, &backends, "swift").len(), 2);
    }
}
