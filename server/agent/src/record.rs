//! What the agent records and shows: a resize ([`ResizeRecord`]) and the JSON shapes of
//! sandboxes and resizes in the API's answers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::policy::Reason;
use crate::registry::Sandbox;

/// One resize the agent made (or tried).
#[derive(Debug, Clone)]
pub struct ResizeRecord {
    /// Budget before (if known).
    pub from: Option<u64>,
    /// Size asked for.
    pub to: u64,
    /// The budget the server reported after the resize (`None`: refused).
    pub budget: Option<u64>,
    /// The refusal's reason (`None`: resized).
    pub refused: Option<String>,
    /// Why.
    pub reason: Reason,
    /// The event or sample that caused it.
    pub trigger: String,
    /// Wall clock when it returned (ms since the epoch).
    pub at_unix_ms: u64,
    /// From the event's arrival (or the sample) to the resize's return.
    pub latency: Duration,
}

/// A sandbox as the API shows it.
pub fn sandbox_json(s: &Sandbox) -> Value {
    json!({
        "id": s.id,
        "function": s.function,
        "phase": s.phase.as_str(),
        "booked_bytes": s.booked,
        "predicted_bytes": s.predicted,
        "observed_bytes": s.observed,
        "reserved_bytes": s.reserved(),
        "last_peak_bytes": s.last_peak,
        "runs": s.runs,
        "features": s.features,
        "cgroup": s.cgroup.as_ref().map(|c| c.path().display().to_string()),
    })
}

/// A resize as the API shows it.
pub fn resize_json(r: &ResizeRecord) -> Value {
    json!({
        "from_bytes": r.from,
        "to_bytes": r.to,
        "budget_bytes": r.budget,
        "error": r.refused,
        "reason": r.reason.as_str(),
        "trigger": r.trigger,
        "at_unix_ms": r.at_unix_ms,
        "latency_us": r.latency.as_micros() as u64,
    })
}
