//! Errors of the transport API. Each variant says what happened and what to do about it.

use std::time::Duration;

use crate::locator::LocatorError;
use crate::wire::DecodeError;

/// An error from `connect`, `serve` or an RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The service locator could not be parsed.
    #[error(transparent)]
    Locator(#[from] LocatorError),
    /// The locator names a transport this build cannot run.
    #[error("transport `{kind}` is not available in this build: {reason}")]
    Unsupported {
        /// Transport prefix.
        kind: &'static str,
        /// Why, and what to do.
        reason: &'static str,
    },
    /// Could not reach (or bind) the address in the locator.
    #[error("could not connect to {locator}: {reason} (check that the server runs and the locator is right)")]
    Connect {
        /// The locator tried.
        locator: String,
        /// The OS error or other cause.
        reason: String,
    },
    /// Could not listen on the locator's address.
    #[error(
        "could not serve on {locator}: {reason} (is the port in use or the address not local?)"
    )]
    Bind {
        /// The locator tried.
        locator: String,
        /// The OS error or other cause.
        reason: String,
    },
    /// A kernel-bypass transport cannot use its device: none present, driver or library
    /// missing, memory registration refused. The reason says which and what to do.
    #[error("no usable device for {locator}: {reason}")]
    Device {
        /// The locator tried.
        locator: String,
        /// The cause and its remedy.
        reason: String,
    },
    /// Every alternative of a multi-alternative locator failed; each failure is listed.
    #[error("no alternative of the service locator worked: {0:?}")]
    AllAlternativesFailed(Vec<String>),
    /// The session is broken (connection closed or reset, server shut down, peer silent, protocol
    /// violation). Every RPC waiting on it gets this error; open a new session to retry.
    #[error("session to {peer} failed: {reason}; open a new session (and retry idempotent RPCs)")]
    SessionFailed {
        /// The peer's locator.
        peer: String,
        /// The cause.
        reason: String,
    },
    /// No reply within the caller's timeout. The RPC is still outstanding (wait again or cancel).
    #[error(
        "no reply within {0:?}: the server is slow or unreachable; wait again, cancel or retry"
    )]
    Timeout(Duration),
    /// The RPC was cancelled by the caller.
    #[error("RPC cancelled by the caller")]
    Cancelled,
    /// The payload exceeds the protocol limit; nothing was sent.
    #[error("payload of {len} bytes exceeds the protocol maximum of {max} bytes: split it")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Limit ([`crate::limits::MAX_PAYLOAD`]).
        max: usize,
    },
    /// The peer sent bytes that do not decode.
    #[error("protocol violation from peer: {0}")]
    Protocol(#[from] DecodeError),
    /// The reply of this RPC was already taken by an earlier `wait`/`try_poll`.
    #[error("the reply of this RPC was already taken")]
    AlreadyTaken,
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client session's link broke, as a transport's [`crate::session`] channel reports it.
/// Callers see it as the `reason` of [`Error::SessionFailed`] and in
/// [`crate::Session::failure`].
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LinkError {
    /// A system call on the connection failed (`op`: "write", "read", "poll", "send", ...).
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error (shared: a failed session keeps its reason for every waiter).
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// The peer closed the connection or shut down; the text says which.
    #[error("{0}")]
    Closed(&'static str),
    /// The server sent bytes that do not decode.
    #[error("protocol violation from server: {0}")]
    Protocol(#[from] DecodeError),
    /// A datagram reply whose header does not answer the RPC it arrived for.
    #[error("protocol violation: bad response header for rpc {0}")]
    BadResponseHeader(u64),
    /// The server sent a request frame where only replies may come.
    #[error("server sent a request frame (opcode {0})")]
    RequestFromServer(u16),
    /// A datagram RPC got no sign of life from the server for too long.
    #[error("server silent too long (rpc {0}); it is down or unreachable")]
    ServerSilent(u64),
    /// The server aborted an RPC because it is shutting down.
    #[error("server aborted rpc {0} (shutting down)")]
    Aborted(u64),
    /// The verbs device or its side channel failed.
    #[cfg(feature = "verbs")]
    #[error(transparent)]
    Verbs(#[from] crate::verbs::VerbsError),
}

impl LinkError {
    /// `op` failed with `e`.
    pub(crate) fn io(op: &'static str, e: std::io::Error) -> LinkError {
        LinkError::Io {
            op,
            source: std::sync::Arc::new(e),
        }
    }
}
