//! `faascache gateway`: an S3- and Swift-compatible HTTP endpoint in front of a FaaSCache
//! cluster, so functions written for boto3, the AWS CLI or python-swiftclient read and write
//! backed tables by changing only their endpoint (`docs/faas.md`, "The S3 and Swift
//! endpoint").
//!
//! Reading order: [`buckets`] (bucket name → backed table, created on first use), [`objects`]
//! (the blocking object operations both APIs share), [`s3`] and [`s3_more`] (the S3 API on
//! `s3s`), [`multipart`] (uploads staged in the cluster), [`swift`] (the Swift subset),
//! [`body`] (bodies within a memory budget), then [`run`] here: one tokio runtime, a bounded
//! number of connections, header and body timeouts, and the blocking pool on which cluster
//! and store calls run.

#![deny(unsafe_code)]

pub mod body;
pub mod buckets;
mod checksum;
pub mod error;
mod fixup;
mod ingest;
mod metrics;
pub mod multipart;
pub mod objects;
pub mod s3;
mod s3_common;
mod s3_more;
pub mod shared;
mod staging;
pub mod swift;
mod tokens;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use faascache_client::{Client, ClientOptions, WritePolicy};
use faascache_objstore::{Scheme, Settings};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use s3s::auth::{S3Auth, SecretKey};
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::sync::Semaphore;

pub use buckets::AutoTables;
pub use error::{GwError, GwResult};
pub use metrics::{Latency, Requests};
pub use shared::{OpCounts, Shared};

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The cluster's coordinator locator.
    pub locator: String,
    /// The store auto tables are backed by (`None`: only existing tables are served).
    pub scheme: Option<Scheme>,
    /// Which buckets get a backed table on first use.
    pub auto: AutoTables,
    /// The policy of auto tables.
    pub policy: WritePolicy,
    /// Store settings (credentials, endpoints): the same sources as the servers'.
    pub settings: Settings,
    /// Access key → secret key pairs accepted in signatures (S3) and logins (Swift).
    pub credentials: Vec<(String, String)>,
    /// Serve requests without a signature (only with no credentials configured).
    pub no_auth: bool,
    /// Most connections at once (more are closed at accept).
    pub max_connections: usize,
    /// Bytes of request and response bodies held at once over all requests.
    pub max_buffer: u64,
    /// Async worker threads.
    pub threads: usize,
    /// Most cluster/store calls running at once (the blocking pool's size).
    pub max_calls: usize,
    /// Log one line per request at `info`.
    pub access_log: bool,
    /// How cluster calls wait for their replies.
    pub poll: faascache_client::transport::PollMode,
}

/// Signatures are checked against the configured key pairs.
#[derive(Debug)]
struct Keys(Vec<(String, String)>);

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        self.0
            .iter()
            .find(|(a, _)| a == access_key)
            .map(|(_, s)| SecretKey::from(s.as_str()))
            // As Swift's s3api answers (and without telling which keys exist).
            .ok_or_else(|| {
                s3s::S3Error::with_message(
                    s3s::S3ErrorCode::SignatureDoesNotMatch,
                    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                )
            })
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No credentials and no `--no-auth`.
    #[error("no credentials to check requests against: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ST_USER/ST_KEY (or [s3]/[swift] in --store-config), or pass --no-auth to serve anyone who can reach the port")]
    NoCredentials,
    /// The cluster could not be reached.
    #[error("cannot reach the cluster at {locator}: {source}")]
    Cluster {
        /// Where.
        locator: String,
        /// Why.
        source: faascache_client::Error,
    },
    /// Binding or running the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the gateway's runtime: {0}")]
    Runtime(std::io::Error),
}

fn s3_service(gw: &Arc<Shared>) -> S3Service {
    let mut b = S3ServiceBuilder::new(s3::S3Front { gw: gw.clone() });
    if !gw.credentials.is_empty() {
        b.set_auth(Keys(gw.credentials.clone()));
    }
    b.build()
}

