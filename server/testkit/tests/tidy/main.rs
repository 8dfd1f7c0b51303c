//! The tidy test (TigerBeetle's `tidy.zig` idea): repository-wide rules that code review keeps
//! missing, checked on every `cargo test --workspace`. Each rule is its own `#[test]`; each
//! failure names `file:line` and the rule, and every failure of a rule is reported at once.
//!
//! It reads the sources from the repository root (`CARGO_MANIFEST_DIR/../..`), skipping `target/`,
//! hidden directories (`.git/`), the fuzz crates' `target/`, `corpus/` and `artifacts/`, and
//! `bench/results/`. It needs no dependencies: Rust is scanned with a small lexer ([`strip`]) that
//! blanks comments, string and char literals (keeping the line structure), so that the rules only
//! see code.
//!
//! The rules and how each is checked:
//! - `file_length`: every `.rs` file has at most [`MAX_FILE_LINES`] lines.
//! - `function_length`: every `fn` with a body spans at most [`MAX_FN_LINES`] lines, counted from
//!   the line of the `fn` keyword to the line of the body's closing `}` inclusive (signature and
//!   attributes below it included, tests included). A `fn` is the keyword followed by a name (so
//!   `fn(u8)` pointer types and `fn $name` in macro bodies are not functions); its body is the
//!   first `{` outside `()`/`[]` after the name, matched brace for brace; a `;` first means no body.
//!   Nested functions count both on their own and inside their parent.
//! - `unsafe_only_in_allowed_files`: the keyword `unsafe` as code (not in comments or strings;
//!   lint names such as `unsafe_code` are other identifiers) appears only in [`UNSAFE_ALLOWED`].
//! - `crate_roots_deny_unsafe`: every crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) of
//!   a member crate that is not an FFI crate ([`FFI_CRATES`]) says `#![deny(unsafe_code)]` or
//!   `#![forbid(unsafe_code)]`.
//! - `no_string_errors_in_library_code`: no `Result<…, String>` (the last generic argument is
//!   `String`) in library code: the module tree of each member's `src/lib.rs`, minus
//!   `#[cfg(test)]` items. Tests, benches, examples, fuzz targets and binaries may use them.
//!   [`STRING_ERRORS_PENDING`] lists the files still being fixed.
//! - `workspace_dependencies`: every member `Cargo.toml` (the root's `members`, plus the path
//!   dependencies of `[workspace.dependencies]` inside the repository, which Cargo makes members)
//!   takes every entry of its `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]` and
//!   `[target.….dependencies]` tables with `workspace = true`, and has `[lints] workspace = true`.
//! - `no_module_cycles`: see [`module_graph`] for the graph; any strongly connected component of
//!   more than one module fails, printed as a cycle, unless it is exactly a set in
//!   [`CYCLES_PENDING`]. Stale entries of the pending lists fail too, so they only ever shrink.

#![forbid(unsafe_code)]

mod lexer;
mod modules;
mod workspace;

use lexer::*;
use modules::*;
use std::collections::BTreeSet;
use std::fs;
use workspace::*;

/// Files that may contain `unsafe` code: a path, or a folder ending in `/**`. Keep this short; the
/// FFI and syscall wrappers live here so that everything else can be `#![deny(unsafe_code)]`.
const UNSAFE_ALLOWED: &[&str] = &[
    // The seglet arena (mapping memory, raw copies in and out) and its one audited caller, which
    // holds the hash-table stripe or owns the segment (see the `# Safety` of `Arena::read`).
    "server/storage/src/arena.rs",
    "server/storage/src/segment.rs",
    // The OS and FFI wrappers of the transport: another thread's CPU clock (rustix has none),
    // sendmmsg/recvmmsg/GSO, libibverbs, DPDK.
    "transport/src/sys.rs",
    // glibc's mallopt for the server binary (keep freed memory mapped).
    "server/faascache/src/sys.rs",
    "transport/src/datagram/sys.rs",
    "transport/src/verbs/sys.rs",
    // Two `Qp::post_send` calls: registered memory that must outlive the send.
    "transport/src/verbs/datapath.rs",
    "transport/src/dpdk/sys.rs",
    "transport/dpdk-sys/**",
    // The C ABI of the client (client/capi): raw pointers from C become references there only.
    "client/capi/src/**",
    // Its tests call that ABI from Rust as C would (raw pointers, NULLs on purpose).
    "client/capi/tests/**",
    // io_uring submission is unsafe by design (the kernel uses the buffer after the call).
    "transport/examples/uring_vs_epoll.rs",
];

