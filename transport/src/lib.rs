//! FaaSCache transport: service locators, the wire protocol, client RPC sessions and the server
//! dispatch loop, over loopback (in-process), TCP and a reliable datagram protocol on UDP (and on
//! raw Ethernet through DPDK, with the crate feature `dpdk`: module `dpdk`), and InfiniBand/RoCE
//! verbs with the `verbs` feature.
//!
//! The bytes on the wire (header, opcode table, status codes, message codecs) are the protocol
//! crate's, `faascache_protocol`; this crate moves them. Reading order: [`locator`] → [`limits`] →
//! [`session`] (client, caller-driven progress) → [`server`] (handlers, deferral, dispatch) →
//! the transports: `loopback`, `tcp`, [`datagram`] (driver trait, sans-I/O reliable protocol,
//! UDP driver) and `udp` (the UDP transport built from them, generic over the driver; `dpdk`
//! reuses it); with `--features verbs`, `verbs`.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use faascache_transport::*;
//! let server = serve(&"tcp:host=127.0.0.1,port=0".parse().unwrap(), Arc::new(NoHandler),
//!                    DispatchConfig::default()).unwrap();
//! let session = connect(&server.local_locator().clone().into(), ClientConfig::default()).unwrap();
//! let (status, reply) = session.call(Opcode::Echo, b"hi", Duration::from_secs(1)).unwrap();
//! assert!(status.is_ok() && reply == b"hi");
//! ```

// `unsafe` is allowed only in the FFI modules (`datagram::sys`: sendmmsg/recvmmsg/UDP GSO,
// `verbs::sys`, `dpdk::sys`) and at the two `unsafe fn Qp::post_send` calls in
// `verbs::datapath` (registered buffers alive until completion), and `sys::thread_cpu_time`
// (pthread_getcpuclockid, which rustix lacks); the rest of `sys` uses rustix.
#![deny(unsafe_code)]

mod call;
pub mod conn_limits;
mod coordinator_locator;
pub mod datagram;
mod dispatch;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod error;
mod frame;
pub mod limits;
pub mod locator;
mod loopback;
pub mod poll;
pub mod server;
pub mod session;
mod sys;
mod tcp;
mod udp;
#[cfg(feature = "verbs")]
pub mod verbs;

// The protocol's wire module under its old name, for this crate's own paths (`crate::wire::...`);
// other crates name `faascache_protocol` directly.
use faascache_protocol::wire;

use std::sync::Arc;

pub use call::{call, CallError};
pub use conn_limits::ConnLimits;
pub use coordinator_locator::CoordinatorLocator;
pub use dispatch::{dispatch, Dispatch, DispatchHandler};
pub use error::{Error, Result};
/// The opcode and status of every RPC: the protocol's types, used throughout this API.
pub use faascache_protocol::wire::{Opcode, Status};
pub use locator::{Locator, LocatorError, ServiceLocator, TransportKind};
pub use poll::PollMode;
pub use server::{
    AbortOnUnwind, DispatchConfig, Handler, IncomingRpc, NoHandler, Responder, ServerHandle,
};
pub use session::{ClientConfig, PendingRpc, Session};
pub use sys::process_cpu_time;

// Handles the other crates share across threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Session>();
    send_sync::<PendingRpc>();
    send_sync::<ServerHandle>();
    send_sync::<Responder>();
    send_sync::<ServiceLocator>();
};

/// Transports this build can run (`infrc` needs the `verbs` feature, `dpdk` the `dpdk` feature).
pub const SUPPORTED: &[TransportKind] = &[
    TransportKind::Loopback,
    TransportKind::Tcp,
    TransportKind::Udp,
    #[cfg(feature = "verbs")]
    TransportKind::Infrc,
    #[cfg(feature = "dpdk")]
    TransportKind::Dpdk,
];

#[cfg(not(feature = "dpdk"))]
fn dpdk_not_built() -> Error {
    Error::Unsupported {
        kind: "dpdk",
        reason:
            "this build has no DPDK support: rebuild with `--features faascache-transport/dpdk` \
                 (needs libdpdk-dev, pkg-config and libclang-dev; see docs/transports.md)",
    }
}

