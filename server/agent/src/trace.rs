//! A replayed invocation trace on a simulated node, in virtual time: how much memory the
//! policy gives the cache when sandboxes are sized by booked memory, by a model (the memory
//! predictor) or by an oracle (the actual peak). Issue 18's benchmark "memory reclaimed over a
//! replayed invocation trace"; `examples/trace/` is the command, `docs/benchmarks.md` §13.4 the
//! results.
//!
//! **What is real.** The decisions are the agent's own code: [`plan`] and
//! [`Hysteresis::decide`] with the same [`PolicyConfig`], fed the same [`Inputs`] the agent
//! builds ([`reserved`] per sandbox, Σ observed usage, node use, the cache's budget), at the
//! same moments — every `created` and `started` event and every sampling `interval`. The
//! [`crate::Agent`] itself is not driven: it reads `Instant::now()`, the node's memory from
//! `/proc` or a cgroup and each sandbox's cgroup, so this module drives the pure policy with
//! virtual instants (`base + t`) and simulated measurements instead.
//!
//! **The platform.** Invocations arrive in the data set's order at seeded Poisson times
//! ([`Arrivals::Poisson`]) or in on/off bursts ([`Arrivals::OnOff`]: Poisson at `rate` during
//! `on`, nothing during `off`). A warm idle sandbox of the function is reused (lowest id
//! first); else a new one is created if the booked memory of all live sandboxes plus its own
//! fits the node, after destroying idle sandboxes least recently used first; else the
//! invocation waits in a FIFO queue. Idle sandboxes are destroyed after `keep_alive`. So the
//! platform admits by booked memory, as platforms do, and the sandboxes' lives are the same
//! whatever sizes the cache: only the cache differs between the three sizings.
//!
//! **Memory.** A running invocation uses its recorded peak for its recorded wall time (×
//! `time_scale`), from its start (after the `started` decision, as `/run` follows the event);
//! an idle sandbox keeps `idle_fraction` of its last peak; the cache uses its whole budget;
//! `others` is constant. Each sandbox's observed usage is its use at the last sample (0 when
//! created), as the agent reads cgroups. Resizes take no virtual time.
//!
//! **Measured** over [0, last finish]: time-weighted means of the cache's budget, of node −
//! Σ booked of live sandboxes and of node − actual use (sandboxes + others); the predictions
//! used at each start against the peak; *would-be OOMs* — moments when cache + actual use
//! exceeded the node (counted once per excursion, with their total time and worst excess).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::memory::NodeSample;
use crate::model::MemoryModel;
use crate::policy::{plan, reserved, Decision, Hysteresis, Inputs, PolicyConfig, Reason};
use crate::policy::{Plan, SandboxMemory};

/// One invocation of the trace (a row of a recorded data set).
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Its function.
    pub function: String,
    /// The sandbox's booked memory.
    pub booked: u64,
    /// Its measured peak.
    pub peak: u64,
    /// How long it ran.
    pub wall: Duration,
    /// Its input features (what the platform knows before the run).
    pub features: BTreeMap<String, f64>,
}

/// How arrival times are drawn (seeded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// A Poisson process at `rate` per second.
    Poisson,
    /// Poisson at `rate` during `on`, then nothing for `off`, repeated.
    OnOff {
        /// Length of a burst.
        on: Duration,
        /// Length of a pause.
        off: Duration,
    },
}

/// The simulated node and platform.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The node's memory.
    pub node_memory: u64,
    /// Arrivals per second (during bursts for [`Arrivals::OnOff`]).
    pub rate: f64,
    /// The arrival pattern.
    pub arrivals: Arrivals,
    /// Idle warm sandboxes are destroyed after this long.
    pub keep_alive: Duration,
    /// Seed of the arrival times.
    pub seed: u64,
    /// Recorded wall times are multiplied by this.
    pub time_scale: f64,
    /// An idle sandbox's memory as a fraction of its last peak.
    pub idle_fraction: f64,
    /// Memory used by everything else on the node (invoker, runtime, kernel).
    pub others: u64,
    /// The agent's sampling period.
    pub interval: Duration,
    /// The policy.
    pub policy: PolicyConfig,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            node_memory: 4 << 30,
            rate: 4.0,
            arrivals: Arrivals::Poisson,
            keep_alive: Duration::from_secs(30),
            seed: 1,
            time_scale: 1.0,
            idle_fraction: 1.0,
            others: 0,
            interval: Duration::from_millis(100),
            policy: PolicyConfig::default(),
        }
    }
}

