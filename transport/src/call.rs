//! Request/response calls over a [`Session`]: encode a [`Request`], wait for the reply and decode
//! it with the protocol's reply convention ([`decode_reply`]). Control paths, tests and the
//! client library's single-object operations use it.

use std::time::Duration;

use faascache_protocol::msg::{decode_reply, Failure, MsgError, Request};
use faascache_protocol::wire::Status;

use crate::Session;

/// Why [`call`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The transport failed (connect, session, timeout).
    #[error(transparent)]
    Transport(#[from] crate::Error),
    /// The server answered with a non-`OK` status.
    #[error("{0}")]
    Failed(Failure),
    /// The reply does not decode (version mismatch or server bug).
    #[error("malformed reply: {0}")]
    Malformed(MsgError),
}

impl CallError {
    /// The status of a server's answer, if the server answered.
    pub fn status(&self) -> Option<Status> {
        match self {
            CallError::Failed(f) => Some(f.status),
            _ => None,
        }
    }
}

/// Send `req` on `session`, wait up to `timeout` and decode the reply into an owned value via
/// `f` (the reply buffer is borrowed only inside `f`, then recycled into the session if large).
pub fn call<'a, R, T>(
    session: &Session,
    req: &R,
    timeout: Duration,
    f: impl for<'b> FnOnce(R::Response<'b>) -> T,
) -> Result<T, CallError>
where
    R: Request<'a>,
{
    let payload = req.to_vec();
    let (status, reply) = session.call(R::OPCODE, &payload, timeout)?;
    // A named binding: the borrow of `reply` must end before `reply` is dropped.
    #[allow(clippy::let_and_return)]
    let out = match decode_reply::<R::Response<'_>>(status, &reply) {
        Ok(body) => Ok(f(body)),
        Err(Ok(failure)) => Err(CallError::Failed(failure)),
        Err(Err(e)) => Err(CallError::Malformed(e)),
    };
    // `f` copied what it keeps: a large reply buffer receives the session's next large reply
    // (no fresh allocation and page faults per megabyte read).
    if reply.capacity() > crate::limits::STREAM_READ_BUFFER {
        session.recycle(reply);
    }
    out
}