/// Member crates (folders) that are FFI bindings: their roots need not deny `unsafe_code`.
const FFI_CRATES: &[&str] = &["transport/dpdk-sys", "client/capi"];

/// Known exceptions: library files that may still have a `Result<_, String>` while being fixed
/// (empty since issue 13; a listed file without offenders fails the test, so it only shrinks).
const STRING_ERRORS_PENDING: &[&str] = &[];

/// Known exceptions: module cycles being broken (each the set of files of one cycle; empty since
/// issue 13). A listed cycle that no longer exists fails the test, so that the list only shrinks.
const CYCLES_PENDING: &[&[&str]] = &[];

/// Known exceptions to the other rules, as (rule, file), each silencing that rule for that file
/// only (empty since issue 13). A listed pair that no longer fails fails the test.
const OTHER_PENDING: &[(&str, &str)] = &[];

const MAX_FILE_LINES: usize = 1000;
const MAX_FN_LINES: usize = 150;

#[test]
fn file_length() {
    let mut failures = Vec::new();
    for (path, text) in rust_files() {
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            failures.push(format!(
                "{path}:{n}: file has {n} lines (at most {MAX_FILE_LINES}): split it along a seam"
            ));
        }
    }
    report("file_length", &failures);
}

#[test]
fn function_length() {
    let mut failures = Vec::new();
    for (path, text) in rust_files() {
        for (name, line, n) in functions(&strip(&text)) {
            if n > MAX_FN_LINES {
                failures.push(format!(
                    "{path}:{line}: fn `{name}` spans {n} lines (at most {MAX_FN_LINES}): \
                     extract helpers"
                ));
            }
        }
    }
    report("function_length", &failures);
}

#[test]
fn unsafe_only_in_allowed_files() {
    let mut failures = Vec::new();
    for (path, text) in rust_files() {
        if allowed(UNSAFE_ALLOWED, &path) {
            continue;
        }
        let code = strip(&text);
        for at in find_word(&code, "unsafe") {
            failures.push(format!(
                "{path}:{}: `unsafe` outside the allowed files: use a safe wrapper (rustix, std) \
                 or move it into a listed sys.rs module",
                line_of(&code, at)
            ));
        }
    }
    report("unsafe_only_in_allowed_files", &failures);
}

#[test]
fn workspace_dependencies() {
    let root = repo_root();
    let mut failures = Vec::new();
    for m in members() {
        let path = format!("{m}/Cargo.toml");
        let toml = fs::read_to_string(root.join(&path)).unwrap_or_default();
        let mut table = String::new();
        let mut lints_workspace = false;
        let mut dotted_dep_ok = true;
        let mut dotted_dep_line = 0;
        for (n, line) in toml.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.starts_with('[') {
                if !dotted_dep_ok {
                    failures.push(format!(
                        "{path}:{dotted_dep_line}: `{table}` lacks `workspace = true`"
                    ));
                }
                table = t.trim_matches(|c| c == '[' || c == ']').to_string();
                dotted_dep_ok = !is_dep_table(table.rsplit_once('.').map_or("", |(a, _)| a));
                dotted_dep_line = n + 1;
                continue;
            }
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            if table == "lints" && compact == "workspace=true" {
                lints_workspace = true;
            }
            if compact == "workspace=true" {
                dotted_dep_ok = true;
            }
            if is_dep_table(&table)
                && !compact.contains(".workspace=true")
                && !compact.contains("{workspace=true")
                && !compact.contains(",workspace=true")
            {
                failures.push(format!(
                    "{path}:{}: `{t}` in [{table}]: take it from [workspace.dependencies] \
                     (`name.workspace = true`) and add it to the root Cargo.toml",
                    n + 1
                ));
            }
        }
        if !dotted_dep_ok {
            failures.push(format!(
                "{path}:{dotted_dep_line}: `{table}` lacks `workspace = true`"
            ));
        }
        if !lints_workspace {
            failures.push(format!("{path}:1: no `[lints] workspace = true`"));
        }
    }
    report("workspace_dependencies", &failures);
}

