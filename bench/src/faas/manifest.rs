//! The inputs' manifest (`manifest.json`, written by `bench/faas/gen_inputs.py`): one entry per
//! kind of invocation — function, input file, its size label, parameters and the expected
//! output's SHA-256 (the driver compares every output with it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// What the function must return for an entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    pub output_bytes: u64,
    pub output_sha256: String,
}

/// One kind of invocation.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub function: String,
    pub kind: String,
    /// Input file relative to the manifest's directory (`None` for a pipeline's reduce).
    pub path: Option<String>,
    pub bytes: u64,
    #[serde(default)]
    pub params: Value,
    pub size_label: String,
    #[serde(default)]
    pub pipeline: Option<String>,
    /// A pipeline's map: which part of its input this is (0-based), of `parts`.
    #[serde(default)]
    pub part: Option<u64>,
    /// A pipeline's map and reduce entries: the number of map parts.
    #[serde(default)]
    pub parts: Option<u64>,
    #[serde(default)]
    pub expected: Option<Expected>,
}

/// infer's model.
#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest and where it is.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub seed: u64,
    #[serde(default)]
    pub model: Option<Model>,
    pub entries: Vec<Entry>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads `DIR/manifest.json` and checks that every input it names is a file in `DIR`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let p = dir.join("manifest.json");
        let len = std::fs::metadata(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .len();
        if len > MAX_MANIFEST_BYTES {
            bail!(
                "{}: {len} bytes, more than {MAX_MANIFEST_BYTES}",
                p.display()
            );
        }
        let mut m: Manifest = serde_json::from_slice(&std::fs::read(&p)?)
            .with_context(|| format!("{}: not a gen_inputs.py manifest", p.display()))?;
        m.dir = dir.to_path_buf();
        for e in &m.entries {
            if let Some(path) = &e.path {
                check_relative(path)?;
                if !dir.join(path).is_file() {
                    bail!("{}: input {path} is missing", p.display());
                }
            }
        }
        if let Some(model) = &m.model {
            check_relative(&model.path)?;
        }
        Ok(m)
    }

    /// One tag per entry (`function size path`): what a trace's input indices mean.
    pub fn tags(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.function,
                    e.size_label,
                    e.path.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    /// Indices of the single-stage entries of `function` whose size label is in `sizes`.
    pub fn select(&self, function: &str, sizes: &[String]) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.function == function && e.pipeline.is_none() && e.path.is_some())
            .filter(|(_, e)| sizes.is_empty() || sizes.contains(&e.size_label))
            .map(|(i, _)| i)
            .collect()
    }
}

/// A manifest path must stay inside its directory.
fn check_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("manifest path {path:?} leaves the inputs' directory");
    }
    Ok(())
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_selects_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.png"), b"x").unwrap();
        let m = r#"{"seed": 1, "entries": [
            {"function": "thumbnail", "kind": "image", "path": "a.png", "bytes": 1, "params": {"size": 8}, "size_label": "16KB",
             "expected": {"output_bytes": 3, "output_sha256": "ab"}},
            {"function": "thumbnail", "kind": "image", "path": "a.png", "bytes": 1, "size_label": "1MB"},
            {"function": "wcreduce", "kind": "counts", "path": null, "bytes": 9, "size_label": "16KB", "pipeline": "wc"}]}"#;
        std::fs::write(d.path().join("manifest.json"), m).unwrap();
        let man = Manifest::read(d.path()).unwrap();
        assert_eq!(man.select("thumbnail", &[]), vec![0, 1]);
        assert_eq!(man.select("thumbnail", &["1MB".to_string()]), vec![1]);
        assert!(
            man.select("wcreduce", &[]).is_empty(),
            "pipelines are not single-stage"
        );
        let bad = m.replace(
            "\"a.png\", \"bytes\": 1, \"size_label\": \"1MB\"",
            "\"../a.png\", \"bytes\": 1, \"size_label\": \"1MB\"",
        );
        std::fs::write(d.path().join("manifest.json"), bad).unwrap();
        assert!(Manifest::read(d.path()).is_err());
        std::fs::write(d.path().join("manifest.json"), "[]").unwrap();
        assert!(Manifest::read(d.path()).is_err());
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
