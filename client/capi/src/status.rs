//! Status codes, the thread's last error message, and the guard every entry point runs in (no
//! panic crosses the C boundary).

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use faascache_client::Error;

/// What a call returned. `FAASCACHE_STATUS_OK` is 0; every other value is an error, and
/// `faascache_last_error()` then describes it. New codes may be added at the end.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum faascache_status {
    /// Success.
    Ok = 0,
    /// The object does not exist.
    NotFound = 1,
    /// No table has this name or id.
    NoSuchTable = 2,
    /// The object exists and the reject rules forbade that.
    ObjectExists = 3,
    /// The object's version did not satisfy the reject rules (its current version is returned
    /// through the call's version argument where it has one).
    VersionMismatch = 4,
    /// No answer within the client's timeout.
    Timeout = 5,
    /// A key, value or request exceeds a limit.
    TooLarge = 6,
    /// An increment found a value that is not an 8-byte number, or overflowed.
    NotANumber = 7,
    /// The coordinator or a master could not be reached.
    Unavailable = 8,
    /// The service locator does not parse, or a cluster directory has none.
    BadLocator = 9,
    /// Client and server disagree on the protocol.
    Protocol = 10,
    /// The server answered with an unexpected status.
    Server = 11,
    /// A bad argument: a NULL pointer, a string that is not UTF-8, an empty key, a conflict.
    InvalidArgument = 12,
    /// A tracked mutation's outcome is unknown (the client's lease expired meanwhile).
    LeaseExpired = 13,
    /// A backed table's object store failed or did not answer.
    StoreUnavailable = 14,
    /// A backed table's object store refused the request.
    StoreRejected = 15,
    /// The write-back backlog is full: retry after a delay.
    WriteBackFull = 16,
    /// The object is too large for one reply.
    ObjectTooLarge = 17,
    /// A table of this name exists with another backing.
    TableExists = 18,
    /// The caller's buffer is too small; the needed length was stored through the length argument.
    BufferTooSmall = 19,
    /// A bug in the library (a panic, caught at the boundary); the message says where.
    Internal = 20,
}

impl faascache_status {
    /// The C name of the code.
    pub fn c_name(self) -> &'static CStr {
        use faascache_status as S;
        match self {
            S::Ok => c"FAASCACHE_STATUS_OK",
            S::NotFound => c"FAASCACHE_STATUS_NOT_FOUND",
            S::NoSuchTable => c"FAASCACHE_STATUS_NO_SUCH_TABLE",
            S::ObjectExists => c"FAASCACHE_STATUS_OBJECT_EXISTS",
            S::VersionMismatch => c"FAASCACHE_STATUS_VERSION_MISMATCH",
            S::Timeout => c"FAASCACHE_STATUS_TIMEOUT",
            S::TooLarge => c"FAASCACHE_STATUS_TOO_LARGE",
            S::NotANumber => c"FAASCACHE_STATUS_NOT_A_NUMBER",
            S::Unavailable => c"FAASCACHE_STATUS_UNAVAILABLE",
            S::BadLocator => c"FAASCACHE_STATUS_BAD_LOCATOR",
            S::Protocol => c"FAASCACHE_STATUS_PROTOCOL",
            S::Server => c"FAASCACHE_STATUS_SERVER",
            S::InvalidArgument => c"FAASCACHE_STATUS_INVALID_ARGUMENT",
            S::LeaseExpired => c"FAASCACHE_STATUS_LEASE_EXPIRED",
            S::StoreUnavailable => c"FAASCACHE_STATUS_STORE_UNAVAILABLE",
            S::StoreRejected => c"FAASCACHE_STATUS_STORE_REJECTED",
            S::WriteBackFull => c"FAASCACHE_STATUS_WRITE_BACK_FULL",
            S::ObjectTooLarge => c"FAASCACHE_STATUS_OBJECT_TOO_LARGE",
            S::TableExists => c"FAASCACHE_STATUS_TABLE_EXISTS",
            S::BufferTooSmall => c"FAASCACHE_STATUS_BUFFER_TOO_SMALL",
            S::Internal => c"FAASCACHE_STATUS_INTERNAL",
        }
    }

    /// The status with this numeric code, if there is one.
    pub fn from_code(code: i32) -> Option<faascache_status> {
        ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// The code of a client error.
    pub fn of(e: &Error) -> faascache_status {
        use faascache_status as S;
        match e {
            Error::NoSuchObject => S::NotFound,
            Error::NoSuchTable(_) => S::NoSuchTable,
            Error::TableExists(_) => S::TableExists,
            Error::ObjectExists => S::ObjectExists,
            Error::VersionMismatch { .. } => S::VersionMismatch,
            Error::Timeout { .. } => S::Timeout,
            Error::TooLarge { .. } => S::TooLarge,
            Error::NotANumber => S::NotANumber,
            Error::Unavailable { .. } => S::Unavailable,
            Error::BadLocator(_) => S::BadLocator,
            Error::Protocol(_) => S::Protocol,
            Error::Server(_) => S::Server,
            Error::InvalidArgument(_) => S::InvalidArgument,
            Error::LeaseExpired => S::LeaseExpired,
            Error::StoreUnavailable(_) => S::StoreUnavailable,
            Error::StoreRejected(_) => S::StoreRejected,
            Error::WriteBackFull(_) => S::WriteBackFull,
            Error::ObjectTooLarge(_) => S::ObjectTooLarge,
            // `Error` is non-exhaustive: a variant added later is still an error.
            _ => S::Server,
        }
    }
}