#[test]
fn crate_roots_deny_unsafe() {
    let root = repo_root();
    let mut failures = Vec::new();
    for m in members() {
        if FFI_CRATES.contains(&m.as_str()) {
            continue;
        }
        for r in crate_roots(&m) {
            let code = strip(&fs::read_to_string(root.join(&r)).unwrap_or_default());
            let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if !compact.contains("#![deny(unsafe_code)]")
                && !compact.contains("#![forbid(unsafe_code)]")
            {
                failures.push(format!(
                    "{r}:1: crate root without `#![deny(unsafe_code)]` (or `forbid`): add it"
                ));
            }
        }
    }
    report("crate_roots_deny_unsafe", &failures);
}

#[test]
fn no_string_errors_in_library_code() {
    let mut failures = Vec::new();
    let mut offenders = BTreeSet::new();
    for m in members() {
        let lib = format!("{m}/src/lib.rs");
        if !repo_root().join(&lib).is_file() {
            continue;
        }
        for module in module_tree(&lib) {
            for at in string_results(&module.code) {
                offenders.insert(module.file.clone());
                if !STRING_ERRORS_PENDING.contains(&module.file.as_str()) {
                    failures.push(format!(
                        "{}:{}: `Result<_, String>` in library code: return a typed error \
                         (thiserror) so callers can match on it",
                        module.file,
                        line_of(&module.code, at)
                    ));
                }
            }
        }
    }
    for p in STRING_ERRORS_PENDING {
        if !offenders.contains(*p) {
            failures.push(format!(
                "{p}:1: listed in STRING_ERRORS_PENDING but has no `Result<_, String>` (or is no \
                 library file) any more: remove it from the list"
            ));
        }
    }
    report("no_string_errors_in_library_code", &failures);
}

#[test]
fn no_module_cycles() {
    let mut failures = Vec::new();
    let mut seen_pending = BTreeSet::new();
    for m in members() {
        for root in crate_roots(&m) {
            let modules = module_tree(&root);
            let edges = module_graph(&modules);
            for comp in cycles(&edges) {
                let files: BTreeSet<&str> =
                    comp.iter().map(|&i| modules[i].file.as_str()).collect();
                let pending = CYCLES_PENDING
                    .iter()
                    .position(|c| c.iter().copied().collect::<BTreeSet<_>>() == files);
                if let Some(p) = pending {
                    seen_pending.insert(p);
                    continue;
                }
                let path: Vec<&str> = cycle_path(&edges, &comp)
                    .iter()
                    .map(|&i| modules[i].file.as_str())
                    .collect();
                failures.push(format!(
                    "{}:1: module cycle {}: move what both sides need into a leaf module",
                    path[0],
                    path.join(" -> ")
                ));
            }
        }
    }
    for (p, c) in CYCLES_PENDING.iter().enumerate() {
        if !seen_pending.contains(&p) {
            failures.push(format!(
                "{}:1: CYCLES_PENDING lists {c:?}, which is no cycle any more: remove it",
                c.first().unwrap_or(&"?")
            ));
        }
    }
    report("no_module_cycles", &failures);
}

