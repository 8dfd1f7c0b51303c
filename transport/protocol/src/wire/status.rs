//! Status codes carried in every response header.
//!
//! Codes 0..=26 follow RAMCloud's numbering (`src/Status.h`) so that traces and habits carry over;
//! FaaSCache-specific codes start at 100 so RAMCloud's later additions never collide.
//! A status the build does not know is kept as its raw number (forward compatibility).

/// A response status. `Status::OK` means success; anything else is an error with a cause and a
/// remedy (see its `Display`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub u16);

macro_rules! statuses {
    ($( $name:ident = $code:literal, $text:literal; )*) => {
        impl Status {
            $( #[doc = $text] pub const $name: Status = Status($code); )*

            /// Every status this build knows.
            pub const ALL: &'static [Status] = &[$(Status::$name,)*];

            /// Symbolic name (`"OBJECT_DOESNT_EXIST"`), or `None` for an unknown code.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 { $( $code => Some(stringify!($name)), )* _ => None }
            }

            /// Cause and remedy, for messages to operators and users.
            pub const fn description(self) -> &'static str {
                match self.0 { $( $code => $text, )* _ => "unknown status code (peer runs a newer version): upgrade this side" }
            }
        }
    };
}

statuses! {
    OK = 0, "success";
    UNKNOWN_TABLET = 1, "this server does not own the tablet: refresh the tablet map from the coordinator and retry";
    TABLE_DOESNT_EXIST = 2, "the table does not exist: create it first or check its name";
    OBJECT_DOESNT_EXIST = 3, "the object does not exist (or a reject rule required it to)";
    OBJECT_EXISTS = 4, "the object already exists and a reject rule forbade overwriting it";
    WRONG_VERSION = 5, "the object's version did not satisfy the reject rules: re-read and retry";
    NO_TABLE_SPACE = 6, "the server is out of log memory: wait for the cleaner, add memory or servers";
    MESSAGE_TOO_SHORT = 7, "the request is shorter than its format requires: client/server version mismatch or a bug in the sender";
    UNIMPLEMENTED_REQUEST = 8, "the server does not implement this RPC: it runs another version or is the wrong kind of server";
    REQUEST_FORMAT_ERROR = 9, "the request is malformed: fix the sender";
    RESPONSE_FORMAT_ERROR = 10, "the response is malformed: server/client version mismatch or a server bug";
    COULDNT_CONNECT = 11, "could not connect to the server: check the service locator and that the server runs";
    BACKUP_BAD_SEGMENT_ID = 12, "the backup has no replica of that segment";
    BACKUP_SEGMENT_ALREADY_OPEN = 13, "the backup already has that segment open";
    BACKUP_SEGMENT_OVERFLOW = 14, "the write would run past the end of the segment replica";
    BACKUP_MALFORMED_SEGMENT = 15, "the segment replica failed its integrity check";
    SEGMENT_RECOVERY_FAILED = 16, "recovering the segment failed: recovery will be retried elsewhere";
    RETRY = 17, "the server is temporarily unable to serve the request: retry after a short delay";
    SERVICE_NOT_AVAILABLE = 18, "the requested service does not run on this server: check the server's roles";
    TIMEOUT = 19, "the operation timed out: the server or the network is slow or down; retry or check the server";
    SERVER_DOESNT_EXIST = 20, "the server is not (or no longer) in the cluster: refresh the server list";
    INTERNAL_ERROR = 21, "the server hit an internal error: see its log; this is a bug";
    CALLER_NOT_IN_CLUSTER = 26, "the coordinator declared this server dead (or it never enlisted): it must stop serving and exit";
    EXPIRED_LEASE = 27, "the client's lease has expired: get a new lease (a new client id) from the coordinator; an RPC already sent under the old lease has an unknown outcome";
    NOT_SERVING = 28, "this master has not heard from the coordinator within its lease and stopped serving: refresh the tablet map and retry";
    BACKUP_STORAGE_ERROR = 29, "the backup cannot store the replica on its disk (full, read-only or failing; the detail says which): place it on another backup; the backup's operator must fix the disk";
    STORE_UNAVAILABLE = 30, "the table's backing object store failed or did not answer (the detail says how): retry later; if it lasts, check the store";
    STORE_REJECTED = 31, "the table's backing object store refused the request (credentials, bucket or key; the detail says which): fix the table's backing or the servers' store credentials";
    WRITE_BACK_FULL = 32, "the master's write-back backlog is at its limit because the store is slow or down: retry after a delay; `faascache status` shows the backlog and the store's errors";
    OBJECT_TOO_LARGE = 33, "the object is larger than one reply (the detail gives its size): read it in pieces with ReadObject (the clients' read_object does) or through the S3/Swift endpoint";
    RESIZE_REFUSED = 34, "the server cannot take that memory size (the detail says why: data it may not evict does not fit, below its minimum, or above the memory reserved at start with --max-memory); the budget is unchanged";
    REQUEST_TOO_LARGE = 100, "the request payload exceeds the protocol maximum (8 MiB + 64 KiB): split it";
    BAD_PROTOCOL_VERSION = 101, "the peer speaks another protocol version: run the same FaaSCache version on both sides";
    SHUTTING_DOWN = 102, "the server is shutting down: retry on another server or after restart";
}

impl Status {
    /// Is this `OK`?
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }
    /// The status for a wire value (any value is accepted; unknown ones keep their number).
    pub const fn from_u16(v: u16) -> Status {
        Status(v)
    }
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Status({})", self.0),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({}): {}", self.0, self.description()),
            None => write!(f, "status {}: {}", self.0, self.description()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn numbering_and_text() {
        assert_eq!(Status::UNIMPLEMENTED_REQUEST.0, 8);
        assert_eq!(Status::RETRY.0, 17);
        assert_eq!(Status::INTERNAL_ERROR.0, 21);
        assert!(Status::UNIMPLEMENTED_REQUEST
            .to_string()
            .contains("does not implement"));
        assert!(Status(999).to_string().contains("unknown"));
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert!(seen.insert(s.0));
        }
    }
}