#[cfg(not(feature = "verbs"))]
fn unsupported(kind: TransportKind) -> Error {
    Error::Unsupported {
        kind: kind.as_str(),
        reason: match kind {
            TransportKind::Infrc => {
                "this build lacks the `verbs` feature: rebuild with `--features verbs` \
                 (needs cmake and clang; rdma-core at run time)"
            }
            _ => "its driver is not implemented yet (a later issue); use tcp or udp",
        },
    }
}

/// Is this a kernel-bypass transport (`dpdk`, `infrc`)? For `--require-bypass`: a server that
/// must not fall back to a kernel transport checks its chosen locator with this.
pub fn is_kernel_bypass(kind: TransportKind) -> bool {
    matches!(kind, TransportKind::Dpdk | TransportKind::Infrc)
}

#[cfg(feature = "verbs")]
fn connect_infrc(alt: &Locator, cfg: &ClientConfig) -> Result<Session> {
    verbs::connect(alt, cfg)
}
#[cfg(not(feature = "verbs"))]
fn connect_infrc(alt: &Locator, _cfg: &ClientConfig) -> Result<Session> {
    Err(unsupported(alt.kind()))
}
#[cfg(feature = "verbs")]
fn serve_infrc(loc: &Locator, h: Arc<dyn Handler>, cfg: &DispatchConfig) -> Result<ServerHandle> {
    verbs::serve(loc, h, cfg)
}
#[cfg(not(feature = "verbs"))]
fn serve_infrc(loc: &Locator, _h: Arc<dyn Handler>, _cfg: &DispatchConfig) -> Result<ServerHandle> {
    Err(unsupported(loc.kind()))
}

/// Connect to a server, trying the locator's alternatives in order. The chosen transport is
/// logged and available as [`Session::transport`]; a skipped preferred alternative is logged at
/// `warn` (never a silent fallback). Alternatives whose kind `FAASCACHE_TRANSPORTS` (e.g. `tcp`)
/// does not list are skipped.
pub fn connect(locator: &ServiceLocator, cfg: ClientConfig) -> Result<Session> {
    let mut failures = Vec::new();
    let mut unusable = Vec::new();
    for (i, alt) in locator.alternatives().iter().enumerate() {
        if !allowed_by_env(alt.kind()) {
            tracing::debug!(skipped = %alt, "not in FAASCACHE_TRANSPORTS");
            continue;
        }
        let r = match alt.kind() {
            TransportKind::Loopback => loopback::connect(alt, &cfg),
            TransportKind::Tcp => tcp::connect(alt, &cfg),
            TransportKind::Udp => udp::connect(alt, &cfg),
            TransportKind::Infrc => connect_infrc(alt, &cfg),
            #[cfg(feature = "dpdk")]
            TransportKind::Dpdk => dpdk::connect(alt, &cfg),
            #[cfg(not(feature = "dpdk"))]
            TransportKind::Dpdk => Err(dpdk_not_built()),
        };
        match r {
            Ok(s) => {
                if !failures.is_empty() {
                    tracing::warn!(chosen = %alt, skipped = ?failures, "connected with a less preferred transport");
                } else if i > 0 {
                    tracing::debug!(chosen = %alt, "earlier alternatives skipped (not built or not allowed)");
                }
                tracing::info!(transport = %alt.kind(), peer = %alt, poll = %cfg.poll, "session connected");
                return Ok(s);
            }
            Err(e) if locator.alternatives().len() == 1 => return Err(e),
            // A transport this build lacks is an expected skip, not a degradation.
            Err(e @ Error::Unsupported { .. }) => {
                tracing::debug!(skipped = %alt, error = %e, "alternative not usable by this build");
                unusable.push(format!("{alt}: {e}"));
            }
            Err(e) => failures.push(format!("{alt}: {e}")),
        }
    }
    failures.extend(unusable);
    Err(Error::AllAlternativesFailed(failures))
}

/// What a server serves on ([`serve_alternatives`]) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportChoice {
    /// The data-plane transport: the first alternative that started.
    pub kind: TransportKind,
    /// Why: `first choice`, or the preferred alternatives that failed and how; and the further
    /// alternatives served too.
    pub reason: String,
}

impl std::fmt::Display for TransportChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind, self.reason)
    }
}

