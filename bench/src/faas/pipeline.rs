//! The word-count map-reduce pipeline (`wcpipeline`): which manifest entries make a pipeline,
//! and how its stages' times combine into one record.
//!
//! `gen_inputs.py` writes per input size `parts` `wcmap` entries (one text part each, with
//! `pipeline`, `part`, `parts`) and one `wcreduce` entry (`path: null`, same `pipeline`). A
//! pipeline tenant's inputs are the reduce entries' indices; one arrival runs the maps
//! concurrently, then the reduce over the maps' output keys ([`super::runner`]). Its E/T/L are
//! the critical path: per component the slowest map's plus the reduce's ([`critical_path`]).

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use super::manifest::Manifest;

/// The pipeline tenant's function name in `--faas-functions`, traces and records.
pub const PIPELINE: &str = "wcpipeline";
/// The map and reduce stages' functions.
pub const MAP: &str = "wcmap";
pub const REDUCE: &str = "wcreduce";
/// Most map stages of one pipeline (as `gen_inputs.py --parts`; bounds the threads per arrival).
pub const MAX_PARTS: usize = 64;

/// One pipeline of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: String,
    /// Map entries' indices, in part order (part `i` at `maps[i]`).
    pub maps: Vec<usize>,
    /// The reduce entry's index.
    pub reduce: usize,
}

/// The sandboxed functions a tenant's function runs (the pipeline: its two stages).
pub fn stages(function: &str) -> Vec<String> {
    if function == PIPELINE {
        vec![MAP.to_string(), REDUCE.to_string()]
    } else {
        vec![function.to_string()]
    }
}

impl Manifest {
    /// The pipeline whose reduce entry is `reduce`, checked: the entry is a pipeline's reduce,
    /// its parts are 1..=64 and every part 0..parts has exactly one map entry.
    pub fn pipeline(&self, reduce: usize) -> Result<Pipeline> {
        let Some(r) = self.entries.get(reduce) else {
            bail!("manifest entry {reduce} does not exist");
        };
        let id = match (&r.pipeline, r.function.as_str()) {
            (Some(id), REDUCE) => id.clone(),
            _ => bail!(
                "manifest entry {reduce} ({} {}) is not a pipeline's {REDUCE}",
                r.function,
                r.size_label
            ),
        };
        let maps: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                e.function == MAP && e.pipeline.as_deref() == Some(&id)
            })
            .collect();
        let parts = r.parts.unwrap_or(maps.len() as u64);
        if !(1..=MAX_PARTS as u64).contains(&parts) {
            bail!("pipeline {id}: {parts} parts (1 to {MAX_PARTS})");
        }
        let mut by_part: Vec<Option<usize>> = vec![None; parts as usize];
        for &i in &maps {
            let e = &self.entries[i];
            let part = e.part.unwrap_or(u64::MAX);
            if e.parts.is_some_and(|p| p != parts) || e.path.is_none() {
                bail!(
                    "pipeline {id}: map entry {i} has no input or disagrees on the parts ({parts})"
                );
            }
            match by_part.get_mut(part as usize) {
                Some(slot @ None) => *slot = Some(i),
                Some(Some(_)) => bail!("pipeline {id}: part {part} twice"),
                None => bail!(
                    "pipeline {id}: map entry {i} has part {part}, not 0 to {}",
                    parts - 1
                ),
            }
        }
        let maps = by_part
            .iter()
            .enumerate()
            .map(|(p, m)| {
                m.ok_or_else(|| anyhow::anyhow!("pipeline {id}: part {p} of {parts} is missing"))
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(Pipeline { id, maps, reduce })
    }

    /// The reduce entries of the pipelines at `sizes` (every size when empty), each pipeline
    /// checked; a pipeline with maps but no reduce entry is an error.
    pub fn pipelines(&self, sizes: &[String]) -> Result<Vec<usize>> {
        let at = |label: &String| sizes.is_empty() || sizes.contains(label);
        let mut with_maps: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|e| e.function == MAP && at(&e.size_label))
            .filter_map(|e| e.pipeline.as_deref())
            .collect();
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.function == REDUCE && e.pipeline.is_some() && at(&e.size_label) {
                let p = self.pipeline(i)?;
                if !with_maps.remove(p.id.as_str()) {
                    bail!("pipeline {}: a second {REDUCE} entry ({i})", p.id);
                }
                out.push(i);
            }
        }
        if let Some(id) = with_maps.first() {
            bail!("pipeline {id}: {MAP} entries but no {REDUCE} entry");
        }
        Ok(out)
    }

    /// The input files entry `i` needs in the store (a pipeline's reduce: its maps' inputs).
    pub fn input_paths(&self, i: usize) -> Vec<String> {
        let Some(e) = self.entries.get(i) else {
            return Vec::new();
        };
        match (&e.path, &e.pipeline) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(id)) => self
                .entries
                .iter()
                .filter(|m| m.function == MAP && m.pipeline.as_ref() == Some(id))
                .filter_map(|m| m.path.clone())
                .collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// A stage's (or the pipeline's) extract, transform and load times, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Etl {
    pub extract: f64,
    pub transform: f64,
    pub load: f64,
}

