//! Walking the repository: its root, its Rust files, its member crates and their roots.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fs::canonicalize(&root).unwrap_or(root)
}

/// Path relative to the repository root, with `/` separators.
pub fn rel(root: &Path, p: &Path) -> String {
    let r = p.strip_prefix(root).unwrap_or(p);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub fn skipped_dir(rel_path: &str, name: &str) -> bool {
    name.starts_with('.')
        || name == "target"
        || rel_path == "bench/results"
        || ((name == "corpus" || name == "artifacts") && rel_path.contains("fuzz"))
}

pub fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !skipped_dir(&rel(root, &p), &name) {
                walk(root, &p, out);
            }
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

/// Every `.rs` file of the repository, as (relative path, contents).
pub fn rust_files() -> Vec<(String, String)> {
    let root = repo_root();
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let mut out = Vec::new();
    for f in files {
        if f.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", f.display()));
            out.push((rel(&root, &f), text));
        }
    }
    assert!(
        out.len() > 50,
        "tidy: found only {} .rs files under {}: wrong root?",
        out.len(),
        root.display()
    );
    out
}

/// The member crates' folders, relative to the root: `members` of the root Cargo.toml plus the
/// repository-local path dependencies of `[workspace.dependencies]` (Cargo makes them members).
pub fn members() -> Vec<String> {
    let root = repo_root();
    let toml = fs::read_to_string(root.join("Cargo.toml")).expect("tidy: read root Cargo.toml");
    let mut out = BTreeSet::new();
    let start = toml
        .find("members")
        .expect("tidy: root Cargo.toml has no `members`");
    let list = &toml[start..];
    let list = &list[list.find('[').expect("members list")..list.find(']').expect("members end")];
    for m in list.split('"').skip(1).step_by(2) {
        out.insert(m.to_string());
    }
    for line in section_lines(&toml, "workspace.dependencies") {
        if let Some(p) = line.split("path").nth(1).and_then(|s| s.split('"').nth(1)) {
            if root.join(p).join("Cargo.toml").is_file() {
                out.insert(p.to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// The non-empty, non-comment lines of TOML table `[name]`.
pub fn section_lines<'a>(toml: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == format!("[{name}]");
        } else if inside && !t.is_empty() && !t.starts_with('#') {
            out.push(t);
        }
    }
    out
}

pub fn is_dep_table(table: &str) -> bool {
    let last = table.rsplit('.').next().unwrap_or(table);
    matches!(
        last,
        "dependencies" | "dev-dependencies" | "build-dependencies"
    ) && (table == last || table.starts_with("target."))
}

/// Crate roots of a member: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` (relative to the root).
pub fn crate_roots(member: &str) -> Vec<String> {
    let root = repo_root();
    let mut out = Vec::new();
    for f in ["src/lib.rs", "src/main.rs"] {
        if root.join(member).join(f).is_file() {
            out.push(format!("{member}/{f}"));
        }
    }
    if let Ok(bins) = fs::read_dir(root.join(member).join("src/bin")) {
        let mut bins: Vec<_> = bins.filter_map(Result::ok).map(|e| e.path()).collect();
        bins.sort();
        for b in bins {
            if b.extension().is_some_and(|e| e == "rs") {
                out.push(rel(&root, &b));
            }
        }
    }
    out
}

pub fn allowed(list: &[&str], path: &str) -> bool {
    list.iter().any(|a| match a.strip_suffix("/**") {
        Some(dir) => path.starts_with(&format!("{dir}/")),
        None => *a == path,
    })
}
