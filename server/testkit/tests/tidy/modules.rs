//! Module trees and the module dependency graph of a crate, and cycles in it.

use crate::lexer::{find_word, is_ident_char, strip, without_test_items};
use crate::workspace::repo_root;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One file module of a crate: its path from the crate root (`[]` for the root) and file.
#[derive(Debug, Clone)]
pub struct Module {
    pub path: Vec<String>,
    pub file: String,
    /// Stripped code without `#[cfg(test)]` items.
    pub code: String,
    /// Child modules declared in this file (file modules and inline ones).
    pub children: BTreeSet<String>,
}

/// `mod name;` / `mod name {` declarations in stripped, test-free code: (name, has a file).
pub fn mod_decls(code: &str) -> Vec<(String, bool)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in find_word(code, "mod") {
        let mut k = at + 3;
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        let s = k;
        while k < b.len() && is_ident_char(b[k]) {
            k += 1;
        }
        if k == s {
            continue;
        }
        let name = code[s..k].to_string();
        let rest = code[k..].trim_start();
        if rest.starts_with(';') {
            out.push((name, true));
        } else if rest.starts_with('{') {
            out.push((name, false));
        }
    }
    out
}

/// The file modules reachable from crate root `root_file` (relative path), root first. Files that
/// are declared but missing (e.g. behind a feature on another platform) are skipped.
pub fn module_tree(root_file: &str) -> Vec<Module> {
    let root = repo_root();
    let mut out = Vec::new();
    let mut todo = vec![(Vec::<String>::new(), root_file.to_string())];
    while let Some((path, file)) = todo.pop() {
        let Ok(text) = fs::read_to_string(root.join(&file)) else {
            continue;
        };
        let code = without_test_items(&strip(&text));
        let dir = {
            let p = Path::new(&file);
            let parent = p
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_empty() || stem == "mod" {
                parent
            } else {
                format!("{parent}/{stem}")
            }
        };
        let mut children = BTreeSet::new();
        for (name, has_file) in mod_decls(&code) {
            children.insert(name.clone());
            if !has_file {
                continue;
            }
            let mut child_path = path.clone();
            child_path.push(name.clone());
            let a = format!("{dir}/{name}.rs");
            let b = format!("{dir}/{name}/mod.rs");
            let child_file = if root.join(&a).is_file() { a } else { b };
            todo.push((child_path, child_file));
        }
        out.push(Module {
            path,
            file,
            code,
            children,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The module dependency graph of one crate (nodes are file modules, by index into `modules`).
///
/// A module A depends on module B when A's non-test code (comments, strings and `#[cfg(test)]`
/// items removed) names a path that resolves to B: `crate::x::y…`, `$crate::x…`,
/// `super::…` (from A's parent; `super::super::` climbs further), `self::c…`, or a bare `c::…`
/// where `c` is a child module A declares. A path resolves to the deepest module of the tree that
/// is a prefix of it (`crate::drivers::redis::Redis` → `drivers::redis`; `crate::Foo` → the
/// root). A name a module imports (`use`, `pub use`) resolves to where the import points
/// (`crate::Error` with `pub use error::Error` in the root → `error`; `crate::wire::X` with
/// `use other_crate::wire` in the root → no module of this crate, so no edge). `use` groups
/// (`use crate::{a::X, b::{Y, Z}}`) are expanded.
///
/// What is not an edge: a module declaring its children (`mod c;`), and a `pub use` (any
/// visibility) in A whose path resolves to a descendant of A: re-exports are how a parent
/// presents its children, not a dependency. A child naming its parent's items is an edge.
///
/// Approximations: inline modules (`mod x { … }`) count as part of their file, and `super::`
/// inside them resolves from the file; imports are followed by their last name (`as` renames
/// and globs are not); glob imports and macros that expand to paths are seen only as written.
pub fn module_graph(modules: &[Module]) -> Vec<BTreeSet<usize>> {
    let index: BTreeMap<Vec<String>, usize> = modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.path.clone(), i))
        .collect();
    let named: Vec<Vec<(Vec<String>, Named)>> =
        modules.iter().map(|m| paths_named(&m.code)).collect();
    // What each module imports: name → absolute path in this crate (`use a::b::C` → `C` →
    // a::b::C), or `None` for an import from another crate.
    let imports: Vec<BTreeMap<String, Option<Vec<String>>>> = modules
        .iter()
        .zip(&named)
        .map(|(m, paths)| {
            paths
                .iter()
                .filter(|(_, kind)| *kind != Named::Path)
                .filter_map(|(p, _)| Some((p.last()?.clone(), absolute(&m.path, &m.children, p))))
                .collect()
        })
        .collect();
    // The deepest module that is a prefix of `p`, following imports (a few hops at most);
    // `None` when the path leads out of the crate.
    let resolve = |p: &[String]| -> Option<usize> {
        let mut p = p.to_vec();
        for _ in 0..8 {
            let n = (0..=p.len()).rev().find(|&n| index.contains_key(&p[..n]))?;
            let m = index[&p[..n]];
            match p.get(n).and_then(|name| imports[m].get(name)) {
                Some(None) => return None,
                Some(Some(target)) if target.as_slice() != p.as_slice() => {
                    let mut next = target.clone();
                    next.extend_from_slice(&p[n + 1..]);
                    p = next;
                }
                _ => return Some(m),
            }
        }
        None
    };
    let mut edges = vec![BTreeSet::new(); modules.len()];
    for (i, m) in modules.iter().enumerate() {
        for (path, kind) in named[i].iter().cloned() {
            let Some(target) = absolute(&m.path, &m.children, &path).and_then(|a| resolve(&a))
            else {
                continue;
            };
            let reexport = kind == Named::PubUse;
            let is_descendant = modules[target].path.starts_with(&m.path);
            if target == i || (reexport && is_descendant) {
                continue;
            }
            edges[i].insert(target);
        }
    }
    edges
}

/// A path as written (`["super", "x", "Y"]`) made absolute from module `from`; `None` when it
/// names no module of this crate (an external crate, a local item, `std`…).
pub fn absolute(
    from: &[String],
    children: &BTreeSet<String>,
    path: &[String],
) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" | "$crate" => Some(path[1..].to_vec()),
        "self" => {
            let mut abs = from.to_vec();
            abs.extend_from_slice(&path[1..]);
            Some(abs)
        }
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            if ups > from.len() {
                return None;
            }
            let mut abs = from[..from.len() - ups].to_vec();
            abs.extend_from_slice(&path[ups..]);
            Some(abs)
        }
        c if children.contains(c) && path.len() > 1 => {
            let mut abs = from.to_vec();
            abs.extend_from_slice(path);
            Some(abs)
        }
        _ => None,
    }
}

