//! What can go wrong behind either API, in terms both can answer: each front end maps a
//! [`GwError`] to its own protocol (S3's XML error codes, Swift's status codes).

use faascache_client::Error as ClientError;

/// A gateway failure, classified by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum GwError {
    /// The bucket (container) is neither a table nor (when allowed) a bucket of the store.
    #[error("no such bucket {0:?}")]
    NoSuchBucket(String),
    /// No such object.
    #[error("no such key")]
    NoSuchKey,
    /// No such multipart upload (never created, completed, aborted or expired).
    #[error("no such upload {0:?}")]
    NoSuchUpload(String),
    /// A multipart completion names a part that was not uploaded, or with another ETag.
    #[error("{0}")]
    InvalidPart(String),
    /// Parts out of order in a completion.
    #[error("the parts of a completion must be in ascending order")]
    InvalidPartOrder,
    /// The bucket is refused by the gateway's configuration (`--buckets`, `--no-auto-tables`).
    #[error("{0}")]
    AccessDenied(String),
    /// A key, header or argument the stores do not take.
    #[error("{0}")]
    InvalidArgument(String),
    /// A key the object stores do not take.
    #[error("{0}")]
    InvalidKey(String),
    /// An `If-Match` / `If-Unmodified-Since` condition failed.
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
    /// `If-None-Match` / `If-Modified-Since`: the client's copy is current.
    #[error("not modified")]
    NotModified,
    /// A range outside the object.
    #[error("the requested range is not satisfiable (object of {0} bytes)")]
    InvalidRange(u64),
    /// The body's checksum (MD5 or `x-amz-checksum-*`) is not the one the request gave.
    #[error("{0}")]
    BadDigest(String),
    /// A chunk signature of an `aws-chunked` upload does not match.
    #[error("the signature of a chunk of the body does not match")]
    SignatureMismatch,
    /// A multipart part (not the last) below S3's 5 MiB minimum.
    #[error("{0}")]
    EntityTooSmall(String),
    /// Larger than this gateway accepts.
    #[error("{0}")]
    EntityTooLarge(String),
    /// Back-pressure (the cluster's write-back queue is full, the gateway's memory budget is
    /// used up): retry after a delay.
    #[error("{0}")]
    SlowDown(String),
    /// The cluster or the store is not answering: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The store refused (credentials, a key it does not take).
    #[error("the object store refused: {0}")]
    StoreRejected(String),
    /// A bug or an unexpected state: logged, answered 500.
    #[error("{0}")]
    Internal(String),
}

/// Shorthand.
pub type GwResult<T> = Result<T, GwError>;

impl From<ClientError> for GwError {
    fn from(e: ClientError) -> GwError {
        match e {
            ClientError::NoSuchObject => GwError::NoSuchKey,
            ClientError::NoSuchTable(t) => GwError::NoSuchBucket(t),
            ClientError::StoreRejected(d) => GwError::StoreRejected(d),
            ClientError::WriteBackFull(d) => GwError::SlowDown(d),
            ClientError::StoreUnavailable(d) => GwError::Unavailable(d),
            ClientError::InvalidArgument(d) => GwError::InvalidArgument(d),
            e @ (ClientError::Timeout { .. } | ClientError::Unavailable { .. }) => {
                GwError::Unavailable(format!("the cache cluster did not answer: {e}"))
            }
            e => GwError::Internal(e.to_string()),
        }
    }
}

impl From<faascache_objstore::Error> for GwError {
    fn from(e: faascache_objstore::Error) -> GwError {
        use faascache_objstore::Error as E;
        match e {
            E::NoSuchBucket { .. } => GwError::NoSuchBucket(e.to_string()),
            E::InvalidKey { .. } => GwError::InvalidKey(e.to_string()),
            e if e.is_retryable() => GwError::Unavailable(e.to_string()),
            e => GwError::StoreRejected(e.to_string()),
        }
    }
}
