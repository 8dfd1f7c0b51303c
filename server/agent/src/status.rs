//! `GET /v1/status`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::Agent;
use crate::memory::NodeSource;
use crate::record::{resize_json, sandbox_json};

fn percentile(sorted: &[Duration], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).map(|d| d.as_micros() as u64)
}

/// The whole status.
pub fn status(agent: &Agent) -> Value {
    let st = agent.state();
    let mut lat: Vec<Duration> = st.shrink_latencies.iter().copied().collect();
    lat.sort_unstable();
    let cfg = &agent.cfg;
    let i = &st.inputs;
    let p = &st.plan;
    let source = match &agent.node {
        NodeSource::Proc { meminfo } => meminfo.display().to_string(),
        NodeSource::Cgroup { cgroup, .. } => format!("cgroup {}", cgroup.path().display()),
    };
    json!({
        "node": {
            "source": source,
            "total_bytes": i.node.total,
            "used_bytes": i.node.used,
            "error": st.node_error,
        },
        "cache": {
            "budget_bytes": st.budget,
            "use_bytes": i.cache_use,
            "target_bytes": p.target,
            "min_bytes": cfg.policy.min_cache,
            "max_bytes": cfg.policy.max_cache,
            "budget_error": st.budget_error,
        },
        "plan": {
            "reserved_bytes": i.reserved,
            "observed_bytes": i.observed,
            "others_bytes": p.others,
            "reserve_bytes": p.reserve,
            "grow_cap_bytes": p.grow_cap,
            "pressure": p.pressure,
            "growing_for_ms": st.hyst.growing_since().map(|t| t.elapsed().as_millis() as u64),
        },
        "last_resize": st.last_resize.as_ref().map(resize_json),
        "last_refusal": st.last_refusal.as_ref().map(resize_json),
        "shrink_latency_us": {
            "count": lat.len(),
            "last": st.shrink_latencies.back().map(|d| d.as_micros() as u64),
            "p50": percentile(&lat, 0.5),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().map(|d| d.as_micros() as u64),
        },
        "counts": {
            "sandboxes": st.reg.len(),
            "functions": st.reg.functions(),
            "created": st.counts.created,
            "started": st.counts.started,
            "finished": st.counts.finished,
            "destroyed": st.counts.destroyed,
            "resizes": st.counts.resizes,
            "refusals": st.counts.refusals,
        },
        "limits": {
            "max_sandboxes": cfg.max_sandboxes,
            "max_functions": cfg.max_functions,
            "interval_ms": cfg.interval.as_millis() as u64,
        },
        "sandboxes": st.reg.sandboxes().map(sandbox_json).collect::<Vec<_>>(),
        "uptime_ms": agent.started.elapsed().as_millis() as u64,
    })
}
