//! The exceptions: `faascache.Error` and one subclass per kind of client error.

use faascache_client::Error as ClientError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    faascache,
    Error,
    PyException,
    "Base class of every FaaSCache error."
);
create_exception!(faascache, NotFound, Error, "The object does not exist.");
create_exception!(
    faascache,
    NoSuchTable,
    Error,
    "No table has this name or id."
);
create_exception!(
    faascache,
    ObjectExists,
    Error,
    "The object exists and the call's condition forbade that."
);
create_exception!(
    faascache,
    VersionMismatch,
    Error,
    "The object's version is not the one the call required; `current_version` is its version now."
);
create_exception!(
    faascache,
    Timeout,
    Error,
    "No answer within the client's timeout."
);
create_exception!(
    faascache,
    Unavailable,
    Error,
    "The coordinator or a master could not be reached."
);
create_exception!(
    faascache,
    TooLarge,
    Error,
    "A key, value or request exceeds a limit."
);
create_exception!(
    faascache,
    NotANumber,
    Error,
    "incr found a value that is not an 8-byte integer, or overflowed."
);
create_exception!(
    faascache,
    BadLocator,
    Error,
    "The coordinator locator does not parse, or the cluster directory has none."
);
create_exception!(
    faascache,
    InvalidArgument,
    Error,
    "A bad argument (empty key, conflicting options, closed client)."
);
create_exception!(
    faascache,
    LeaseExpired,
    Error,
    "A mutation's outcome is unknown: the client's lease expired meanwhile."
);
create_exception!(
    faascache,
    StoreError,
    Error,
    "A backed table's object store failed, refused the request, or its write-back backlog is full."
);
create_exception!(
    faascache,
    ServerError,
    Error,
    "A protocol error or an unexpected server status."
);
create_exception!(
    faascache,
    TableExists,
    Error,
    "A table of this name exists with another backing."
);

/// The Python exception of a client error.
pub fn to_py(py: Python<'_>, e: ClientError) -> PyErr {
    let msg = e.to_string();
    match e {
        ClientError::NoSuchObject => NotFound::new_err(msg),
        ClientError::NoSuchTable(_) => NoSuchTable::new_err(msg),
        ClientError::TableExists(_) => TableExists::new_err(msg),
        ClientError::ObjectExists => ObjectExists::new_err(msg),
        ClientError::VersionMismatch { current } => {
            let err = VersionMismatch::new_err(msg);
            // An exception object accepts attributes; if that failed the message still has it.
            let _ = err.value(py).setattr("current_version", current);
            err
        }
        ClientError::Timeout { .. } => Timeout::new_err(msg),
        ClientError::Unavailable { .. } => Unavailable::new_err(msg),
        ClientError::TooLarge { .. } | ClientError::ObjectTooLarge(_) => TooLarge::new_err(msg),
        ClientError::NotANumber => NotANumber::new_err(msg),
        ClientError::BadLocator(_) => BadLocator::new_err(msg),
        ClientError::InvalidArgument(_) => InvalidArgument::new_err(msg),
        ClientError::LeaseExpired => LeaseExpired::new_err(msg),
        ClientError::StoreUnavailable(_)
        | ClientError::StoreRejected(_)
        | ClientError::WriteBackFull(_) => StoreError::new_err(msg),
        // Protocol, Server, and variants added later (`Error` is non-exhaustive).
        _ => ServerError::new_err(msg),
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("NoSuchTable", py.get_type::<NoSuchTable>())?;
    m.add("ObjectExists", py.get_type::<ObjectExists>())?;
    m.add("VersionMismatch", py.get_type::<VersionMismatch>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("TooLarge", py.get_type::<TooLarge>())?;
    m.add("NotANumber", py.get_type::<NotANumber>())?;
    m.add("BadLocator", py.get_type::<BadLocator>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("LeaseExpired", py.get_type::<LeaseExpired>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    m.add("TableExists", py.get_type::<TableExists>())?;
    Ok(())
}
