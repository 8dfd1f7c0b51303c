//! The agent's errors: [`AgentError`] for what goes wrong inside (reading memory files, a
//! resizer or a model failing), [`ApiError`] for what the HTTP API answers (a status and a
//! sentence saying what was wrong and what to do).

use std::path::PathBuf;

/// Something inside the agent failed; none of these is fatal to the running agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file (meminfo, a cgroup's memory file) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A system call failed (binding the API's address, starting its runtime).
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A memory file had content the agent does not understand.
    #[error("cannot parse {path}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// A directory is not a memory cgroup (v1 or v2).
    #[error("{0} is not a memory cgroup: it has neither memory.current (v2) nor memory.usage_in_bytes (v1)")]
    NotACgroup(PathBuf),
    /// The cache server refused a resize, or could not be asked; the reason is its own.
    #[error("resize refused: {0}")]
    Refused(String),
    /// The cache's budget could not be read.
    #[error("cannot read the cache's budget: {0}")]
    Budget(String),
    /// A memory model failed (saving its state, usually).
    #[error("memory model: {0}")]
    Model(String),
}

/// An answer of the HTTP API that is not a success: the status (400, 404, 409, 413, 415, 422,
/// 429, 503) and a message saying what was wrong and what to do about it. Returned before any
/// state changes: a request that gets one changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// What was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read at all (malformed JSON, bad path).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404: no such sandbox or endpoint.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 409: conflicts with the current state (duplicate id, wrong phase).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// 422: well-formed JSON with a field that is missing, of the wrong type or out of range.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }

    /// 429: a bound is reached (sandboxes or functions tracked).
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}
