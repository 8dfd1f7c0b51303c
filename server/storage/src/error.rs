//! Errors of the storage engine. Each says what was wrong and, where there is one, what to do.

use thiserror::Error;

/// A configuration the engine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid storage configuration: {0}")]
pub struct ConfigError(pub String);

/// Bytes of a segment or entry that break the log format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The bytes end inside something.
    #[error("segment truncated at offset {offset}: incomplete {what}")]
    Truncated {
        /// Where the incomplete thing starts.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// An entry type this build does not know.
    #[error("unknown entry type {ty} at offset {offset} (corrupt segment or newer format)")]
    UnknownEntryType {
        /// Where.
        offset: usize,
        /// The type number found.
        ty: u8,
    },
    /// A stored checksum does not match the bytes.
    #[error(
        "{what} at offset {offset} is corrupt: checksum {stored:#010x}, bytes give {actual:#010x}"
    )]
    ChecksumMismatch {
        /// Where.
        offset: usize,
        /// What was checked.
        what: &'static str,
        /// Stored checksum.
        stored: u32,
        /// Checksum of the bytes.
        actual: u32,
    },
    /// A field has an impossible value.
    #[error("bad {what} in entry at offset {offset}")]
    BadField {
        /// Where.
        offset: usize,
        /// Which field.
        what: &'static str,
    },
    /// The segment does not start with a segment header.
    #[error("segment does not start with a segment header")]
    MissingSegmentHeader,
    /// Wrong magic number: not a FaaSCache segment.
    #[error("not a FaaSCache segment: magic {found:#010x}")]
    BadMagic {
        /// Magic found.
        found: u32,
    },
    /// A format version this build cannot read.
    #[error(
        "segment format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// Version found.
        found: u16,
        /// Version supported.
        supported: u16,
    },
    /// The certificate claims more bytes than are present.
    #[error("certificate covers {length} bytes but only {available} are present")]
    CertificateBeyondData {
        /// Length in the certificate.
        length: u32,
        /// Bytes present.
        available: usize,
    },
    /// The entry headers do not match the certificate's checksum.
    #[error(
        "segment certificate checksum {stored:#010x} does not match the entries ({actual:#010x})"
    )]
    CertificateMismatch {
        /// Certificate checksum.
        stored: u32,
        /// Checksum over the entry headers.
        actual: u32,
    },
}

/// Why an object operation did not happen. No object was changed when one is returned (a
/// tracked mutation's refusal is recorded in a completion record: `engine::rpc`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The table does not exist on this engine.
    #[error("table {0} does not exist here; create it first or refresh the tablet map")]
    UnknownTable(u32),
    /// The table id already exists.
    #[error("table {0} already exists")]
    TableExists(u32),
    /// No object has that key (or a reject rule demanded one).
    #[error("no object with that key")]
    ObjectDoesntExist,
    /// An object has that key and the reject rules refuse existing objects.
    #[error("an object with that key exists (version {version})")]
    ObjectExists {
        /// Version of the existing object.
        version: u64,
    },
    /// The object's version failed a reject rule.
    #[error("version mismatch: the object is at version {current}")]
    WrongVersion {
        /// The object's current version (0 if it does not exist).
        current: u64,
    },
    /// Empty keys are not allowed.
    #[error("key is empty; keys are 1 to 65535 bytes")]
    EmptyKey,
    /// The key is too long.
    #[error("key of {len} bytes is too long; the limit is {max} bytes")]
    KeyTooLarge {
        /// Key length given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The value is too long.
    #[error("value of {len} bytes is too large; the limit is {max} bytes")]
    ValueTooLarge {
        /// Value length given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The log is full; the cleaner has been asked for room. Retry shortly, or add memory.
    #[error("out of log memory; retry shortly (the cleaner is freeing space) or give the server more memory")]
    NoSpace,
    /// Increment on a value that is not an 8-byte number.
    #[error("value is {len} bytes, not an 8-byte number; increment needs an 8-byte value")]
    NotANumber {
        /// Length of the stored value.
        len: usize,
    },
    /// The increment overflowed an i64, or produced a non-finite f64.
    #[error("increment overflows the stored number")]
    Overflow,
    /// A version given from outside (a migrated or replayed object) is at or above
    /// `engine::MAX_VERSION` (2^62): the version counter could wrap after it.
    #[error(
        "object version {version} is beyond the largest a master hands out (2^62), so later \
         versions could wrap (corrupt migration or replay data: check the source master)"
    )]
    VersionOverflow {
        /// The version given.
        version: u64,
    },
}

impl StorageError {
    /// The protocol status a reply states for this error, and the version it carries (the
    /// current one of a refusal by version, else 0).
    pub fn status(&self) -> (faascache_protocol::Status, u64) {
        use faascache_protocol::Status;
        match self {
            StorageError::UnknownTable(_) => (Status::UNKNOWN_TABLET, 0),
            StorageError::ObjectDoesntExist => (Status::OBJECT_DOESNT_EXIST, 0),
            StorageError::ObjectExists { version } => (Status::OBJECT_EXISTS, *version),
            StorageError::WrongVersion { current } => (Status::WRONG_VERSION, *current),
            StorageError::NoSpace => (Status::RETRY, 0),
            StorageError::EmptyKey
            | StorageError::KeyTooLarge { .. }
            | StorageError::ValueTooLarge { .. }
            | StorageError::NotANumber { .. }
            | StorageError::Overflow
            | StorageError::VersionOverflow { .. } => (Status::REQUEST_FORMAT_ERROR, 0),
            StorageError::TableExists(_) => (Status::INTERNAL_ERROR, 0),
        }
    }

    /// Whether this is an *outcome* of a mutation that ran — a refusal a retry must be answered
    /// with again (tracked mutations record it) — rather than a reason it did not run.
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            StorageError::ObjectExists { .. }
                | StorageError::WrongVersion { .. }
                | StorageError::ObjectDoesntExist
                | StorageError::NotANumber { .. }
                | StorageError::Overflow
        )
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::NoSpace)
    }
}

/// A resize that could not be done. The old size stays in force.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResizeError {
    /// Live data does not fit in the requested size even after cleaning and eviction.
    #[error(
        "cannot shrink to {requested} bytes: {needed} bytes are still needed for live data and \
         the cleaner's reserve; free data or choose a larger size"
    )]
    LiveDataTooLarge {
        /// Requested size.
        requested: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Above the address space reserved at start.
    #[error("cannot grow to {requested} bytes: the engine reserved {max} bytes at start (a server reserves --max-memory: restart it with a larger one)")]
    AboveReservation {
        /// Requested size.
        requested: usize,
        /// Reservation.
        max: usize,
    },
    /// Below the engine's minimum.
    #[error("cannot shrink to {requested} bytes: the log needs at least {min} bytes")]
    BelowMinimum {
        /// Requested size.
        requested: usize,
        /// Minimum.
        min: usize,
    },
}
