//! The agent: applies the platform's events to the registry, samples memory, asks the policy
//! and calls the resizer.
//!
//! Locks: `state` (registry, model, policy memory, records) is held only for short in-memory
//! work, never across a resize or a sweep of cgroup files; `resizing` serialises decisions and
//! resizes, so two events cannot both shrink from the same stale budget, and a `created` event
//! whose sandbox needs memory returns only after the resize that releases it has returned.
//! Lock order: `resizing`, then `state`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::memory::{process_rss, NodeSample, NodeSource};
use crate::model::MemoryModel;
use crate::policy::{plan, Decision, Hysteresis, Inputs, Plan, PolicyConfig};
pub use crate::record::ResizeRecord;
use crate::registry::{Phase, Registry, Sandbox};
use crate::request::{Create, Finish, Start};
use crate::resizer::Resizer;

/// How an agent runs (every field is a flag of `faascache agent`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The policy's constants.
    pub policy: PolicyConfig,
    /// Most sandboxes tracked (default 4096: far above what a worker node runs).
    pub max_sandboxes: usize,
    /// Most functions tracked (default 1024).
    pub max_functions: usize,
    /// Sandbox cgroups must be under this directory (default `/sys/fs/cgroup`): the API reads
    /// only cgroup files.
    pub cgroup_root: PathBuf,
    /// Sampling period (default 100 ms: a sandbox allocating at 1 GB/s grows 100 MB between
    /// samples, below the default slack on a node of 5 GiB or more).
    pub interval: Duration,
    /// The cache server's process, whose resident set is the cache's memory (else its budget).
    pub cache_pid: Option<u32>,
    /// How often the model is saved (default 60 s; and at shutdown).
    pub save_every: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            policy: PolicyConfig::default(),
            max_sandboxes: 4096,
            max_functions: 1024,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            interval: Duration::from_millis(100),
            cache_pid: None,
            save_every: Duration::from_secs(60),
        }
    }
}

/// Last N shrink latencies kept for percentiles.
const LATENCIES: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub created: u64,
    pub started: u64,
    pub finished: u64,
    pub destroyed: u64,
    pub resizes: u64,
    pub refusals: u64,
}

pub(crate) struct State {
    pub reg: Registry,
    pub model: Box<dyn MemoryModel>,
    pub hyst: Hysteresis,
    pub budget: Option<u64>,
    pub budget_error: Option<String>,
    pub node_error: Option<String>,
    pub inputs: Inputs,
    pub plan: Plan,
    pub last_resize: Option<ResizeRecord>,
    pub last_refusal: Option<ResizeRecord>,
    pub shrink_latencies: VecDeque<Duration>,
    pub counts: Counts,
    pub last_save: Instant,
}

/// What started a decision.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// An API event, with the instant it arrived.
    Event(String, Instant),
    /// A periodic sample, started at this instant.
    Sample(Instant),
}

impl Trigger {
    fn since(&self) -> Instant {
        match self {
            Trigger::Event(_, t) | Trigger::Sample(t) => *t,
        }
    }

    fn describe(&self) -> String {
        match self {
            Trigger::Event(what, _) => what.clone(),
            Trigger::Sample(_) => "sample".into(),
        }
    }
}