/// How sandboxes are sized for the policy.
pub enum Sizing<'a> {
    /// Every prediction is the booked memory.
    Booked,
    /// Every prediction is the invocation's actual peak.
    Oracle,
    /// A model's prediction, capped at booked; it observes every finished invocation.
    Model(&'a mut dyn MemoryModel),
}

impl std::fmt::Debug for Sizing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sizing::Booked => "Booked",
            Sizing::Oracle => "Oracle",
            Sizing::Model(_) => "Model",
        })
    }
}

/// Arrival times of `n` invocations, in order.
pub fn arrival_times(n: usize, cfg: &TraceConfig) -> Vec<Duration> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let rate = cfg.rate.max(1e-9);
    let mut active = 0.0f64;
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen();
            active += -(1.0 - u).ln() / rate;
            let t = match cfg.arrivals {
                Arrivals::Poisson => active,
                Arrivals::OnOff { on, off } => {
                    let on = on.as_secs_f64().max(1e-3);
                    let k = (active / on).floor();
                    k * (on + off.as_secs_f64()) + (active - k * on)
                }
            };
            Duration::from_secs_f64(t)
        })
        .collect()
}

/// What a replay measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceReport {
    /// Invocations run, and those refused (booked above the node).
    pub invocations: u64,
    pub refused: u64,
    /// Invocations that waited for room, and sandboxes created.
    pub queued: u64,
    pub sandboxes: u64,
    /// Most sandboxes alive at once, and most running at once.
    pub max_live: usize,
    pub max_running: usize,
    /// Virtual time from 0 to the last finish.
    pub duration: Duration,
    /// Time-weighted means (bytes): the cache's budget, node − Σ booked of live sandboxes,
    /// node − actual use (sandboxes and others).
    pub mean_cache: f64,
    pub mean_booked_free: f64,
    pub mean_actual_free: f64,
    /// Smallest and largest budget.
    pub min_cache: u64,
    pub max_cache: u64,
    /// Predictions used at a start: at or over the peak; Σ over-prediction; Σ (booked − peak).
    pub exact_or_over: u64,
    pub over_bytes: u128,
    pub booked_over_bytes: u128,
    /// Predictions under the peak, and the largest shortfall in bytes.
    pub worst_miss: u64,
    /// Would-be OOMs: excursions of cache + actual use above the node, their total time and
    /// the largest excess in bytes.
    pub oom_moments: u64,
    pub oom_time: Duration,
    pub oom_worst: u64,
    /// The least free memory seen (node − cache − actual use; 0 during a would-be OOM).
    pub min_headroom: u64,
    /// Resizes by reason: pressure, predicted, grow.
    pub resizes: [u64; 3],
}

impl TraceReport {
    /// Mean cache ÷ mean (node − booked in use).
    pub fn of_booked_free(&self) -> f64 {
        self.mean_cache / self.mean_booked_free.max(1.0)
    }

    /// Mean cache ÷ mean (node − actual use).
    pub fn of_actual_free(&self) -> f64 {
        self.mean_cache / self.mean_actual_free.max(1.0)
    }

    /// Fraction of predictions at or over the peak.
    pub fn exact_or_over_rate(&self) -> f64 {
        self.exact_or_over as f64 / self.invocations.max(1) as f64
    }

    /// Mean over-prediction (bytes), and booked memory's.
    pub fn mean_over(&self) -> f64 {
        self.over_bytes as f64 / self.invocations.max(1) as f64
    }

    pub fn booked_mean_over(&self) -> f64 {
        self.booked_over_bytes as f64 / self.invocations.max(1) as f64
    }

    /// Booked's mean over-prediction ÷ this sizing's (None when this one never over-predicts).
    pub fn over_ratio(&self) -> Option<f64> {
        (self.over_bytes > 0).then(|| self.booked_mean_over() / self.mean_over())
    }

