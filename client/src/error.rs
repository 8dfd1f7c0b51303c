//! Errors of the client API. Every variant says what was wrong and what to do about it.
//!
//! Server statuses map to variants with [`Error::from_status`]; transport failures with
//! [`Error::from_transport`]. Retryable conditions (`RETRY`, `NO_TABLE_SPACE`, `UNKNOWN_TABLET`,
//! a failed session) never reach the caller unless they persist past the call's timeout, in
//! which case the caller sees [`Error::Timeout`] naming the last cause.

use std::time::Duration;

use faascache_transport::Status;

/// A table id, chosen by the coordinator (see [`crate::Client::table_id`]).
///
/// ```
/// let t: faascache_client::TableId = 1;
/// # let _ = t;
/// ```
pub type TableId = u64;

/// An error from a client call.
///
/// ```
/// use faascache_client::Error;
/// let e = Error::VersionMismatch { current: 4 };
/// assert_eq!(e.to_string(), "version mismatch: the object is at version 4; re-read it and retry");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No table has this name (or id).
    #[error("no table named {0:?}: create it with `create_table` (CLI: `faascache table create NAME`) or check the name")]
    NoSuchTable(String),
    /// A table of this name exists with another backing (a table's backing never changes);
    /// the text names the backing it has.
    #[error("{0}")]
    TableExists(String),
    /// The object does not exist (or a reject rule required it to exist and it does not).
    #[error("the object does not exist")]
    NoSuchObject,
    /// The object exists and a reject rule forbade that.
    #[error("the object already exists (the reject rules forbade overwriting it)")]
    ObjectExists,
    /// The object's version did not satisfy the reject rules; `current` is its version now.
    #[error("version mismatch: the object is at version {current}; re-read it and retry")]
    VersionMismatch {
        /// The object's current version (0 if the server did not say).
        current: u64,
    },
    /// The call did not complete within its timeout.
    #[error("no answer within {timeout:?} (last cause: {cause}); the cluster is slow, overloaded or down: check `faascache status` or raise the timeout")]
    Timeout {
        /// The call's timeout.
        timeout: Duration,
        /// What the last attempt ran into.
        cause: String,
    },
    /// A key, value or request exceeds a limit.
    #[error("{what} is too large: {len} bytes, the limit is {max}")]
    TooLarge {
        /// What was too large (`key`, `value`, `request`).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An increment found a value that is not an 8-byte number, or the result overflowed.
    #[error("the object's value is not an 8-byte little-endian number (or the increment overflowed): write a number there first")]
    NotANumber,
    /// The coordinator or a master could not be reached.
    #[error("{what} is unreachable: {reason}; check that the cluster runs (`faascache status`) and the locator is right")]
    Unavailable {
        /// Which server (`coordinator at tcp:...` or `master at tcp:...`).
        what: String,
        /// The transport's reason.
        reason: String,
    },
    /// The service locator does not parse.
    #[error("bad service locator: {0}")]
    BadLocator(String),
    /// A request or a response did not follow the protocol: client and server versions differ,
    /// or one of them has a bug.
    #[error("protocol error: {0}; run the same FaaSCache version on client and servers")]
    Protocol(String),
    /// A server refused a memory resize (the detail says why: data it may not evict does not
    /// fit, below its minimum, above its `--max-memory`); its budget is unchanged.
    #[error("the server refused the resize: {0}")]
    ResizeRefused(String),
    /// The server answered with a status this client does not expect here.
    #[error("server error: {0}")]
    Server(String),
    /// A conditional or multi-object call was refused for a reason of its own (bad arguments).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tracked mutation's outcome is unknown: an attempt got no answer, and then the client's
    /// lease expired (the process was paused, or cut off from the coordinator, for longer than
    /// the lease term), so the mutation cannot be retried exactly-once. The client has a new
    /// lease and goes on.
    #[error("the outcome of this mutation is unknown: an attempt got no answer and then the client's lease expired (the process was paused or cut off for longer than the lease term); read the object back and decide whether to repeat the mutation")]
    LeaseExpired,
    /// A backed table's object store failed or did not answer (the detail says how). For a
    /// write-through write: the cache has the object (dirty, uploaded later), the store not yet.
    #[error("the table's object store is unavailable: {0}; retry later, and if it lasts check the store (`faascache status` shows each server's last store error)")]
    StoreUnavailable(String),
    /// A backed table's object store refused the request: credentials, bucket or a key the
    /// store does not accept (the detail says which).
    #[error("the table's object store refused the request: {0}; fix the key, the table's backing or the servers' store credentials (--store-config, AWS_*/OS_*/ST_* variables)")]
    StoreRejected(String),
    /// The master's write-back backlog is at its limit (the store is slow or down): back-pressure.
    #[error("the write-back backlog is full: {0}; retry after a delay (`faascache status` shows the backlog and the store's errors)")]
    WriteBackFull(String),
    /// The object is larger than one reply (the detail gives its size); [`crate::Client::read`]
    /// falls back to [`crate::Client::read_object`] by itself, other calls report this.
    #[error("the object is too large for one reply: {0}; read it with read_object (CLI: faascache get reads it in pieces)")]
    ObjectTooLarge(String),
}

