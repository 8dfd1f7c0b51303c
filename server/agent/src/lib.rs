//! `faascache agent` as a library: the node agent of issue 18, one per worker node beside the
//! cache server. The FaaS platform tells it about sandboxes (created, started, finished,
//! destroyed) over a small local HTTP API; it watches real memory (the node's and each
//! sandbox's cgroup), computes how much memory the cache may have, and resizes the local
//! server — shrinking *before* a new sandbox uses its memory, since the platform's `created`
//! event comes first. `docs/faas.md`, "Elasticity: the node agent", documents the API and the
//! policy.
//!
//! Reading order: [`policy`] (the target and the hysteresis, pure), [`memory`] (readers of
//! meminfo and cgroup v1/v2 files), [`registry`] (sandboxes and functions, bounded),
//! [`request`] (validation of the API's bodies), [`agent`] (events, sampling, resizing),
//! [`api`] (HTTP); [`trace`] replays an invocation trace through the policy in virtual time.
//! [`model::MemoryModel`] and [`resizer::Resizer`] are the two seams: the
//! memory predictor and the server's resize call plug in there.

#![deny(unsafe_code)]

pub mod agent;
pub mod api;
pub mod error;
pub mod memory;
pub mod model;
pub mod policy;
pub mod record;
pub mod registry;
pub mod request;
pub mod resizer;
pub mod status;
pub mod trace;

pub use agent::{Agent, AgentConfig};
pub use api::{serve, ApiConfig};
pub use error::{AgentError, ApiError};
pub use memory::{Cgroup, NodeSource};
pub use model::{BookedModel, MemoryModel};
pub use policy::{Amount, PolicyConfig};
pub use resizer::{CommandResizer, FakeResizer, Resizer};
