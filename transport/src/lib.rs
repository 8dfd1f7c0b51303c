//! FaaSCache transport: service locators, the wire protocol, client RPC sessions and the server
//! dispatch loop, over loopback (in-process), TCP and a reliable datagram protocol on UDP (and on
//! raw Ethernet through DPDK, with the crate feature `dpdk`: module `dpdk`), and InfiniBand/RoCE
//! verbs with the `verbs` feature.
//!
//! Reading order: [`locator`] → [`wire`] (header, opcode table, status, payload codec) → [`limits`] →
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

// `unsafe` is allowed only in the named FFI modules (`sys`, `datagram::sys`, `verbs::sys`,
// `dpdk::sys`).
#![deny(unsafe_code)]

pub mod datagram;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod error;
mod frame;
pub mod limits;
pub mod locator;
mod loopback;
pub mod msg;
pub mod poll;
pub mod server;
pub mod session;
mod sys;
mod tcp;
mod udp;
#[cfg(feature = "verbs")]
pub mod verbs;
pub mod wire;
pub mod zk;

use std::sync::Arc;

pub use error::{Error, Result};
pub use locator::{Locator, LocatorError, ServiceLocator, TransportKind};
pub use msg::{key_hash, Message, MsgError, Request as RpcRequest, ServerId};
pub use poll::PollMode;
pub use server::{
    DispatchConfig, DispatchHandler, Handler, IncomingRpc, NoHandler, Responder, ServerHandle,
};
pub use session::{ClientConfig, PendingRpc, Session};
pub use sys::process_cpu_time;
pub use wire::{dispatch, Dispatch, Opcode, Status};

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
/// `warn` (never a silent fallback).
pub fn connect(locator: &ServiceLocator, cfg: ClientConfig) -> Result<Session> {
    let mut failures = Vec::new();
    for (i, alt) in locator.alternatives().iter().enumerate() {
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
                if i > 0 {
                    tracing::warn!(chosen = %alt, skipped = ?failures, "connected with a less preferred transport");
                }
                tracing::info!(transport = %alt.kind(), peer = %alt, poll = %cfg.poll, "session connected");
                return Ok(s);
            }
            Err(e) if locator.alternatives().len() == 1 => return Err(e),
            Err(e) => failures.push(format!("{alt}: {e}")),
        }
    }
    Err(Error::AllAlternativesFailed(failures))
}

/// Which alternative of a listen locator a server serves on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportChoice {
    /// The transport serving.
    pub kind: TransportKind,
    /// Why: `"first choice"`, or the alternatives skipped and their errors.
    pub reason: String,
}

impl std::fmt::Display for TransportChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind, self.reason)
    }
}

/// Serve on the first alternative of `locator` that works (`dpdk:...;tcp:...` falls back to TCP
/// when DPDK cannot start), logging the choice and why. With `require_bypass`, only
/// kernel-bypass alternatives ([`is_kernel_bypass`]) are tried and a failure of all of them is an
/// error naming each cause: a server that must not fall back refuses to start instead.
pub fn serve_with_fallback(
    locator: &ServiceLocator,
    handler: Arc<dyn Handler>,
    cfg: DispatchConfig,
    require_bypass: bool,
) -> Result<(ServerHandle, TransportChoice)> {
    let mut skipped: Vec<String> = Vec::new();
    for alt in locator.alternatives() {
        if require_bypass && !is_kernel_bypass(alt.kind()) {
            skipped.push(format!("{alt}: not kernel-bypass (--require-bypass)"));
            continue;
        }
        match serve(&alt.clone().into(), handler.clone(), cfg.clone()) {
            Ok(h) => {
                let reason = if skipped.is_empty() {
                    "first choice".to_string()
                } else {
                    format!("fallback; skipped {}", skipped.join("; "))
                };
                if skipped.is_empty() {
                    tracing::info!(transport = %alt.kind(), %reason, "transport chosen");
                } else {
                    tracing::warn!(transport = %alt.kind(), %reason, "transport chosen: a less preferred alternative");
                }
                return Ok((
                    h,
                    TransportChoice {
                        kind: alt.kind(),
                        reason,
                    },
                ));
            }
            Err(e) => {
                tracing::warn!(locator = %alt, error = %e, "cannot serve on this alternative");
                skipped.push(format!("{alt}: {e}"));
            }
        }
    }
    if require_bypass {
        return Err(Error::Bind {
            locator: locator.to_string(),
            reason: format!(
                "--require-bypass: no kernel-bypass transport (dpdk, infrc) could start, and                  falling back to a kernel transport is refused. Tried: {}. Fix the cause above \
                 (docs/transports.md) or drop --require-bypass",
                skipped.join("; ")
            ),
        });
    }
    Err(Error::AllAlternativesFailed(skipped))
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