/// NaN if either is (a stage that did not report a time), else the larger.
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The pipeline's E/T/L: the critical path — the maps run concurrently and the reduce starts
/// when the last has finished, so per component the slowest map's time (the maximum over the
/// maps, component by component) plus the reduce's. A time a stage did not report (NaN) makes
/// the component NaN rather than hiding in a maximum.
pub fn critical_path(maps: &[Etl], reduce: Etl) -> Etl {
    let mut m = Etl {
        extract: 0.0,
        transform: 0.0,
        load: 0.0,
    };
    for s in maps {
        m.extract = max_nan(m.extract, s.extract);
        m.transform = max_nan(m.transform, s.transform);
        m.load = max_nan(m.load, s.load);
    }
    Etl {
        extract: m.extract + reduce.extract,
        transform: m.transform + reduce.transform,
        load: m.load + reduce.load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: &str) -> Manifest {
        let mut m: Manifest =
            serde_json::from_str(&format!("{{\"seed\": 1, \"entries\": [{entries}]}}")).unwrap();
        m.dir = "/nonexistent".into();
        m
    }

    fn map(size: &str, part: u64, parts: u64) -> String {
        format!(
            r#"{{"function": "wcmap", "kind": "text", "path": "text-{size}.part{part}.txt", "bytes": 10, "size_label": "{size}", "pipeline": "wc-{size}", "part": {part}, "parts": {parts}}}"#
        )
    }

    fn reduce(size: &str, parts: u64) -> String {
        format!(
            r#"{{"function": "wcreduce", "kind": "counts", "path": null, "bytes": 9, "size_label": "{size}", "pipeline": "wc-{size}", "parts": {parts},
                "expected": {{"output_bytes": 3, "output_sha256": "ab"}}}}"#
        )
    }

    #[test]
    fn selects_maps_in_part_order_and_the_reduce() {
        let m = manifest(&[
            r#"{"function": "wordcount", "kind": "text", "path": "text-16KB.txt", "bytes": 40, "size_label": "16KB"}"#.to_string(),
            map("16KB", 1, 2),
            map("16KB", 0, 2),
            reduce("16KB", 2),
            map("1MB", 0, 1),
            reduce("1MB", 1),
        ]
        .join(","));
        assert_eq!(m.pipelines(&[]).unwrap(), vec![3, 5]);
        assert_eq!(m.pipelines(&["1MB".into()]).unwrap(), vec![5]);
        let p = m.pipeline(3).unwrap();
        assert_eq!(
            p,
            Pipeline {
                id: "wc-16KB".into(),
                maps: vec![2, 1],
                reduce: 3
            }
        );
        assert_eq!(
            m.input_paths(3),
            vec!["text-16KB.part1.txt", "text-16KB.part0.txt"]
        );
        assert_eq!(m.input_paths(0), vec!["text-16KB.txt"]);
        assert!(m.pipeline(0).is_err(), "wordcount is not a reduce");
        assert!(m.pipeline(99).is_err());
        assert!(m.select("wcreduce", &[]).is_empty());
        assert_eq!(stages(PIPELINE), vec!["wcmap", "wcreduce"]);
        assert_eq!(stages("blur"), vec!["blur"]);
    }

    #[test]
    fn bad_pipelines_are_clear_errors() {
        let err = |entries: Vec<String>| {
            format!(
                "{:#}",
                manifest(&entries.join(",")).pipelines(&[]).unwrap_err()
            )
        };
        let e = err(vec![
            map("16KB", 0, 3),
            map("16KB", 2, 3),
            reduce("16KB", 3),
        ]);
        assert!(e.contains("part 1 of 3 is missing"), "{e}");
        let e = err(vec![
            map("16KB", 0, 2),
            map("16KB", 0, 2),
            reduce("16KB", 2),
        ]);
        assert!(e.contains("part 0 twice"), "{e}");
        let e = err(vec![map("16KB", 5, 2), reduce("16KB", 2)]);
        assert!(e.contains("part 5"), "{e}");
        let e = err(vec![map("16KB", 0, 65), reduce("16KB", 65)]);
        assert!(e.contains("65 parts"), "{e}");
        let e = err(vec![map("16KB", 0, 1)]);
        assert!(e.contains("no wcreduce entry"), "{e}");
        let e = err(vec![
            map("16KB", 0, 2),
            map("16KB", 1, 3),
            reduce("16KB", 2),
        ]);
        assert!(e.contains("disagrees"), "{e}");
        let e = err(vec![reduce("16KB", 0)]);
        assert!(e.contains("0 parts"), "{e}");
        let huge = format!("{{\"function\": \"wcmap\", \"kind\": \"text\", \"path\": \"x\", \"bytes\": 1, \"size_label\": \"16KB\", \"pipeline\": \"wc-16KB\", \"part\": {}, \"parts\": 1}}", u64::MAX);
        let e = err(vec![huge, reduce("16KB", 1)]);
        assert!(e.contains("not 0 to 0"), "{e}");
    }

    #[test]
    fn critical_path_is_slowest_map_per_component_plus_reduce() {
        let s = |e, t, l| Etl {
            extract: e,
            transform: t,
            load: l,
        };
        let got = critical_path(&[s(1.0, 9.0, 2.0), s(4.0, 3.0, 1.0)], s(10.0, 20.0, 30.0));
        assert_eq!(got, s(14.0, 29.0, 32.0));
        assert_eq!(critical_path(&[], s(1.0, 2.0, 3.0)), s(1.0, 2.0, 3.0));
        let nan = critical_path(&[s(f64::NAN, 1.0, 1.0), s(5.0, 1.0, 1.0)], s(1.0, 1.0, 1.0));
        assert!(nan.extract.is_nan());
        assert_eq!((nan.transform, nan.load), (2.0, 2.0));
    }
}