/// Result alias.
///
/// ```
/// fn f() -> faascache_client::Result<u64> { Ok(1) }
/// assert_eq!(f(), Ok(1));
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the retry loop does with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Success.
    Ok,
    /// Back off and retry the same server.
    Retry,
    /// The tablet map is stale: refresh it, then retry.
    RefreshTablets,
    /// Final: report the error.
    Fail,
}

impl Error {
    /// Maps a non-OK response status to an error. `current_version` is the version the server
    /// reported with `WRONG_VERSION` (0 if none); `table` names the table for `NoSuchTable`.
    ///
    /// ```
    /// use faascache_client::Error;
    /// use faascache_transport::Status;
    /// assert_eq!(Error::from_status(Status::OBJECT_DOESNT_EXIST, "t", 0), Error::NoSuchObject);
    /// assert_eq!(Error::from_status(Status::WRONG_VERSION, "t", 7), Error::VersionMismatch { current: 7 });
    /// ```
    pub fn from_status(status: Status, table: &str, current_version: u64) -> Error {
        match status {
            Status::TABLE_DOESNT_EXIST => Error::NoSuchTable(table.to_string()),
            Status::OBJECT_DOESNT_EXIST => Error::NoSuchObject,
            Status::OBJECT_EXISTS => Error::ObjectExists,
            Status::WRONG_VERSION => Error::VersionMismatch {
                current: current_version,
            },
            Status::REQUEST_TOO_LARGE => Error::TooLarge {
                what: "request",
                len: 0,
                max: faascache_transport::limits::MAX_PAYLOAD,
            },
            Status::MESSAGE_TOO_SHORT
            | Status::REQUEST_FORMAT_ERROR
            | Status::RESPONSE_FORMAT_ERROR
            | Status::UNIMPLEMENTED_REQUEST
            | Status::BAD_PROTOCOL_VERSION => Error::Protocol(status.to_string()),
            Status::COULDNT_CONNECT
            | Status::SERVICE_NOT_AVAILABLE
            | Status::SHUTTING_DOWN
            | Status::TIMEOUT => Error::Unavailable {
                what: "a server".into(),
                reason: status.to_string(),
            },
            Status::EXPIRED_LEASE => Error::LeaseExpired,
            Status::STORE_UNAVAILABLE => Error::StoreUnavailable(status.to_string()),
            Status::STORE_REJECTED => Error::StoreRejected(status.to_string()),
            Status::WRITE_BACK_FULL => Error::WriteBackFull(status.to_string()),
            Status::OBJECT_TOO_LARGE => Error::ObjectTooLarge(status.to_string()),
            Status::RESIZE_REFUSED => Error::ResizeRefused(status.to_string()),
            s => Error::Server(s.to_string()),
        }
    }

