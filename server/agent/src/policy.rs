//! The cache's target size and when to move towards it: pure functions of what was measured,
//! unit-tested branch by branch (OFC's released policy had integer-division thresholds that
//! never fired; every branch here has a test).
//!
//! ```text
//! reserved(sandbox) = max(observed usage now, predicted peak)    while created or running
//!                   = observed usage now (else last peak, else predicted)   when idle
//! others            = max(0, node used − cache memory − Σ observed sandbox usage)
//! target            = clamp(node memory − reserve − others − Σ reserved, min cache, max cache)
//! ```
//!
//! `others` is what the node uses outside the cache and the sandboxes the agent can measure:
//! the platform's own processes (the invoker, the container runtime), the kernel, sandboxes
//! without a cgroup. Without it the target would hand that memory to the cache twice. A
//! sandbox without a cgroup has no observed usage, so its memory is in `others` *and* in its
//! reservation: counted twice, which errs towards a smaller cache, never towards an OOM.
//!
//! Decisions ([`Hysteresis::decide`]), in this order:
//! 1. **pressure** — measured node use above `shrink_at` (OFC: 90 %): the predictions are
//!    wrong or something unannounced grew; shrink by `shrink_step` (OFC: 10 % of the node)
//!    below the current budget (or to the target, if lower), at once.
//! 2. **predicted** — the budget is above the target: shrink to the target minus
//!    `shrink_slack`, at once (on a `created` event this runs before the event is answered).
//!    The slack means a burst of creations costs one resize per slack's worth of sandboxes,
//!    not one per sandbox.
//! 3. **grow** — the target exceeds the budget by at least `grow_step`, continuously for
//!    `settle`: grow towards the target by at most `grow_max_step` (OFC: 30 %), and never so
//!    far that the node, with the cache full, would have less than `grow_free` free (OFC:
//!    40 %). `grow_step` is larger than `shrink_slack`, so a shrink never triggers a grow
//!    back (the hysteresis band).
//! 4. otherwise hold.
//!
//! Every size is clamped to `[min_cache, max_cache]`.

use std::time::{Duration, Instant};

use crate::memory::NodeSample;

/// A quantity given in bytes or as a share of the node's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Bytes.
    Bytes(u64),
    /// Percent of the node's memory (0–100).
    Percent(f64),
}

impl Amount {
    /// In bytes, for a node of `total` bytes.
    pub fn of(self, total: u64) -> u64 {
        match self {
            Amount::Bytes(b) => b,
            Amount::Percent(p) => (total as f64 * p.clamp(0.0, 100.0) / 100.0) as u64,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Bytes(b) => write!(f, "{b} B"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The policy's constants. Each default is the reason written beside it; each is a flag of
/// `faascache agent`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Memory kept free of both cache and sandboxes (default 10 % = 1 − `shrink_at`: a cache
    /// at its target with every sandbox at its prediction puts the node exactly at the
    /// pressure line, so pressure shrinks only happen when predictions are exceeded).
    pub reserve: Amount,
    /// The cache is never made smaller (default 64 MiB: a server with less is little use,
    /// and servers refuse budgets below a few segments anyway).
    pub min_cache: u64,
    /// Nor larger (default: the node's memory, i.e. no cap beyond the target).
    pub max_cache: Option<u64>,
    /// Measured node use (fraction, 0–1) above which the cache shrinks whatever the target
    /// says (default 0.90: OFC's "shrink when the node is at 90 %").
    pub shrink_at: f64,
    /// How far a pressure shrink goes below the current budget (default 10 % of the node:
    /// OFC's eviction step).
    pub shrink_step: Amount,
    /// How far below the target a predicted shrink goes (default 2 % of the node: absorbs
    /// growth between two samples and batches a burst of creations into few resizes).
    pub shrink_slack: Amount,
    /// Least gap between target and budget worth growing for (default 5 % of the node: larger
    /// than `shrink_slack`, so a shrink never triggers a grow back; resizes are not free).
    pub grow_step: Amount,
    /// Largest single growth (default 30 % of the node: OFC grew by 30 %; a wrong target
    /// then costs at most one step before measurements catch it).
    pub grow_max_step: Amount,
    /// Free memory (fraction, 0–1) a growth must leave on the node with the cache full
    /// (default 0.40: OFC's "grow when 40 % is free"; lower it when the predictions are
    /// trusted, as the created event reserves a sandbox's memory before it is used).
    pub grow_free: f64,
    /// How long the target must stay a `grow_step` above the budget before growing (default
    /// 10 s: OFC's check period; warm sandboxes are often reused within seconds, and growing
    /// into memory a sandbox takes back at once costs two resizes).
    pub settle: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            reserve: Amount::Percent(10.0),
            min_cache: 64 << 20,
            max_cache: None,
            shrink_at: 0.90,
            shrink_step: Amount::Percent(10.0),
            shrink_slack: Amount::Percent(2.0),
            grow_step: Amount::Percent(5.0),
            grow_max_step: Amount::Percent(30.0),
            grow_free: 0.40,
            settle: Duration::from_secs(10),
        }
    }
}

/// What the policy knows about one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxMemory {
    /// Usage read from its cgroup at the last sample (`None`: no cgroup, or not read yet).
    pub observed: Option<u64>,
    /// Predicted peak of its current or next invocation (capped at booked).
    pub predicted: u64,
    /// Created or running (its memory is still to come); `false` when idle between runs.
    pub active: bool,
    /// Peak of its last finished invocation, if known.
    pub last_peak: Option<u64>,
}

