//! What `faascache agent` plugs into the agent's seams: [`ClusterResizer`] (the cluster's
//! `ResizeMemory` call through the client, for `--server ID`) and [`PredictorModel`] (the
//! per-function memory predictor of `faascache-predictor`, persisted in `--state-dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use faascache_agent::{AgentError, MemoryModel, Resizer};
use faascache_client::{Client, Error};
use faascache_predictor::{Predictor, PredictorConfig};
use parking_lot::Mutex;

/// Resizes server `server` of a cluster through the client's resize call; reads its budget
/// from the server itself (the coordinator's copy lags by a heartbeat).
pub struct ClusterResizer {
    client: Client,
    server: String,
    /// The server's locator, found again when a call to it fails (it may have restarted).
    locator: Mutex<Option<String>>,
}

impl ClusterResizer {
    /// Connect to the cluster through `dir` (its `coordinator.locator`) or `coordinator` and
    /// check that `server` is in it.
    pub fn connect(dir: Option<&Path>, coordinator: Option<&str>, server: &str) -> Result<Self> {
        let locator = match (coordinator, dir) {
            (Some(c), _) => c.to_string(),
            (None, d) => {
                let d = d.map_or_else(
                    || PathBuf::from(faascache_client::cli::DEFAULT_CLUSTER_DIR),
                    Path::to_path_buf,
                );
                faascache_client::cli::locator_from_dir(&d)
                    .with_context(|| format!("cannot find the cluster in {}", d.display()))?
            }
        };
        let client = Client::connect(&locator)
            .with_context(|| format!("cannot reach the coordinator at {locator}"))?;
        let info = client
            .find_server(server)
            .with_context(|| format!("--server {server}"))?;
        Ok(ClusterResizer {
            client,
            server: info.id,
            locator: Mutex::new(Some(info.locator)),
        })
    }

    fn locator(&self) -> Result<String, Error> {
        if let Some(l) = self.locator.lock().clone() {
            return Ok(l);
        }
        let l = self.client.find_server(&self.server)?.locator;
        *self.locator.lock() = Some(l.clone());
        Ok(l)
    }
}

impl Resizer for ClusterResizer {
    fn budget(&self) -> Result<u64, AgentError> {
        let stats = self.locator().and_then(|l| self.client.server_stats(&l));
        match stats {
            Ok(s) => Ok(s.budget_bytes),
            Err(e) => {
                *self.locator.lock() = None;
                Err(AgentError::Budget(format!("server {}: {e}", self.server)))
            }
        }
    }

    fn resize(&self, bytes: u64) -> Result<u64, AgentError> {
        match self.client.resize_server(&self.server, bytes) {
            Ok(r) => {
                tracing::debug!(server = %r.server, from = r.previous_bytes, to = r.budget_bytes,
                    evicted = r.evicted_objects, us = r.server_time.as_micros() as u64, "agent: resized");
                Ok(r.budget_bytes)
            }
            Err(Error::ResizeRefused(why)) => Err(AgentError::Refused(why)),
            Err(e) => {
                *self.locator.lock() = None;
                Err(AgentError::Refused(format!(
                    "server {} could not be resized: {e}",
                    self.server
                )))
            }
        }
    }
}

/// The file in `--state-dir` that keeps the predictor's samples.
pub const PREDICTOR_FILE: &str = "predictor.json";

/// The memory predictor as the agent's model; saved to `--state-dir/predictor.json`.
pub struct PredictorModel {
    predictor: Predictor,
    path: Option<PathBuf>,
}

impl PredictorModel {
    /// The predictor saved in `state_dir` (a new one if there is none; a file that cannot be
    /// read is an error naming it — move it away to start afresh).
    pub fn open(state_dir: Option<&Path>) -> Result<Self> {
        let path = state_dir.map(|d| d.join(PREDICTOR_FILE));
        let predictor = match &path {
            Some(p) => Predictor::load(p, PredictorConfig::default()).with_context(|| {
                format!(
                    "cannot load the memory predictor from {} (move it away to start afresh)",
                    p.display()
                )
            })?,
            None => Predictor::new(PredictorConfig::default()),
        };
        Ok(PredictorModel { predictor, path })
    }
}

impl MemoryModel for PredictorModel {
    fn predict(&self, function: &str, features: &BTreeMap<String, f64>, booked: u64) -> u64 {
        self.predictor.predict(function, features, booked).bytes
    }

    fn observe(
        &mut self,
        function: &str,
        features: &BTreeMap<String, f64>,
        booked: u64,
        peak: u64,
    ) {
        if let Err(e) = self.predictor.observe(function, features, booked, peak) {
            tracing::warn!(function, error = %e, "agent: the predictor did not take an observation");
        }
    }

    fn save(&self) -> Result<(), AgentError> {
        match &self.path {
            Some(p) => self
                .predictor
                .save(p)
                .map_err(|e| AgentError::Model(e.to_string())),
            None => Ok(()),
        }
    }
}