/// Connect to the cluster, bind `cfg.listen` and serve until the process ends. `ready` is
/// called with the bound address once the gateway accepts connections.
pub fn run(cfg: GatewayConfig, ready: impl FnOnce(SocketAddr)) -> Result<(), StartError> {
    if cfg.credentials.is_empty() && !cfg.no_auth {
        return Err(StartError::NoCredentials);
    }
    let opts = ClientOptions::default()
        .timeout(Duration::from_secs(30))
        .transport(faascache_client::transport::ClientConfig {
            poll: cfg.poll,
            ..Default::default()
        });
    let client = Arc::new(Client::connect_with(&cfg.locator, opts).map_err(|source| {
        StartError::Cluster {
            locator: cfg.locator.clone(),
            source,
        }
    })?);
    let shared = Arc::new(Shared {
        buckets: buckets::Buckets::new(
            client.clone(),
            cfg.settings.clone(),
            cfg.scheme,
            cfg.auto.clone(),
            cfg.policy,
        ),
        budget: body::Budget::new(cfg.max_buffer),
        totals: objects::Totals::default(),
        ops: OpCounts::default(),
        errors: AtomicU64::new(0),
        requests: metrics::Requests::default(),
        started: SystemTime::now(),
        tokens: shared::Tokens::default(),
        credentials: cfg.credentials.clone(),
        no_auth: cfg.no_auth,
        uploads: OnceLock::new(),
        client,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .max_blocking_threads(cfg.max_calls.max(1))
        .thread_name("gateway")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    rt.block_on(serve(cfg, shared, ready))
}

async fn serve(
    cfg: GatewayConfig,
    shared: Arc<Shared>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let service = Arc::new(s3_service(&shared));
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    tracing::info!(%addr, "gateway: serving S3 and Swift");
    ready(addr);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "gateway: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = cfg.max_connections, "gateway: too many connections; closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (gw, svc, log) = (shared.clone(), service.clone(), cfg.access_log);
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (gw, svc) = (gw.clone(), svc.clone());
                async move { Ok::<_, std::convert::Infallible>(route(&gw, &svc, req, log).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), handler);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "gateway: connection ended");
            }
            drop(slot);
        });
    }
}

/// Methods either API has operations for (others: 405, not s3s's 501).
fn known_method(m: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::PUT, M::POST, M::DELETE, M::OPTIONS].contains(m) || m.as_str() == "COPY"
}

/// Paths the Swift API owns; everything else is S3.
fn is_swift(path: &str) -> bool {
    path.starts_with("/auth/") || path == "/auth" || path.starts_with("/v1/") || path == "/info"
}

async fn route(
    gw: &Arc<Shared>,
    s3: &S3Service,
    req: http::Request<Incoming>,
    log: bool,
) -> http::Response<s3s::Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if path == "/_faascache/status" && method == http::Method::GET {
        // Not counted: watching the gateway does not change its numbers.
        return http::Response::builder()
            .header("content-type", "application/json")
            .body(s3s::Body::from(gw.status().to_string()))
            .unwrap_or_default();
    }
    let start = Instant::now();
    let (resp, op) = metrics::Requests::run(dispatch(gw, s3, req, &method, &path)).await;
    let status = resp.status();
    gw.requests.record(op, status.as_u16(), start.elapsed());
    if status.is_server_error() || status.is_client_error() {
        gw.errors.fetch_add(1, Ordering::Relaxed);
    }
    if log {
        tracing::info!(target: "gateway::access", %method, %path, op, status = status.as_u16(), ms = start.elapsed().as_millis() as u64);
    }
    resp
}

async fn dispatch(
    gw: &Arc<Shared>,
    s3: &S3Service,
    req: http::Request<Incoming>,
    method: &http::Method,
    path: &str,
) -> http::Response<s3s::Body> {
    if !known_method(method) {
        fixup::method_not_allowed(method)
    } else if is_swift(path) {
        swift::handle(gw, req.map(s3s::Body::from)).await
    } else {
        let query = req.uri().query().unwrap_or_default().to_string();
        let copy_source = req
            .headers()
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match s3.call(req.map(s3s::Body::from)).await {
            Ok(r) if r.status().is_client_error() => {
                fixup::s3_error(r, path, &query, copy_source.as_deref())
            }
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = ?e, "gateway: S3 request failed");
                http::Response::builder()
                    .status(http::StatusCode::INTERNAL_SERVER_ERROR)
                    .body(s3s::Body::empty())
                    .unwrap_or_default()
            }
        }
    }
}