/// Where a path was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// In code (an expression, a type, an attribute…).
    Path,
    /// In a private `use`.
    Use,
    /// In a `pub use` (any visibility): a re-export.
    PubUse,
}

/// Every path of two or more segments in `code`, with where it was named. `use` trees
/// are expanded; elsewhere a path is a maximal run `a::b::c`.
pub fn paths_named(code: &str) -> Vec<(Vec<String>, Named)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == "use" && (i == 0 || toks[i - 1] != "::") {
            let public = (1..=4).any(|back| i >= back && toks[i - back] == "pub");
            let kind = if public { Named::PubUse } else { Named::Use };
            let mut j = i + 1;
            let mut prefix = Vec::new();
            use_tree(&toks, &mut j, &mut prefix, &mut |p| out.push((p, kind)));
            i = j;
            continue;
        }
        let starts = (toks[i] == "$crate" || is_ident(&toks[i]))
            && toks.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || toks[i - 1] != "::");
        if starts {
            let mut path = vec![toks[i].clone()];
            let mut j = i + 1;
            while j + 1 < toks.len() && toks[j] == "::" && is_ident(&toks[j + 1]) {
                path.push(toks[j + 1].clone());
                j += 2;
            }
            if j < toks.len() && toks[j] == "::" && toks.get(j + 1).is_some_and(|t| t == "{") {
                // `a::b::{…}` outside `use` (e.g. in a macro): treat like a use tree.
                let mut k = j + 1;
                use_tree_group(&toks, &mut k, &mut path.clone(), &mut |p| {
                    out.push((p, Named::Path))
                });
                j = k;
            } else {
                out.push((path, Named::Path));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

pub fn is_ident(t: &str) -> bool {
    t.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && t.bytes().all(is_ident_char)
}

/// Tokens: identifiers (and `$crate`), `::`, and single punctuation characters.
pub fn tokens(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_whitespace() {
            i += 1;
        } else if is_ident_char(ch) || (ch == b'$' && code[i..].starts_with("$crate")) {
            let s = i;
            i += 1;
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            out.push(code[s..i].to_string());
        } else if ch == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".into());
            i += 2;
        } else {
            let len = code[i..].chars().next().map_or(1, char::len_utf8);
            out.push(code[i..i + len].to_string());
            i += len;
        }
    }
    out
}

