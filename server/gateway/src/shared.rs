//! What every request handler shares (a leaf module: the front ends and `run` use it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use faascache_client::Client;

use crate::error::GwResult;
use crate::{body, buckets, metrics, objects, staging};

pub use crate::metrics::OpCounts;
pub use crate::tokens::Tokens;

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    /// Buckets → tables.
    pub buckets: buckets::Buckets,
    /// Body memory budget.
    pub budget: Arc<body::Budget>,
    /// Byte totals.
    pub totals: objects::Totals,
    /// Request counts per operation.
    pub ops: OpCounts,
    /// Failed requests (status 4xx or 5xx).
    pub errors: AtomicU64,
    /// Requests by status class, latency by operation.
    pub requests: metrics::Requests,
    /// When the gateway started (ListBuckets' creation dates).
    pub started: SystemTime,
    /// Swift logins: token → account user.
    pub tokens: Tokens,
    /// The accepted credentials.
    pub credentials: Vec<(String, String)>,
    /// Whether unsigned requests are served.
    pub no_auth: bool,
    pub(crate) uploads: OnceLock<staging::Uploads>,
    pub(crate) client: Arc<Client>,
}

impl Shared {
    /// The multipart staging tables (created on first use).
    pub fn uploads(&self) -> GwResult<&staging::Uploads> {
        staging::open_lazily(&self.uploads, &self.client)
    }

    /// The status as JSON (`GET /_faascache/status`).
    pub fn status(&self) -> serde_json::Value {
        let (requests, latency) = self.requests.to_json();
        let uptime = SystemTime::now()
            .duration_since(self.started)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "uptime_s": uptime,
            "requests": requests,
            "latency_us": latency,
            "operations": self.ops.snapshot(),
            "errors": self.errors.load(Ordering::Relaxed),
            "bytes_in": self.totals.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.totals.bytes_out.load(Ordering::Relaxed),
            "direct_puts": self.totals.direct_puts.load(Ordering::Relaxed),
            "buffered_bytes": self.budget.used(),
            "buffer_limit": self.budget.limit(),
        })
    }
}
