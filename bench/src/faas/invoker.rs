//! The invoker: a warm pool of sandboxes per function, as an OpenWhisk invoker keeps them.
//!
//! [`Invoker::invoke`] takes an idle sandbox of the function (warm start) or, while the function
//! has fewer than `max_per_function` sandboxes, starts one (cold start); otherwise it waits for
//! one to come back. A sandbox idle longer than `keep_alive` is destroyed by the reaper thread.
//! A sandbox whose run failed (process died, OOM kill) is destroyed and the failure returned;
//! an action error leaves it in the pool. Dropping the invoker destroys every sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::agent::{AgentLink, Features};
use super::cgroup::Cgroups;
use super::sandbox::{Action, RunError, Runtime, Sandbox};

/// The pool's settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub keep_alive: Duration,
    pub max_per_function: usize,
    /// Longest wait for a free sandbox when the function is at its bound.
    pub acquire_timeout: Duration,
}

/// What one invocation observed.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The action's result (a JSON object).
    pub result: Value,
    /// `/run` round trip, as the invoker saw it.
    pub run: Duration,
    /// When the `/run` request was sent.
    pub started: Instant,
    /// Cold start time when this invocation started the sandbox.
    pub cold: Option<Duration>,
    pub sandbox: String,
}

/// Counters over the invoker's life.
#[derive(Debug, Default, serde::Serialize, Clone)]
pub struct PoolStats {
    pub cold_starts: u64,
    pub warm_starts: u64,
    pub oom_kills: u64,
    pub failed: u64,
    pub expired: u64,
}

#[derive(Debug, Default)]
struct FnPool {
    idle: Vec<Sandbox>,
    /// Sandboxes alive (idle + busy + starting).
    live: usize,
}

#[derive(Debug)]
struct Shared {
    pools: Mutex<HashMap<String, FnPool>>,
    freed: Condvar,
    stop: AtomicBool,
    stats: Mutex<PoolStats>,
}

/// The warm pool.
#[derive(Debug)]
pub struct Invoker {
    rt: Runtime,
    cgroups: Cgroups,
    actions: HashMap<String, Action>,
    cfg: PoolConfig,
    shared: Arc<Shared>,
    seq: AtomicU64,
    reaper: Option<std::thread::JoinHandle<()>>,
    /// The node agent new sandboxes are announced to (`--faas-agent`; per backend).
    agent: Mutex<Option<Arc<AgentLink>>>,
}

impl Invoker {
    pub fn new(rt: Runtime, cgroups: Cgroups, actions: Vec<Action>, cfg: PoolConfig) -> Invoker {
        cgroups.sweep();
        let shared = Arc::new(Shared {
            pools: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
            stop: AtomicBool::new(false),
            stats: Mutex::new(PoolStats::default()),
        });
        let reaper = {
            let shared = shared.clone();
            let keep = cfg.keep_alive;
            std::thread::spawn(move || reap(&shared, keep))
        };
        Invoker {
            rt,
            cgroups,
            actions: actions.into_iter().map(|a| (a.name.clone(), a)).collect(),
            cfg,
            shared,
            seq: AtomicU64::new(0),
            reaper: Some(reaper),
            agent: Mutex::new(None),
        }
    }

    /// Where the sandboxes' memory limits come from (for the report).
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sandboxes started from now on are announced to `agent` (`None`: to no agent); each
    /// keeps telling the agent that saw it start about its runs and its end.
    pub fn set_agent(&self, agent: Option<Arc<AgentLink>>) {
        *self.agent.lock().unwrap_or_else(|e| e.into_inner()) = agent;
    }

    /// Runs `function` once with `args`.
    pub fn invoke(&self, function: &str, args: &Value) -> Result<Invocation> {
        self.invoke_with(function, args, &[])
    }