/// Parses a use tree at `toks[*j]` (after `use`), calling `emit` with each full path.
pub fn use_tree(
    toks: &[String],
    j: &mut usize,
    prefix: &mut Vec<String>,
    emit: &mut dyn FnMut(Vec<String>),
) {
    if toks.get(*j).is_some_and(|t| t == "::") {
        *j += 1; // leading `::` (extern crate path)
    }
    let depth = prefix.len();
    while *j < toks.len() {
        let t = toks[*j].as_str();
        if t == "{" {
            *j += 1;
            use_tree_group(toks, j, prefix, emit);
            break;
        } else if t == "::" {
            *j += 1;
        } else if is_ident(t) || t == "$crate" {
            prefix.push(t.to_string());
            *j += 1;
        } else if t == "*" {
            *j += 1;
        } else {
            // `;`, `,`, `}` or `as`-rename end the path.
            if prefix.len() > depth || t == ";" {
                emit(prefix.clone());
            }
            break;
        }
    }
    // `as name` renames: skip to the end of this tree element.
    while *j < toks.len() && !matches!(toks[*j].as_str(), ";" | "," | "}") {
        *j += 1;
    }
    prefix.truncate(depth);
}

/// Parses `a, b::c, {…} }` after a `{`, emitting paths under `prefix`; consumes the `}`.
pub fn use_tree_group(
    toks: &[String],
    j: &mut usize,
    prefix: &mut Vec<String>,
    emit: &mut dyn FnMut(Vec<String>),
) {
    while *j < toks.len() {
        match toks[*j].as_str() {
            "}" => {
                *j += 1;
                return;
            }
            "," => *j += 1,
            _ => {
                let before = *j;
                use_tree(toks, j, prefix, emit);
                if *j == before {
                    *j += 1;
                }
            }
        }
    }
}

/// Strongly connected components with more than one node (Tarjan's algorithm, iterative).
pub fn cycles(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut next, mut stack, mut out) = (0, Vec::new(), Vec::new());
    for s in 0..n {
        if index[s] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, Vec<usize>)> = vec![(s, edges[s].iter().copied().collect())];
        index[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s);
        on[s] = true;
        while let Some((v, succ)) = call.last_mut() {
            let v = *v;
            if let Some(w) = succ.pop() {
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    call.push((w, edges[w].iter().copied().collect()));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some((parent, _)) = call.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort_unstable();
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// A cycle through the nodes of one component, as a path `a -> b -> … -> a`.
pub fn cycle_path(edges: &[BTreeSet<usize>], comp: &[usize]) -> Vec<usize> {
    let inside: BTreeSet<usize> = comp.iter().copied().collect();
    let start = comp[0];
    // Breadth-first search from `start` back to `start` inside the component.
    let mut prev = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &edges[v] {
            if !inside.contains(&w) || prev.contains_key(&w) {
                continue;
            }
            prev.insert(w, v);
            if w == start {
                let mut path = vec![start];
                let mut at = v;
                while at != start {
                    path.push(at);
                    at = prev[&at];
                }
                path.push(start);
                path.reverse();
                return path;
            }
            queue.push_back(w);
        }
    }
    comp.to_vec()
}
