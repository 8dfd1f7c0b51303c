//! The sandboxes the platform told the agent about, and what it keeps per function; both
//! bounded (`--max-sandboxes`, `--max-functions`). A full table refuses new entries (429)
//! rather than forgetting a live sandbox: forgetting one would hand its memory to the cache.
//! A function's entry without sandboxes is forgotten, least recently used first, when the
//! table of functions is full.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::ApiError;
use crate::memory::Cgroup;
use crate::policy::{reserved, SandboxMemory};

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, not yet running an invocation (its memory is about to be used).
    Created,
    /// Running an invocation.
    Running,
    /// Warm and idle between invocations.
    Idle,
}

impl Phase {
    /// For the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Idle => "idle",
        }
    }
}

/// One sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The platform's id.
    pub id: String,
    /// Its function.
    pub function: String,
    /// Its memory limit.
    pub booked: u64,
    /// Input features of its current (or last) invocation.
    pub features: BTreeMap<String, f64>,
    /// Its memory cgroup, if known.
    pub cgroup: Option<Cgroup>,
    /// Its phase.
    pub phase: Phase,
    /// Predicted peak of its current or next invocation (≤ booked).
    pub predicted: u64,
    /// Usage at the last sample of its cgroup.
    pub observed: Option<u64>,
    /// Largest sampled usage during the current invocation.
    pub run_max: u64,
    /// Peak of the last finished invocation.
    pub last_peak: Option<u64>,
    /// Invocations started.
    pub runs: u64,
    /// When the agent learnt of it.
    pub created: Instant,
}

impl Sandbox {
    /// What the policy sees.
    pub fn memory(&self) -> SandboxMemory {
        SandboxMemory {
            observed: self.observed,
            predicted: self.predicted,
            active: self.phase != Phase::Idle,
            last_peak: self.last_peak,
        }
    }

    /// Bytes held for it.
    pub fn reserved(&self) -> u64 {
        reserved(&self.memory())
    }
}

/// What is kept per function.
#[derive(Debug, Clone)]
pub struct Function {
    /// Live sandboxes of it.
    pub sandboxes: usize,
    /// Invocations started.
    pub invocations: u64,
    /// Peak of the last finished invocation.
    pub last_peak: Option<u64>,
    /// Last event about it.
    pub last_used: Instant,
}

/// Sandboxes and functions, bounded.
#[derive(Debug)]
pub struct Registry {
    sandboxes: BTreeMap<String, Sandbox>,
    functions: BTreeMap<String, Function>,
    max_sandboxes: usize,
    max_functions: usize,
}

impl Registry {
    /// An empty registry with these bounds.
    pub fn new(max_sandboxes: usize, max_functions: usize) -> Self {
        Registry {
            sandboxes: BTreeMap::new(),
            functions: BTreeMap::new(),
            max_sandboxes: max_sandboxes.max(1),
            max_functions: max_functions.max(1),
        }
    }

    /// Whether `id` of `function` could be inserted now (without changing anything).
    pub fn check_insert(&self, id: &str, function: &str) -> Result<(), ApiError> {
        if self.sandboxes.contains_key(id) {
            return Err(ApiError::conflict(format!(
                "sandbox {id:?} already exists: destroy it first (DELETE /v1/sandboxes/{id}) or use a new id"
            )));
        }
        if self.sandboxes.len() >= self.max_sandboxes {
            return Err(ApiError::too_many(format!(
                "the agent tracks at most {} sandboxes (--max-sandboxes) and has {}: destroy finished ones first",
                self.max_sandboxes,
                self.sandboxes.len()
            )));
        }
        if !self.functions.contains_key(function)
            && self.functions.len() >= self.max_functions
            && self.functions.values().all(|f| f.sandboxes > 0)
        {
            return Err(ApiError::too_many(format!(
                "the agent tracks at most {} functions (--max-functions), each with live sandboxes: destroy some first",
                self.max_functions
            )));
        }
        Ok(())
    }