/// The bytes to hold for a sandbox (see the module comment).
pub fn reserved(s: &SandboxMemory) -> u64 {
    let observed = s.observed.unwrap_or(0);
    if s.active {
        observed.max(s.predicted)
    } else {
        s.observed.or(s.last_peak).unwrap_or(s.predicted)
    }
}

/// The measurements a decision is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    /// The node's memory now.
    pub node: NodeSample,
    /// The cache's memory on the node (its RSS when known, else its budget).
    pub cache_use: u64,
    /// The cache's budget now.
    pub budget: u64,
    /// Σ [`reserved`] over the sandboxes.
    pub reserved: u64,
    /// Σ observed usage over the sandboxes with a cgroup.
    pub observed: u64,
}

/// The target and how it was reached (shown in `/v1/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Bytes the cache may have.
    pub target: u64,
    /// Memory of everything that is neither the cache nor a measured sandbox.
    pub others: u64,
    /// The reserve in bytes.
    pub reserve: u64,
    /// Node use above `shrink_at`.
    pub pressure: bool,
    /// The largest budget a growth may reach under `grow_free`.
    pub grow_cap: u64,
}

fn clamp(cfg: &PolicyConfig, total: u64, bytes: u64) -> u64 {
    let max = cfg.max_cache.unwrap_or(total).max(cfg.min_cache);
    bytes.clamp(cfg.min_cache, max)
}

/// Compute the target from measurements.
pub fn plan(cfg: &PolicyConfig, i: &Inputs) -> Plan {
    let total = i.node.total;
    let others = i
        .node
        .used
        .saturating_sub(i.cache_use)
        .saturating_sub(i.observed);
    let reserve = cfg.reserve.of(total);
    let free_for_cache = total
        .saturating_sub(reserve)
        .saturating_sub(others)
        .saturating_sub(i.reserved);
    let non_cache = i.node.used.saturating_sub(i.cache_use);
    let grow_cap = ((total as f64) * (1.0 - cfg.grow_free.clamp(0.0, 1.0))) as u64;
    Plan {
        target: clamp(cfg, total, free_for_cache),
        others,
        reserve,
        pressure: (i.node.used as f64) > (total as f64) * cfg.shrink_at,
        grow_cap: grow_cap.saturating_sub(non_cache),
    }
}

/// Why the cache is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Measured node use above `shrink_at`.
    Pressure,
    /// The budget was above the target (a sandbox was created or grew).
    Predicted,
    /// The target stayed above the budget for `settle`.
    Grow,
}

impl Reason {
    /// For logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pressure => "pressure",
            Reason::Predicted => "predicted",
            Reason::Grow => "grow",
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Leave the cache as it is.
    Hold,
    /// Resize to `to` bytes.
    Resize {
        /// New budget.
        to: u64,
        /// Why.
        reason: Reason,
    },
}

/// The policy's memory between decisions: since when the target has been high enough to grow.
#[derive(Debug, Clone, Default)]
pub struct Hysteresis {
    grow_since: Option<Instant>,
}

impl Hysteresis {
    /// Since when a growth has been waiting (for status).
    pub fn growing_since(&self) -> Option<Instant> {
        self.grow_since
    }

    /// Decide at `now` (see the module comment for the order of the rules).
    pub fn decide(&mut self, cfg: &PolicyConfig, i: &Inputs, p: &Plan, now: Instant) -> Decision {
        let total = i.node.total;
        let budget = i.budget;
        if p.pressure {
            let to = clamp(
                cfg,
                total,
                p.target
                    .min(budget.saturating_sub(cfg.shrink_step.of(total))),
            );
            if to < budget {
                self.grow_since = None;
                return Decision::Resize {
                    to,
                    reason: Reason::Pressure,
                };
            }
        }
        if budget > p.target {
            self.grow_since = None;
            let to = clamp(
                cfg,
                total,
                p.target.saturating_sub(cfg.shrink_slack.of(total)),
            );
            return if to < budget {
                Decision::Resize {
                    to,
                    reason: Reason::Predicted,
                }
            } else {
                Decision::Hold
            };
        }
        let to = clamp(
            cfg,
            total,
            p.target
                .min(budget.saturating_add(cfg.grow_max_step.of(total)))
                .min(p.grow_cap),
        );
        if p.pressure || to < budget.saturating_add(cfg.grow_step.of(total).max(1)) {
            self.grow_since = None;
            return Decision::Hold;
        }
        let since = *self.grow_since.get_or_insert(now);
        if now.duration_since(since) < cfg.settle {
            return Decision::Hold;
        }
        self.grow_since = None;
        Decision::Resize {
            to,
            reason: Reason::Grow,
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
