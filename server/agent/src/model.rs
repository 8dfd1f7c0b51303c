//! What the agent asks about a sandbox's memory before it is used: [`MemoryModel`]. The real
//! predictor (per-function models over input features, as OFC's decision trees) lives in its
//! own crate and implements this trait; [`BookedModel`] is the safe default that predicts the
//! booked memory, so without a model the agent reserves what the platform booked.

use std::collections::BTreeMap;

use crate::error::AgentError;

/// Predicts a sandbox's peak memory from its function and input features, and learns from the
/// peaks observed when invocations finish. Called under the agent's lock: `predict` must be
/// quick (microseconds) and neither may block on I/O (`save` may).
pub trait MemoryModel: Send {
    /// Predicted peak bytes of one invocation of `function` with these input `features`
    /// (e.g. `input_bytes`, `width`, `height`); `booked` is the sandbox's memory limit. The
    /// agent caps the answer at `booked` (a sandbox cannot use more).
    fn predict(&self, function: &str, features: &BTreeMap<String, f64>, booked: u64) -> u64;

    /// An invocation finished with this observed `peak`.
    fn observe(&mut self, function: &str, features: &BTreeMap<String, f64>, booked: u64, peak: u64);

    /// Persist what was learnt (the agent calls this periodically and at shutdown).
    fn save(&self) -> Result<(), AgentError>;
}

/// Always predicts the booked memory: no learning, nothing to save.
#[derive(Debug, Clone, Copy, Default)]
pub struct BookedModel;

impl MemoryModel for BookedModel {
    fn predict(&self, _function: &str, _features: &BTreeMap<String, f64>, booked: u64) -> u64 {
        booked
    }

    fn observe(&mut self, _: &str, _: &BTreeMap<String, f64>, _: u64, _: u64) {}

    fn save(&self) -> Result<(), AgentError> {
        Ok(())
    }
}
