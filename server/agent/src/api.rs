//! The HTTP/1.1 JSON API (hyper 1 on a small tokio runtime): bounded connections, a header
//! timeout, a body timeout, bodies ≤ [`MAX_BODY`]. Events run on the blocking pool (a
//! `created` may wait for a resize); [`route`] is the whole API as a plain function.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/sandboxes` | `{"id","function","booked_bytes","features"?,"cgroup"?}` | 201, the sandbox's reservation and the resize made for it |
//! | `POST /v1/sandboxes/{id}/start` | `{"features"?}` or none | 200 |
//! | `POST /v1/sandboxes/{id}/finish` | `{"peak_bytes"?}` or none | 200 |
//! | `DELETE /v1/sandboxes/{id}` | none | 200 |
//! | `GET /v1/sandboxes/{id}` | | 200, the sandbox |
//! | `GET /v1/status` | | 200, everything the agent knows |
//! | `GET /healthz` | | 200 `{"ok":true}` |
//!
//! Errors are `{"error": "..."}` with 400 (unreadable body or path), 404 (no such sandbox or
//! endpoint), 405 (wrong method; `Allow` says which), 408 (body too slow), 409 (duplicate id,
//! wrong phase), 413 (body over 64 KiB), 415 (not JSON), 422 (a field missing or out of
//! range), 429 (a bound reached); none changes any state. Connections beyond the bound are closed
//! when accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::agent::Agent;
use crate::error::{AgentError, ApiError};
use crate::request::{self, MAX_BODY};

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where (default 127.0.0.1:9200: loopback, the platform's invoker is on the same node).
    pub listen: SocketAddr,
    /// Most connections at once (default 256; more are closed when accepted).
    pub max_connections: usize,
    /// Most events handled at once (the blocking pool; default 16).
    pub max_events: usize,
    /// Time allowed for a request's headers, and again for its body (default 10 s).
    pub timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9200)),
            max_connections: 256,
            max_events: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// An answer: status and JSON.
pub type Answer = (u16, Value);

fn error(e: ApiError) -> Answer {
    (e.status, json!({ "error": e.message }))
}

fn method_not_allowed(allow: &str) -> Answer {
    (
        405,
        json!({ "error": format!("method not allowed here: use {allow}") }),
    )
}

/// Answer one request. `content_type` is the request's header, if any; `received` is when it
/// arrived (the start of the shrink latency).
pub fn route(
    agent: &Agent,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    received: Instant,
) -> Answer {
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !body.is_empty() && !mime.eq_ignore_ascii_case("application/json") {
            return error(ApiError::new(
                415,
                format!("Content-Type {mime:?} is not accepted: send application/json"),
            ));
        }
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let result = match (parts.as_slice(), method) {
        (["", "healthz"], &Method::GET) => Ok((200, json!({ "ok": true }))),
        (["", "healthz"], _) => return method_not_allowed("GET"),
        (["", "v1", "status"], &Method::GET) => Ok((200, crate::status::status(agent))),
        (["", "v1", "status"], _) => return method_not_allowed("GET"),
        (["", "v1", "sandboxes"], &Method::POST) => request::create(body, &agent.cfg.cgroup_root)
            .and_then(|c| agent.created(c, received))
            .map(|v| (201, v)),
        (["", "v1", "sandboxes"], _) => return method_not_allowed("POST"),
        (["", "v1", "sandboxes", id], m) => request::check_id(id).and_then(|()| match *m {
            Method::GET => agent.sandbox(id).map(|v| (200, v)),
            Method::DELETE => agent.destroyed(id).map(|v| (200, v)),
            _ => Err(ApiError::new(
                405,
                "method not allowed here: use GET or DELETE",
            )),
        }),
        (["", "v1", "sandboxes", id, action], m) => {
            request::check_id(id).and_then(|()| match (*action, m) {
                ("start", &Method::POST) => request::start(body)
                    .and_then(|s| agent.started(id, s, received))
                    .map(|v| (200, v)),
                ("finish", &Method::POST) => request::finish(body)
                    .and_then(|f| agent.finished(id, f, received))
                    .map(|v| (200, v)),
                ("start" | "finish", _) => {
                    Err(ApiError::new(405, "method not allowed here: use POST"))
                }
                _ => Err(ApiError::not_found(format!(
                    "no action {:?}: use start or finish",
                    action.chars().take(32).collect::<String>()
                ))),
            })
        }
        _ => Err(ApiError::not_found(
            "no such endpoint: see docs/faas.md (POST /v1/sandboxes, GET /v1/status, ...)",
        )),
    };
    result.unwrap_or_else(error)
}

fn respond((status, body): Answer) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if status == 405 {
        let allow = if body.to_string().contains("use POST") {
            "POST"
        } else if body.to_string().contains("GET or DELETE") {
            "GET, DELETE"
        } else {
            "GET"
        };
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    }
    r
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>, timeout: Duration) -> Answer {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        error(ApiError::new(
            413,
            format!("the body is larger than {MAX_BODY} bytes: requests are small JSON objects"),
        ))
    };
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => {
            return error(ApiError::new(
                408,
                format!("the body did not arrive within {timeout:?}"),
            ))
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => return error(ApiError::bad_request(format!("cannot read the body: {e}"))),
        Ok(Ok(b)) => b.to_bytes(),
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let (method, path) = (parts.method, parts.uri.path().to_string());
    let joined = tokio::task::spawn_blocking(move || {
        route(
            &agent,
            &method,
            &path,
            content_type.as_deref(),
            &body,
            received,
        )
    })
    .await;
    joined.unwrap_or_else(|e| {
        tracing::error!(error = %e, "agent: a request handler failed");
        (
            500,
            json!({ "error": "internal error; see the agent's log" }),
        )
    })
}

/// Serve the API until the process ends; `ready` gets the bound address.
pub fn serve(
    agent: Arc<Agent>,
    cfg: ApiConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), AgentError> {
    let io = |what: &str, source: std::io::Error| AgentError::Io {
        what: what.into(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(cfg.max_events.max(1))
        .thread_name("agent-api")
        .enable_all()
        .build()
        .map_err(|e| io("start the API's runtime", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| io(&format!("listen on {}", cfg.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| io("read the listening address", e))?;
        tracing::info!(%addr, "agent: API listening");
        ready(addr);
        accept_loop(listener, agent, cfg).await;
        Ok(())
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, agent: Arc<Agent>, cfg: ApiConfig) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "agent: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = cfg.max_connections, "agent: too many connections; closing a new one");
            continue;
        };
        let (agent, timeout) = (agent.clone(), cfg.timeout);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let agent = agent.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(respond(handle(agent, req, timeout).await))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .max_buf_size(MAX_BODY.max(8192))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "agent: connection ended");
            }
            drop(slot);
        });
    }
}