    /// Runs `function` once with `args`; `features` describe the invocation to the node agent
    /// (`created` of a sandbox it starts, `start`).
    pub fn invoke_with(
        &self,
        function: &str,
        args: &Value,
        features: Features<'_>,
    ) -> Result<Invocation> {
        let (mut sb, cold) = self.acquire(function, features)?;
        let activation = format!("{}-{}", sb.id, self.seq.fetch_add(1, Ordering::Relaxed));
        let t = Instant::now();
        let res = sb.run_with(args, &activation, features);
        let run = t.elapsed();
        let id = sb.id.clone();
        match res {
            Ok(result) => {
                self.release(sb);
                Ok(Invocation {
                    result,
                    run,
                    started: t,
                    cold,
                    sandbox: id,
                })
            }
            Err(e @ RunError::Action { .. }) => {
                self.release(sb);
                Err(e.into())
            }
            Err(e) => {
                {
                    let mut st = self.lock_stats();
                    match e {
                        RunError::Oom { .. } => st.oom_kills += 1,
                        _ => st.failed += 1,
                    }
                }
                self.discard(sb);
                Err(e.into())
            }
        }
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, PoolStats> {
        self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(
        &self,
        function: &str,
        features: Features<'_>,
    ) -> Result<(Sandbox, Option<Duration>)> {
        let action = self
            .actions
            .get(function)
            .ok_or_else(|| anyhow!("no action named {function:?}"))?;
        let deadline = Instant::now() + self.cfg.acquire_timeout;
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Err(anyhow!("the invoker is stopping"));
            }
            let p = pools.entry(function.to_string()).or_default();
            if let Some(sb) = p.idle.pop() {
                self.lock_stats().warm_starts += 1;
                return Ok((sb, None));
            }
            if p.live < self.cfg.max_per_function {
                p.live += 1;
                drop(pools);
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let id = format!("{function}-{n}");
                let agent = self.agent.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let started = Sandbox::start_with(
                    &self.rt,
                    &self.cgroups,
                    action,
                    &id,
                    agent.as_ref(),
                    features,
                );
                return match started {
                    Ok(sb) => {
                        self.lock_stats().cold_starts += 1;
                        let cold = sb.start_time;
                        Ok((sb, Some(cold)))
                    }
                    Err(e) => {
                        self.forget(function);
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(anyhow!(
                    "no free sandbox of {function} within {:?} ({} busy)",
                    self.cfg.acquire_timeout,
                    p.live
                ));
            }
            pools = self
                .shared
                .freed
                .wait_timeout(pools, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn release(&self, sb: Sandbox) {
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.entry(sb.function.clone()).or_default().idle.push(sb);
        self.shared.freed.notify_all();
    }

    fn discard(&self, sb: Sandbox) {
        let f = sb.function.clone();
        drop(sb);
        self.forget(&f);
    }

    fn forget(&self, function: &str) {
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pools.get_mut(function) {
            p.live = p.live.saturating_sub(1);
        }
        self.shared.freed.notify_all();
    }

    /// Destroys every idle sandbox (between backends: each starts cold).
    pub fn clear(&self) {
        let idle: Vec<Sandbox> = {
            let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = Vec::new();
            for p in pools.values_mut() {
                p.live -= p.idle.len();
                v.append(&mut p.idle);
            }
            v
        };
        drop(idle);
    }
}

fn reap(shared: &Shared, keep_alive: Duration) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let expired: Vec<Sandbox> = {
            let mut pools = shared.pools.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            for p in pools.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut p.idle)
                    .into_iter()
                    .partition(|s| s.idle_since.elapsed() > keep_alive);
                p.idle = keep;
                p.live -= old.len();
                out.extend(old);
            }
            out
        };
        if !expired.is_empty() {
            shared
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expired += expired.len() as u64;
            shared.freed.notify_all();
        }
        drop(expired);
    }
}

impl Drop for Invoker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
        self.clear();
        // The parent goes too once empty (busy sandboxes still held elsewhere keep it).
        if self.cgroups.kind != super::cgroup::Kind::None {
            let _ = std::fs::remove_dir(&self.cgroups.parent);
        }
    }
}