/// Every status, in code order.
pub const ALL: [faascache_status; 21] = {
    use faascache_status as S;
    [
        S::Ok,
        S::NotFound,
        S::NoSuchTable,
        S::ObjectExists,
        S::VersionMismatch,
        S::Timeout,
        S::TooLarge,
        S::NotANumber,
        S::Unavailable,
        S::BadLocator,
        S::Protocol,
        S::Server,
        S::InvalidArgument,
        S::LeaseExpired,
        S::StoreUnavailable,
        S::StoreRejected,
        S::WriteBackFull,
        S::ObjectTooLarge,
        S::TableExists,
        S::BufferTooSmall,
        S::Internal,
    ]
};

/// A failed call: its code and message.
#[derive(Debug)]
pub struct Fail {
    /// The code returned to C.
    pub status: faascache_status,
    /// What `faascache_last_error()` returns.
    pub msg: String,
}

impl Fail {
    /// A bad argument.
    pub fn invalid(msg: impl Into<String>) -> Fail {
        Fail {
            status: faascache_status::InvalidArgument,
            msg: msg.into(),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail {
            status: faascache_status::of(&e),
            msg: e.to_string(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Sets this thread's last error message (NUL bytes in it become spaces).
pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// This thread's last error message; valid until this thread's next call into the library.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an entry point: catches panics, records the error message, returns the code.
pub fn guard(f: impl FnOnce() -> Result<(), Fail>) -> faascache_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            faascache_status::Ok
        }
        Ok(Err(fail)) => {
            set_last_error(&fail.msg);
            fail.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in the FaaSCache C library (please report): {what}"
            ));
            faascache_status::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes_and_messages() {
        let f = Fail::from(Error::VersionMismatch { current: 3 });
        assert_eq!(f.status, faascache_status::VersionMismatch);
        assert!(f.msg.contains("version 3"));
        assert_eq!(
            faascache_status::of(&Error::NoSuchObject),
            faascache_status::NotFound
        );
        assert_eq!(faascache_status::NotFound as i32, 1);
        assert_eq!(
            faascache_status::Internal.c_name(),
            c"FAASCACHE_STATUS_INTERNAL"
        );
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            assert_eq!(faascache_status::from_code(i as i32), Some(*s));
        }
        assert_eq!(faascache_status::from_code(-1), None);
    }

    #[test]
    fn the_guard_catches_panics_and_records_messages() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, faascache_status::Internal);
        let msg = last_error_text();
        assert!(msg.contains("boom"), "{msg}");
        assert_eq!(
            guard(|| Err(Fail::invalid("bad\0key"))),
            faascache_status::InvalidArgument
        );
        assert_eq!(last_error_text(), "bad key");
        assert_eq!(guard(|| Ok(())), faascache_status::Ok);
        assert_eq!(last_error_text(), "");
    }

    fn last_error_text() -> String {
        LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
    }
}