    /// Insert a sandbox (after [`Self::check_insert`] passed for it).
    pub fn insert(&mut self, sb: Sandbox) -> Result<(), ApiError> {
        self.check_insert(&sb.id, &sb.function)?;
        if !self.functions.contains_key(&sb.function) && self.functions.len() >= self.max_functions
        {
            let oldest = self
                .functions
                .iter()
                .filter(|(_, f)| f.sandboxes == 0)
                .min_by_key(|(_, f)| f.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.functions.remove(&k);
            }
        }
        let f = self
            .functions
            .entry(sb.function.clone())
            .or_insert(Function {
                sandboxes: 0,
                invocations: 0,
                last_peak: None,
                last_used: sb.created,
            });
        f.sandboxes += 1;
        f.last_used = sb.created;
        self.sandboxes.insert(sb.id.clone(), sb);
        Ok(())
    }

    /// The sandbox `id`.
    pub fn get(&self, id: &str) -> Option<&Sandbox> {
        self.sandboxes.get(id)
    }

    /// The sandbox `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Sandbox> {
        self.sandboxes.get_mut(id)
    }

    /// The function's entry, to change.
    pub fn function_mut(&mut self, name: &str) -> Option<&mut Function> {
        self.functions.get_mut(name)
    }

    /// Forget sandbox `id` (its function's entry stays, without it).
    pub fn remove(&mut self, id: &str) -> Option<Sandbox> {
        let sb = self.sandboxes.remove(id)?;
        if let Some(f) = self.functions.get_mut(&sb.function) {
            f.sandboxes = f.sandboxes.saturating_sub(1);
        }
        Some(sb)
    }

    /// All sandboxes, by id.
    pub fn sandboxes(&self) -> impl Iterator<Item = &Sandbox> {
        self.sandboxes.values()
    }

    /// All sandboxes, to change.
    pub fn sandboxes_mut(&mut self) -> impl Iterator<Item = &mut Sandbox> {
        self.sandboxes.values_mut()
    }

    /// Number of sandboxes.
    pub fn len(&self) -> usize {
        self.sandboxes.len()
    }

    /// No sandboxes.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty()
    }

    /// Number of functions kept.
    pub fn functions(&self) -> usize {
        self.functions.len()
    }

    /// `(Σ reserved, Σ observed)` over the sandboxes.
    pub fn totals(&self) -> (u64, u64) {
        self.sandboxes.values().fold((0, 0), |(r, o), s| {
            (
                r.saturating_add(s.reserved()),
                o.saturating_add(s.observed.unwrap_or(0)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(id: &str, function: &str) -> Sandbox {
        Sandbox {
            id: id.into(),
            function: function.into(),
            booked: 100,
            features: BTreeMap::new(),
            cgroup: None,
            phase: Phase::Created,
            predicted: 60,
            observed: Some(10),
            run_max: 0,
            last_peak: None,
            runs: 0,
            created: Instant::now(),
        }
    }

    #[test]
    fn bounds_and_duplicates_refuse_without_change() {
        let mut r = Registry::new(2, 2);
        r.insert(sb("a", "f")).unwrap();
        assert_eq!(r.insert(sb("a", "g")).unwrap_err().status, 409);
        r.insert(sb("b", "g")).unwrap();
        let e = r.insert(sb("c", "f")).unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.message.contains("--max-sandboxes"), "{e}");
        assert_eq!(r.len(), 2);
        assert_eq!(r.totals(), (120, 20));
        // Functions: both have live sandboxes, a third is refused; once one has none, it is
        // forgotten to make room.
        let mut r = Registry::new(10, 2);
        r.insert(sb("a", "f")).unwrap();
        r.insert(sb("b", "g")).unwrap();
        let e = r.insert(sb("c", "h")).unwrap_err();
        assert!(e.message.contains("--max-functions"), "{e}");
        r.insert(sb("c", "g")).unwrap();
        assert!(r.remove("a").is_some());
        assert!(r.remove("a").is_none());
        r.insert(sb("d", "h")).unwrap();
        assert_eq!(r.functions(), 2);
        assert!(r.function_mut("f").is_none());
    }
}