/// The node agent (see the module comment).
pub struct Agent {
    pub(crate) cfg: AgentConfig,
    pub(crate) node: NodeSource,
    resizer: Box<dyn Resizer>,
    pub(crate) state: Mutex<State>,
    resizing: Mutex<()>,
    pub(crate) started: Instant,
    stop: AtomicBool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cfg", &self.cfg)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Agent {
    /// An agent over this node, cache and model. Reads the cache's budget once (a failure is
    /// kept and retried at every decision).
    pub fn new(
        cfg: AgentConfig,
        node: NodeSource,
        resizer: Box<dyn Resizer>,
        model: Box<dyn MemoryModel>,
    ) -> Self {
        let (budget, budget_error) = match resizer.budget() {
            Ok(b) => (Some(b), None),
            Err(e) => {
                tracing::warn!(error = %e, "agent: cannot read the cache's budget; will retry");
                (None, Some(e.to_string()))
            }
        };
        let state = State {
            reg: Registry::new(cfg.max_sandboxes, cfg.max_functions),
            model,
            hyst: Hysteresis::default(),
            budget,
            budget_error,
            node_error: None,
            inputs: Inputs::default(),
            plan: Plan::default(),
            last_resize: None,
            last_refusal: None,
            shrink_latencies: VecDeque::new(),
            counts: Counts::default(),
            last_save: Instant::now(),
        };
        Agent {
            cfg,
            node,
            resizer,
            state: Mutex::new(state),
            resizing: Mutex::new(()),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A sandbox was created (`received`: when the event arrived). Registers it, then — before
    /// returning — shrinks the cache if its reservation needs it.
    pub fn created(&self, req: Create, received: Instant) -> Result<Value, ApiError> {
        let observed = match &req.cgroup {
            Some(cg) => cg.usage().ok(),
            None => None,
        };
        {
            let mut st = self.state();
            st.reg.check_insert(&req.id, &req.function)?;
            let predicted = st
                .model
                .predict(&req.function, &req.features, req.booked)
                .min(req.booked);
            let sb = Sandbox {
                id: req.id.clone(),
                function: req.function,
                booked: req.booked,
                features: req.features,
                cgroup: req.cgroup,
                phase: Phase::Created,
                predicted,
                observed,
                run_max: 0,
                last_peak: None,
                runs: 0,
                created: received,
            };
            st.reg.insert(sb)?;
            st.counts.created += 1;
        }
        let resize = self.adjust(Trigger::Event(format!("created {}", req.id), received));
        Ok(self.event_answer(&req.id, resize))
    }

    /// An invocation starts in sandbox `id` (new features re-predict its peak).
    pub fn started(&self, id: &str, req: Start, received: Instant) -> Result<Value, ApiError> {
        {
            let mut st = self.state();
            let st = &mut *st;
            let sb = st.reg.get_mut(id).ok_or_else(|| unknown(id))?;
            if sb.phase == Phase::Running {
                return Err(ApiError::conflict(format!(
                    "sandbox {id:?} is already running an invocation: finish it first (POST /v1/sandboxes/{id}/finish)"
                )));
            }
            if let Some(f) = req.features {
                sb.predicted = st.model.predict(&sb.function, &f, sb.booked).min(sb.booked);
                sb.features = f;
            }
            sb.phase = Phase::Running;
            sb.run_max = sb.observed.unwrap_or(0);
            sb.runs += 1;
            let function = sb.function.clone();
            if let Some(f) = st.reg.function_mut(&function) {
                f.invocations += 1;
                f.last_used = received;
            }
            st.counts.started += 1;
        }
        let resize = self.adjust(Trigger::Event(format!("started {id}"), received));
        Ok(self.event_answer(id, resize))
    }

    /// The invocation in sandbox `id` finished; its peak (given, else its cgroup's) teaches
    /// the model.
    pub fn finished(&self, id: &str, req: Finish, received: Instant) -> Result<Value, ApiError> {
        let mut st = self.state();
        let st = &mut *st;
        let sb = st.reg.get_mut(id).ok_or_else(|| unknown(id))?;
        if sb.phase != Phase::Running {
            return Err(ApiError::conflict(format!(
                "sandbox {id:?} is {}, not running: start an invocation first (POST /v1/sandboxes/{id}/start)",
                sb.phase.as_str()
            )));
        }
        // The cgroup's own peak covers this invocation only on its first run.
        let cgroup_peak = match (&sb.cgroup, sb.runs) {
            (Some(cg), 1) => cg.peak().ok().flatten(),
            _ => None,
        };
        let sampled = (sb.run_max > 0).then_some(sb.run_max);
        let peak = req.peak.or(cgroup_peak).or(sampled);
        if let Some(p) = peak {
            st.model.observe(&sb.function, &sb.features, sb.booked, p);
            sb.last_peak = Some(p);
        }
        sb.phase = Phase::Idle;
        let function = sb.function.clone();
        if let Some(f) = st.reg.function_mut(&function) {
            f.last_peak = peak.or(f.last_peak);
            f.last_used = received;
        }
        st.counts.finished += 1;
        Ok(json!({"id": id, "phase": "idle", "peak_bytes": peak}))
    }

    /// Sandbox `id` was destroyed: its memory is no longer reserved (the cache may grow into
    /// it after the settle time).
    pub fn destroyed(&self, id: &str) -> Result<Value, ApiError> {
        let mut st = self.state();
        let sb = st.reg.remove(id).ok_or_else(|| unknown(id))?;
        st.counts.destroyed += 1;
        Ok(json!({"id": id, "destroyed": true, "runs": sb.runs}))
    }

    /// One sandbox as JSON.
    pub fn sandbox(&self, id: &str) -> Result<Value, ApiError> {
        let st = self.state();
        let sb = st.reg.get(id).ok_or_else(|| unknown(id))?;
        Ok(crate::record::sandbox_json(sb))
    }

    fn event_answer(&self, id: &str, resize: Option<ResizeRecord>) -> Value {
        let st = self.state();
        let sb = st.reg.get(id);
        json!({
            "id": id,
            "phase": sb.map(|s| s.phase.as_str()),
            "predicted_bytes": sb.map(|s| s.predicted),
            "reserved_bytes": sb.map(Sandbox::reserved),
            "target_bytes": st.plan.target,
            "budget_bytes": st.budget,
            "resize": resize.as_ref().map(crate::record::resize_json),
        })
    }

    /// Sample every sandbox's cgroup, then decide (the sampler thread calls this every
    /// interval).
    pub fn tick(&self) {
        let start = Instant::now();
        let cgroups: Vec<_> = {
            let st = self.state();
            st.reg
                .sandboxes()
                .filter_map(|s| s.cgroup.clone().map(|c| (s.id.clone(), c)))
                .collect()
        };
        // Read outside the lock: up to --max-sandboxes small files.
        let read: BTreeMap<String, Option<u64>> = cgroups
            .into_iter()
            .map(|(id, cg)| (id, cg.usage().ok()))
            .collect();
        {
            let mut st = self.state();
            for sb in st.reg.sandboxes_mut() {
                if let Some(u) = read.get(&sb.id) {
                    sb.observed = *u;
                    if sb.phase == Phase::Running {
                        sb.run_max = sb.run_max.max(u.unwrap_or(0));
                    }
                }
            }
        }
        self.adjust(Trigger::Sample(start));
        self.maybe_save(false);
    }

    /// Save the model if it is time (or `now`).
    pub fn maybe_save(&self, now: bool) {
        let mut st = self.state();
        if now || st.last_save.elapsed() >= self.cfg.save_every {
            st.last_save = Instant::now();
            if let Err(e) = st.model.save() {
                tracing::warn!(error = %e, "agent: cannot save the memory model");
            }
        }
    }

    fn sample_node(&self) -> Option<NodeSample> {
        match self.node.sample() {
            Ok(s) => {
                self.state().node_error = None;
                Some(s)
            }
            Err(e) => {
                let msg = e.to_string();
                let mut st = self.state();
                if st.node_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(error = %msg, "agent: cannot read the node's memory; holding the cache's size");
                }
                st.node_error = Some(msg);
                None
            }
        }
    }

    fn refresh_budget(&self) {
        if self.state().budget.is_some() {
            return;
        }
        let got = self.resizer.budget();
        let mut st = self.state();
        match got {
            Ok(b) => {
                st.budget = Some(b);
                st.budget_error = None;
            }
            Err(e) => st.budget_error = Some(e.to_string()),
        }
    }

    /// Measure, plan, decide and (maybe) resize; returns the resize made, if any.
    pub fn adjust(&self, trigger: Trigger) -> Option<ResizeRecord> {
        let _one_at_a_time = lock(&self.resizing);
        self.refresh_budget();
        let node = self.sample_node()?;
        let cache_rss = self.cfg.cache_pid.and_then(|p| process_rss(p).ok());
        let (decision, from) = {
            let mut st = self.state();
            let st = &mut *st;
            let (reserved, observed) = st.reg.totals();
            // Unknown budget: assume the largest, so that shrinks are still asked for.
            let budget = st
                .budget
                .unwrap_or(self.cfg.policy.max_cache.unwrap_or(node.total));
            st.inputs = Inputs {
                node,
                cache_use: cache_rss.unwrap_or(budget),
                budget,
                reserved,
                observed,
            };
            st.plan = plan(&self.cfg.policy, &st.inputs);
            let d = st
                .hyst
                .decide(&self.cfg.policy, &st.inputs, &st.plan, Instant::now());
            (d, st.budget)
        };
        let Decision::Resize { to, reason } = decision else {
            return None;
        };
        let result = self.resizer.resize(to);
        let record = ResizeRecord {
            from,
            to,
            budget: result.as_ref().ok().copied(),
            refused: result.err().map(|e| e.to_string()),
            reason,
            trigger: trigger.describe(),
            at_unix_ms: unix_ms(),
            latency: trigger.since().elapsed(),
        };
        self.record(&record, &trigger);
        Some(record)
    }

    fn record(&self, r: &ResizeRecord, trigger: &Trigger) {
        let mut st = self.state();
        match (r.budget, &r.refused) {
            (Some(b), _) => {
                tracing::info!(from = ?r.from, to = r.to, budget = b, reason = r.reason.as_str(), trigger = %r.trigger, latency_us = r.latency.as_micros() as u64, "agent: resized the cache");
                st.budget = Some(b);
                st.counts.resizes += 1;
                let shrink = r.from.is_none_or(|f| b < f);
                if shrink && matches!(trigger, Trigger::Event(..)) {
                    if st.shrink_latencies.len() == LATENCIES {
                        st.shrink_latencies.pop_front();
                    }
                    st.shrink_latencies.push_back(r.latency);
                }
                st.last_resize = Some(r.clone());
            }
            (None, e) => {
                let e = e.as_deref().unwrap_or("no reason given");
                let again = st.last_refusal.as_ref().and_then(|l| l.refused.as_deref()) == Some(e);
                if again {
                    tracing::debug!(to = r.to, error = %e, "agent: the cache refused a resize again");
                } else {
                    tracing::warn!(to = r.to, reason = r.reason.as_str(), trigger = %r.trigger, error = %e, "agent: the cache refused a resize");
                }
                st.counts.refusals += 1;
                // The budget may have changed behind the refusal: read it again.
                st.budget = None;
                st.last_refusal = Some(r.clone());
            }
        }
    }

    /// Ask the sampler to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Run [`Self::tick`] every interval on a thread of its own until [`Self::stop`].
    pub fn spawn_sampler(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let agent = self.clone();
        std::thread::Builder::new()
            .name("agent-sampler".into())
            .spawn(move || {
                while !agent.stop.load(Ordering::Relaxed) {
                    let next = Instant::now() + agent.cfg.interval;
                    agent.tick();
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                agent.maybe_save(true);
            })
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no sandbox {id:?}: create it first (POST /v1/sandboxes), or it was already destroyed"
    ))
}