    /// Maps a transport error of an RPC to `what` (e.g. `"master at tcp:host=..."`).
    ///
    /// ```
    /// use faascache_client::Error;
    /// let e = Error::from_transport(
    ///     faascache_transport::Error::Cancelled, "coordinator at tcp:host=h,port=1");
    /// assert!(matches!(e, Error::Unavailable { .. }));
    /// ```
    pub fn from_transport(e: faascache_transport::Error, what: &str) -> Error {
        use faascache_transport::Error as T;
        match e {
            T::Locator(l) => Error::BadLocator(l.to_string()),
            T::TooLarge { len, max } => Error::TooLarge {
                what: "request",
                len,
                max,
            },
            T::Protocol(d) => Error::Protocol(d.to_string()),
            T::Timeout(d) => Error::Timeout {
                timeout: d,
                cause: format!("{what} did not answer"),
            },
            other => Error::Unavailable {
                what: what.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// Whether retrying the same call later may succeed (timeouts and unreachable servers).
    ///
    /// ```
    /// use faascache_client::Error;
    /// assert!(!Error::NoSuchObject.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Unavailable { .. })
    }

    /// Whether the error is about a backed table's object store and may pass by itself: the
    /// store was unavailable, or the write-back backlog was full. Retry after a delay.
    ///
    /// ```
    /// use faascache_client::Error;
    /// assert!(Error::WriteBackFull("12 MiB dirty".into()).is_store_backpressure());
    /// assert!(!Error::StoreRejected("no such bucket".into()).is_store_backpressure());
    /// ```
    pub fn is_store_backpressure(&self) -> bool {
        matches!(self, Error::StoreUnavailable(_) | Error::WriteBackFull(_))
    }
}

/// How the retry loop treats a response status.
pub(crate) fn disposition(status: Status) -> Disposition {
    match status {
        Status::OK => Disposition::Ok,
        // EXPIRED_LEASE: the request did not run; tracked calls renew the lease first.
        Status::RETRY | Status::NO_TABLE_SPACE | Status::EXPIRED_LEASE => Disposition::Retry,
        // A master that is shutting down hands its tablets over, one that lost its master
        // lease (NOT_SERVING) may have lost them: look again.
        Status::UNKNOWN_TABLET | Status::SHUTTING_DOWN | Status::NOT_SERVING => {
            Disposition::RefreshTablets
        }
        _ => Disposition::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_typed_errors() {
        assert_eq!(
            Error::from_status(Status::TABLE_DOESNT_EXIST, "users", 0),
            Error::NoSuchTable("users".into())
        );
        assert_eq!(
            Error::from_status(Status::OBJECT_EXISTS, "t", 0),
            Error::ObjectExists
        );
        assert_eq!(
            Error::from_status(Status::WRONG_VERSION, "t", 9),
            Error::VersionMismatch { current: 9 }
        );
        assert!(matches!(
            Error::from_status(Status::BAD_PROTOCOL_VERSION, "t", 0),
            Error::Protocol(_)
        ));
        assert!(matches!(
            Error::from_status(Status::INTERNAL_ERROR, "t", 0),
            Error::Server(m) if m.contains("INTERNAL_ERROR")
        ));
        assert!(matches!(
            Error::from_status(Status(999), "t", 0),
            Error::Server(m) if m.contains("999")
        ));
    }

    #[test]
    fn store_statuses_map_to_their_own_errors_and_are_not_retried_inside() {
        for (s, want) in [
            (Status::STORE_UNAVAILABLE, "StoreUnavailable"),
            (Status::STORE_REJECTED, "StoreRejected"),
            (Status::WRITE_BACK_FULL, "WriteBackFull"),
            (Status::OBJECT_TOO_LARGE, "ObjectTooLarge"),
        ] {
            let e = Error::from_status(s, "t", 0);
            assert!(format!("{e:?}").starts_with(want), "{s}: {e:?}");
            assert_eq!(disposition(s), Disposition::Fail, "{s}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn retryable_statuses_are_retried() {
        assert_eq!(disposition(Status::OK), Disposition::Ok);
        assert_eq!(disposition(Status::RETRY), Disposition::Retry);
        assert_eq!(disposition(Status::NO_TABLE_SPACE), Disposition::Retry);
        assert_eq!(
            disposition(Status::UNKNOWN_TABLET),
            Disposition::RefreshTablets
        );
        assert_eq!(
            disposition(Status::NOT_SERVING),
            Disposition::RefreshTablets
        );
        assert_eq!(disposition(Status::EXPIRED_LEASE), Disposition::Retry);
        assert_eq!(
            Error::from_status(Status::EXPIRED_LEASE, "t", 0),
            Error::LeaseExpired
        );
        assert_eq!(disposition(Status::OBJECT_DOESNT_EXIST), Disposition::Fail);
        assert_eq!(disposition(Status::WRONG_VERSION), Disposition::Fail);
    }

    #[test]
    fn transport_errors_map() {
        let e = Error::from_transport(
            faascache_transport::Error::SessionFailed {
                peer: "p".into(),
                reason: "reset".into(),
            },
            "master at p",
        );
        assert!(e.is_transient());
        assert!(e.to_string().contains("master at p"));
        let e = Error::from_transport(
            faascache_transport::Error::TooLarge { len: 10, max: 5 },
            "x",
        );
        assert_eq!(
            e,
            Error::TooLarge {
                what: "request",
                len: 10,
                max: 5
            }
        );
    }
}