#[test]
fn scanners_see_only_code() {
    let src = "fn a() { let s = \"unsafe { } fn x() {\"; /* unsafe */ let c = '{'; } // unsafe\n\
               fn b<'a>(x: &'a str) -> Result<u8, String> { let r = r#\"}\"#; Ok(0) }\n";
    let code = strip(src);
    assert!(find_word(&code, "unsafe").is_empty(), "{code}");
    let fns = functions(&code);
    assert_eq!(
        fns,
        vec![("a".to_string(), 1, 1), ("b".to_string(), 2, 1)],
        "{code}"
    );
    assert_eq!(string_results(&code).len(), 1);
    assert!(string_results("fn f() -> Result<Vec<String>, E> {}").is_empty());
    assert_eq!(string_results("type R = Result<(), String>;").len(), 1);
    let t = without_test_items(&strip(
        "fn a() {}\n#[cfg(test)]\nmod tests { fn b() -> Result<(), String> {} }\n",
    ));
    assert!(string_results(&t).is_empty());
    let paths: Vec<_> =
        paths_named("pub use crate::{a::X, b::{Y, c::Z}}; fn f() { super::d::g(); }")
            .into_iter()
            .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        paths,
        vec![
            (s(&["crate", "a", "X"]), Named::PubUse),
            (s(&["crate", "b", "Y"]), Named::PubUse),
            (s(&["crate", "b", "c", "Z"]), Named::PubUse),
            (s(&["super", "d", "g"]), Named::Path),
        ]
    );
    let edges = vec![
        BTreeSet::from([1]),
        BTreeSet::from([2]),
        BTreeSet::from([0]),
        BTreeSet::new(),
    ];
    assert_eq!(cycles(&edges), vec![vec![0, 1, 2]]);
    assert_eq!(cycle_path(&edges, &[0, 1, 2]), vec![0, 1, 2, 0]);
}

/// Fails with every failure of `rule` (each `file:line: what`) but those of its files listed in
/// [`OTHER_PENDING`]; a listed file without failures of the rule is a failure too.
fn report(rule: &str, failures: &[String]) {
    let mut failures = failures.to_vec();
    for (r, file) in OTHER_PENDING.iter().filter(|(r, _)| *r == rule) {
        let before = failures.len();
        failures.retain(|f| !f.starts_with(&format!("{file}:")));
        if failures.len() == before {
            failures.push(format!(
                "{file}:1: listed in OTHER_PENDING for `{r}` but passes it now: remove it from the list"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "tidy rule `{rule}` failed {} time(s):\n  {}\n",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn module_graph_rules() {
    let module = |path: &[&str], code: &str| {
        let code = without_test_items(&strip(code));
        Module {
            path: path.iter().map(|s| s.to_string()).collect(),
            file: path.join("/"),
            children: mod_decls(&code).into_iter().map(|(n, _)| n).collect(),
            code,
        }
    };
    let graph = |modules: &[Module]| {
        let edges = module_graph(modules);
        let name = |i: usize| modules[i].file.clone();
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, e) in edges.iter().enumerate() {
            out.extend(e.iter().map(|&j| (name(i), name(j))));
        }
        (out, cycles(&edges).len())
    };
    let e = |a: &str, b: &str| (a.to_string(), b.to_string());
    // A parent that declares and re-exports its children depends on none of them; children
    // naming the parent's items (directly or through its re-exports) depend on the target.
    let (edges, n) = graph(&[
        module(&[], "mod a; mod b; pub use a::X; pub struct Root;"),
        module(
            &["a"],
            "use crate::b::Y; pub struct X; fn f(_: crate::Root) {}",
        ),
        module(&["b"], "pub struct Y; use crate::X;"),
    ]);
    assert_eq!(edges, vec![e("a", ""), e("a", "b"), e("b", "a")]);
    assert_eq!(n, 1, "a <-> b through the root's re-export");
    // A parent using a child in code depends on it; with the child naming the parent: a cycle.
    // Imports from other crates and `#[cfg(test)]` code are no edges.
    let (edges, n) = graph(&[
        module(&[], "mod a; use other::wire; fn g() { a::f(); } pub struct Root;"),
        module(
            &["a"],
            "use crate::wire::Header; pub fn f() {}\n#[cfg(test)]\nmod tests { use super::super::Root; }",
        ),
    ]);
    assert_eq!(edges, vec![e("", "a")]);
    assert_eq!(n, 0);
    let (_, n) = graph(&[
        module(&[], "mod a; fn g() { a::f(); } pub struct Root;"),
        module(&["a"], "pub fn f() { let _ = super::Root; }"),
    ]);
    assert_eq!(
        n, 1,
        "a parent calling its child, the child naming the parent"
    );
}