    /// All resizes.
    pub fn resize_count(&self) -> u64 {
        self.resizes.iter().sum()
    }

    /// As JSON (bytes and seconds).
    pub fn to_json(&self) -> Value {
        json!({
            "invocations": self.invocations, "refused": self.refused, "queued": self.queued,
            "sandboxes": self.sandboxes, "max_live": self.max_live,
            "max_running": self.max_running, "duration_s": self.duration.as_secs_f64(),
            "mean_cache_bytes": self.mean_cache,
            "mean_node_minus_booked_bytes": self.mean_booked_free,
            "mean_node_minus_actual_bytes": self.mean_actual_free,
            "cache_of_node_minus_booked": self.of_booked_free(),
            "cache_of_node_minus_actual": self.of_actual_free(),
            "min_cache_bytes": self.min_cache, "max_cache_bytes": self.max_cache,
            "exact_or_over": self.exact_or_over_rate(),
            "mean_over_bytes": self.mean_over(), "booked_mean_over_bytes": self.booked_mean_over(),
            "over_ratio": self.over_ratio(), "worst_miss_bytes": self.worst_miss,
            "would_be_ooms": self.oom_moments, "oom_s": self.oom_time.as_secs_f64(),
            "oom_worst_bytes": self.oom_worst, "min_headroom_bytes": self.min_headroom,
            "resizes": {"pressure": self.resizes[0], "predicted": self.resizes[1],
                        "grow": self.resizes[2], "all": self.resize_count()},
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Finish(u64),
    Expire(u64, u64),
    Arrival(usize),
}

#[derive(Debug)]
struct Sandbox {
    function: String,
    booked: u64,
    running: Option<usize>,
    predicted: u64,
    observed: Option<u64>,
    last_peak: Option<u64>,
    actual: u64,
    idle_since: Duration,
    generation: u64,
}

impl Sandbox {
    fn memory(&self) -> SandboxMemory {
        SandboxMemory {
            observed: self.observed,
            predicted: self.predicted,
            active: self.running.is_some(),
            last_peak: self.last_peak,
        }
    }
}

struct Sim<'c, 'm> {
    cfg: &'c TraceConfig,
    trace: &'c [Invocation],
    sizing: Sizing<'m>,
    base: Instant,
    now: Duration,
    events: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    live: BTreeMap<u64, Sandbox>,
    next_id: u64,
    queue: VecDeque<usize>,
    budget: u64,
    hyst: Hysteresis,
    over: bool,
    integral: [f64; 3],
    r: TraceReport,
}

/// Replays `trace` on the node of `cfg`, sizing sandboxes with `sizing`.
pub fn run(trace: &[Invocation], cfg: &TraceConfig, sizing: Sizing<'_>) -> TraceReport {
    let mut sim = Sim {
        cfg,
        trace,
        sizing,
        base: Instant::now(),
        now: Duration::ZERO,
        events: BinaryHeap::new(),
        seq: 0,
        live: BTreeMap::new(),
        next_id: 0,
        queue: VecDeque::new(),
        budget: 0,
        hyst: Hysteresis::default(),
        over: false,
        integral: [0.0; 3],
        r: TraceReport::default(),
    };
    // The cache starts where the policy would settle on an empty node.
    let p = sim.plan().1;
    sim.budget = p.target.min(p.grow_cap.max(cfg.policy.min_cache));
    sim.r.min_cache = sim.budget;
    sim.r.max_cache = sim.budget;
    sim.r.min_headroom = cfg.node_memory;
    for (i, t) in arrival_times(trace.len(), cfg).into_iter().enumerate() {
        sim.push(t, Event::Arrival(i));
    }
    let interval = cfg.interval.max(Duration::from_millis(1));
    let mut next_tick = interval;
    while let Some(Reverse((t, _, _))) = sim.events.peek().copied() {
        if next_tick < t {
            sim.advance(next_tick);
            sim.tick();
            next_tick += interval;
            continue;
        }
        let Some(Reverse((t, _, ev))) = sim.events.pop() else {
            break;
        };
        sim.advance(t);
        match ev {
            Event::Arrival(i) => sim.arrive(i),
            Event::Finish(id) => sim.finish(id),
            Event::Expire(id, generation) => sim.expire(id, generation),
        }
        sim.check_oom();
    }
    sim.finish_report()
}

impl Sim<'_, '_> {
    fn push(&mut self, t: Duration, ev: Event) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    fn actual_use(&self) -> u64 {
        self.live.values().map(|s| s.actual).sum::<u64>() + self.cfg.others
    }

    fn booked_use(&self) -> u64 {
        self.live.values().map(|s| s.booked).sum()
    }

    /// Integrate the means up to `t` (expiries after the last finish are not measured).
    fn advance(&mut self, t: Duration) {
        let running = self.live.values().any(|s| s.running.is_some());
        let to_start = self.r.invocations + self.r.refused < self.trace.len() as u64;
        if t > self.now && (running || to_start) {
            let dt = (t - self.now).as_secs_f64();
            let node = self.cfg.node_memory as f64;
            self.integral[0] += dt * self.budget as f64;
            self.integral[1] += dt * (node - self.booked_use() as f64).max(0.0);
            self.integral[2] += dt * (node - self.actual_use() as f64).max(0.0);
            if self.over {
                self.r.oom_time += t - self.now;
            }
            self.r.duration += t - self.now;
        }
        self.now = self.now.max(t);
    }

    fn check_oom(&mut self) {
        let total = self.budget + self.actual_use();
        let over = total > self.cfg.node_memory;
        self.r.min_headroom = self
            .r
            .min_headroom
            .min(self.cfg.node_memory.saturating_sub(total));
        if over {
            self.r.oom_worst = self.r.oom_worst.max(total - self.cfg.node_memory);
            if !self.over {
                self.r.oom_moments += 1;
            }
        }
        self.over = over;
    }

    fn plan(&self) -> (Inputs, Plan) {
        let (mut reserved_sum, mut observed) = (0, 0);
        for s in self.live.values() {
            reserved_sum += reserved(&s.memory());
            observed += s.observed.unwrap_or(0);
        }
        let inputs = Inputs {
            node: NodeSample {
                total: self.cfg.node_memory,
                used: self.budget + self.actual_use(),
            },
            cache_use: self.budget,
            budget: self.budget,
            reserved: reserved_sum,
            observed,
        };
        let p = plan(&self.cfg.policy, &inputs);
        (inputs, p)
    }

    /// What the agent's `adjust` does, with the recording resizer and the virtual clock.
    fn adjust(&mut self) {
        let (inputs, p) = self.plan();
        let at = self.base + self.now;
        if let Decision::Resize { to, reason } = self.hyst.decide(&self.cfg.policy, &inputs, &p, at)
        {
            self.budget = to;
            self.r.min_cache = self.r.min_cache.min(to);
            self.r.max_cache = self.r.max_cache.max(to);
            let i = match reason {
                Reason::Pressure => 0,
                Reason::Predicted => 1,
                Reason::Grow => 2,
            };
            self.r.resizes[i] += 1;
        }
    }

    /// The agent's sampler: read every sandbox's usage, then decide.
    fn tick(&mut self) {
        for s in self.live.values_mut() {
            s.observed = Some(s.actual);
        }
        self.adjust();
        self.check_oom();
    }

    fn arrive(&mut self, i: usize) {
        if self.trace[i].booked > self.cfg.node_memory {
            self.r.refused += 1;
            return;
        }
        if !self.queue.is_empty() || !self.place(i) {
            self.r.queued += 1;
            self.queue.push_back(i);
        }
    }

    /// Start invocation `i` in a warm sandbox or a new one; false when there is no room.
    fn place(&mut self, i: usize) -> bool {
        let trace = self.trace;
        let inv = &trace[i];
        let warm = self
            .live
            .iter()
            .find(|(_, s)| s.running.is_none() && s.function == inv.function)
            .map(|(id, _)| *id);
        let id = match warm {
            Some(id) => id,
            None => {
                while self.booked_use() + inv.booked > self.cfg.node_memory {
                    let lru = self
                        .live
                        .iter()
                        .filter(|(_, s)| s.running.is_none())
                        .min_by_key(|(id, s)| (s.idle_since, **id))
                        .map(|(id, _)| *id);
                    match lru {
                        Some(id) => self.live.remove(&id),
                        None => return false,
                    };
                }
                self.create(i)
            }
        };
        self.start(id, i);
        true
    }

    fn predict(&mut self, i: usize) -> u64 {
        let trace = self.trace;
        let inv = &trace[i];
        match &mut self.sizing {
            Sizing::Booked => inv.booked,
            Sizing::Oracle => inv.peak,
            Sizing::Model(m) => m.predict(&inv.function, &inv.features, inv.booked),
        }
        .min(inv.booked)
    }

    /// The `created` event: registered with its prediction, cgroup empty; then a decision.
    fn create(&mut self, i: usize) -> u64 {
        let predicted = self.predict(i);
        let id = self.next_id;
        self.next_id += 1;
        self.live.insert(
            id,
            Sandbox {
                function: self.trace[i].function.clone(),
                booked: self.trace[i].booked,
                running: None,
                predicted,
                observed: Some(0),
                last_peak: None,
                actual: 0,
                idle_since: self.now,
                generation: 0,
            },
        );
        self.r.sandboxes += 1;
        self.r.max_live = self.r.max_live.max(self.live.len());
        // Created and not yet running: active for the policy.
        if let Some(s) = self.live.get_mut(&id) {
            s.running = Some(i);
        }
        self.adjust();
        if let Some(s) = self.live.get_mut(&id) {
            s.running = None;
        }
        id
    }

    /// The `started` event with the invocation's features (re-predicts), a decision, then the
    /// invocation's memory is in use until it finishes.
    fn start(&mut self, id: u64, i: usize) {
        let predicted = self.predict(i);
        let trace = self.trace;
        let inv = &trace[i];
        if predicted >= inv.peak {
            self.r.exact_or_over += 1;
            self.r.over_bytes += u128::from(predicted - inv.peak);
        } else {
            self.r.worst_miss = self.r.worst_miss.max(inv.peak - predicted);
        }
        self.r.booked_over_bytes += u128::from(inv.booked.saturating_sub(inv.peak));
        self.r.invocations += 1;
        let wall = inv.wall.mul_f64(self.cfg.time_scale.max(0.0));
        let peak = inv.peak;
        if let Some(s) = self.live.get_mut(&id) {
            s.running = Some(i);
            s.predicted = predicted;
        }
        self.adjust();
        if let Some(s) = self.live.get_mut(&id) {
            s.actual = peak;
        }
        let running = self.live.values().filter(|s| s.running.is_some()).count();
        self.r.max_running = self.r.max_running.max(running);
        self.push(self.now + wall, Event::Finish(id));
    }

    /// The `finished` event: the model learns the peak; the sandbox idles until kept alive no
    /// longer; a waiting invocation may now fit.
    fn finish(&mut self, id: u64) {
        let now = self.now;
        let idle_fraction = self.cfg.idle_fraction.clamp(0.0, 1.0);
        let Some(s) = self.live.get_mut(&id) else {
            return;
        };
        let Some(i) = s.running.take() else {
            return;
        };
        let trace = self.trace;
        let inv = &trace[i];
        s.last_peak = Some(inv.peak);
        s.actual = (inv.peak as f64 * idle_fraction) as u64;
        s.idle_since = now;
        s.generation += 1;
        let generation = s.generation;
        if let Sizing::Model(m) = &mut self.sizing {
            m.observe(&inv.function, &inv.features, inv.booked, inv.peak);
        }
        self.push(now + self.cfg.keep_alive, Event::Expire(id, generation));
        while let Some(&next) = self.queue.front() {
            if !self.place(next) {
                break;
            }
            self.queue.pop_front();
        }
    }

    fn expire(&mut self, id: u64, generation: u64) {
        if self
            .live
            .get(&id)
            .is_some_and(|s| s.running.is_none() && s.generation == generation)
        {
            self.live.remove(&id);
        }
    }

    fn finish_report(mut self) -> TraceReport {
        let secs = self.r.duration.as_secs_f64().max(1e-9);
        self.r.mean_cache = self.integral[0] / secs;
        self.r.mean_booked_free = self.integral[1] / secs;
        self.r.mean_actual_free = self.integral[2] / secs;
        self.r
    }
}
