//! The one error type of every store. Each message says what went wrong and what to do; none
//! carries a secret (keys, passwords and tokens never enter an [`Error`]).

use std::time::Duration;

/// Results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to an object store. `store` fields name the store as
/// `s3://bucket/prefix at ENDPOINT` or `swift://container/prefix at STORAGE_URL`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket (S3) or container (Swift) does not exist.
    #[error("{store}: the bucket/container `{bucket}` does not exist: create it (`aws s3 mb s3://{bucket}`, `swift post {bucket}`) or fix the backing URL")]
    NoSuchBucket {
        /// The store.
        store: String,
        /// The bucket or container.
        bucket: String,
    },
    /// The store did not accept the credentials (unknown access key, bad signature, wrong
    /// password, an auth endpoint that answered 401).
    #[error("{store}: the credentials were rejected ({detail}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ST_USER/ST_KEY or OS_USERNAME/OS_PASSWORD (or the config file)")]
    BadCredentials {
        /// The store.
        store: String,
        /// What the store said (its error code, never the secret).
        detail: String,
    },
    /// The credentials are valid but may not do this.
    #[error("{store}: access to `{key}` denied ({detail}): grant these credentials access to the bucket/container, or use other credentials")]
    AccessDenied {
        /// The store.
        store: String,
        /// The key (or the bucket, for listings).
        key: String,
        /// What the store said.
        detail: String,
    },
    /// The key cannot be stored (see [`crate::validate_key`]), or the store refused it.
    #[error("invalid object key {key:?}: {why}")]
    InvalidKey {
        /// The key (shortened).
        key: String,
        /// Why.
        why: String,
    },
    /// User metadata or content type the stores cannot carry (see [`crate::PutMeta`]).
    #[error("invalid object metadata `{name}`: {why}")]
    InvalidMetadata {
        /// The metadata name.
        name: String,
        /// Why.
        why: String,
    },
    /// The store could not be reached or answered with a server error (5xx, 429, a reset
    /// connection). `retryable`: the same request may succeed later.
    #[error("{store}: unavailable: {detail}{}", if *retryable { " (transient: retry with back-off)" } else { "" })]
    Unavailable {
        /// The store.
        store: String,
        /// What happened.
        detail: String,
        /// Whether retrying may help.
        retryable: bool,
    },
    /// The store did not answer within the configured timeout.
    #[error("{store}: {op} timed out{}: the store is slow or unreachable; retry, or raise the timeout", if after.is_zero() { String::new() } else { format!(" after {after:?}") })]
    Timeout {
        /// The store.
        store: String,
        /// The operation.
        op: &'static str,
        /// The timeout (zero when the transport's own connect timeout fired).
        after: Duration,
    },
    /// The store answered something this client does not understand (a bug here or there).
    #[error("{store}: unexpected answer: {detail}")]
    Protocol {
        /// The store.
        store: String,
        /// What was unexpected.
        detail: String,
    },
    /// The configuration is incomplete or wrong (nothing was sent to any store).
    #[error("store configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same request may succeed (a write-back worker backs off and
    /// retries these; everything else needs an operator or a different request).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { retryable, .. } => *retryable,
            Error::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// The first 80 characters of a key, for messages (keys may be 1 KiB).
pub(crate) fn shorten(key: &str) -> String {
    if key.chars().count() <= 80 {
        return key.to_string();
    }
    let mut s: String = key.chars().take(80).collect();
    s.push('…');
    s
}

/// An HTTP status as a typed error (404 is handled by the callers: it is an answer).
pub(crate) fn from_status(store: &str, key: &str, status: u16, detail: String) -> Error {
    match status {
        401 => Error::BadCredentials {
            store: store.into(),
            detail,
        },
        403 => Error::AccessDenied {
            store: store.into(),
            key: shorten(key),
            detail,
        },
        400 | 411 | 412 | 414 | 431 => Error::InvalidKey {
            key: shorten(key),
            why: format!("the store refused the request with {status}: {detail}"),
        },
        408 | 429 | 500..=599 => Error::Unavailable {
            store: store.into(),
            detail: format!("HTTP {status}: {detail}"),
            retryable: status != 501 && status != 505,
        },
        _ => Error::Protocol {
            store: store.into(),
            detail: format!("HTTP {status}: {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(
            from_status("s", "k", 401, String::new()),
            Error::BadCredentials { .. }
        ));
        assert!(matches!(
            from_status("s", "k", 403, String::new()),
            Error::AccessDenied { .. }
        ));
        assert!(from_status("s", "k", 503, String::new()).is_retryable());
        assert!(!from_status("s", "k", 501, String::new()).is_retryable());
        assert!(!from_status("s", "k", 400, String::new()).is_retryable());
    }
}