/// Serve on every alternative of `locator` that starts, as RAMCloud servers do: a locator such
/// as `dpdk:...;tcp:...` serves DPDK clients on DPDK and the others (the CLI on a workstation,
/// a process without the feature) on TCP; clients take the first alternative they can use. The
/// first alternative that starts is the data plane and gets `cfg` (cores, pinning, polling);
/// later ones get one unpinned blocking dispatch thread each, so they never compete with the
/// polling cores. An alternative that fails is logged and skipped — the server falls back to
/// the next — unless `require_bypass`: then a kernel-bypass alternative ([`is_kernel_bypass`])
/// that fails, or none at all, is an error naming the cause, and the server refuses to start.
/// Returns the handles in the locator's order; advertise their local locators joined by `;`.
pub fn serve_alternatives(
    locator: &ServiceLocator,
    handler: Arc<dyn Handler>,
    cfg: DispatchConfig,
    require_bypass: bool,
) -> Result<(Vec<ServerHandle>, TransportChoice)> {
    let mut handles: Vec<ServerHandle> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for alt in locator.alternatives() {
        let this_cfg = if handles.is_empty() {
            cfg.clone()
        } else {
            DispatchConfig {
                cores: 1,
                pin: false,
                poll: PollMode::Block,
                ..cfg.clone()
            }
        };
        match serve(&alt.clone().into(), handler.clone(), this_cfg) {
            Ok(h) => handles.push(h),
            Err(e) if require_bypass && is_kernel_bypass(alt.kind()) => {
                return Err(Error::Bind {
                    locator: alt.to_string(),
                    reason: format!(
                        "{e}; --require-bypass refuses to start without it (fix the cause, see \
                         docs/transports.md, or drop --require-bypass to fall back)"
                    ),
                });
            }
            Err(e) => {
                tracing::warn!(locator = %alt, error = %e, "cannot serve on this alternative: skipped");
                failed.push(format!("{alt}: {e}"));
            }
        }
    }
    let Some(first) = handles.first() else {
        return Err(Error::AllAlternativesFailed(failed));
    };
    if require_bypass && !is_kernel_bypass(first.transport()) {
        return Err(Error::Bind {
            locator: locator.to_string(),
            reason: "--require-bypass: the locator has no kernel-bypass alternative (dpdk:, \
                     infrc:)"
                .into(),
        });
    }
    let kind = first.transport();
    let mut reason = if failed.is_empty() {
        "first choice".to_string()
    } else {
        format!("fallback; failed: {}", failed.join("; "))
    };
    let others: Vec<String> = handles[1..]
        .iter()
        .map(|h| h.transport().to_string())
        .collect();
    if !others.is_empty() {
        reason.push_str(&format!(
            "; also serving {} (one blocking thread) for clients without {kind}",
            others.join(", ")
        ));
    }
    if failed.is_empty() {
        tracing::info!(transport = %kind, %reason, "transport chosen");
    } else {
        tracing::warn!(transport = %kind, %reason, "transport chosen: a preferred alternative failed");
    }
    Ok((handles, TransportChoice { kind, reason }))
}

/// Alternatives a client may use, from `FAASCACHE_TRANSPORTS` (comma-separated kinds, e.g.
/// `tcp`): a process told so skips other alternatives of a server's locator. Unset: all.
fn allowed_by_env(kind: TransportKind) -> bool {
    match std::env::var("FAASCACHE_TRANSPORTS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|k| k.trim() == kind.as_str()),
        _ => true,
    }
}

/// Serve RPCs on the locator's first alternative (a server listens on exactly one address per
/// transport; run `serve` once per transport to listen on several).
pub fn serve(
    locator: &ServiceLocator,
    handler: Arc<dyn Handler>,
    cfg: DispatchConfig,
) -> Result<ServerHandle> {
    let loc = locator.first();
    let h = match loc.kind() {
        TransportKind::Loopback => loopback::serve(loc, handler, &cfg),
        TransportKind::Tcp => tcp::serve(loc, handler, &cfg),
        TransportKind::Udp => udp::serve(loc, handler, &cfg),
        TransportKind::Infrc => serve_infrc(loc, handler, &cfg),
        #[cfg(feature = "dpdk")]
        TransportKind::Dpdk => dpdk::serve(loc, handler, &cfg),
        #[cfg(not(feature = "dpdk"))]
        TransportKind::Dpdk => Err(dpdk_not_built()),
    }?;
    tracing::info!(transport = %loc.kind(), local = %h.local_locator(), cores = cfg.cores, pin = cfg.pin,
                   poll = %cfg.poll, "serving");
    Ok(h)
}
