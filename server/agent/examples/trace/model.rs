//! The memory predictor as the trace's model (what `PredictorModel` in
//! `server/faascache/src/agent_links.rs` is to `faascache agent`, without the file), and the
//! data set's rows as invocations. Shared by the `trace` example and `tests/trace.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use faascache_agent::trace::Invocation;
use faascache_agent::{AgentError, MemoryModel};
use faascache_predictor::replay::Record;
use faascache_predictor::{Predictor, PredictorConfig};

/// A fresh predictor learning online (`PredictorConfig::default()` is the evaluated one).
pub struct Learner(pub Predictor);

impl Learner {
    pub fn with(cfg: PredictorConfig) -> Self {
        Learner(Predictor::new(cfg))
    }
}

impl MemoryModel for Learner {
    fn predict(&self, function: &str, features: &BTreeMap<String, f64>, booked: u64) -> u64 {
        self.0.predict(function, features, booked).bytes
    }

    fn observe(
        &mut self,
        function: &str,
        features: &BTreeMap<String, f64>,
        booked: u64,
        peak: u64,
    ) {
        // A rejected observation (non-finite features) is not learnt, as in the agent.
        let _ = self.0.observe(function, features, booked, peak);
    }

    fn save(&self) -> Result<(), AgentError> {
        Ok(())
    }
}

/// The data set's rows as invocations (a row without `wall_ms` runs 100 ms).
pub fn invocations(records: &[Record]) -> Vec<Invocation> {
    records
        .iter()
        .map(|r| Invocation {
            function: r.function.clone(),
            booked: r.booked,
            peak: r.peak.min(r.booked),
            wall: Duration::from_secs_f64(r.wall_ms.unwrap_or(100.0).max(0.0) / 1000.0),
            features: r.features.clone(),
        })
        .collect()
}
