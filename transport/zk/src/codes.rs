//! The numbers of ZooKeeper's client protocol: operation codes, special xids and error codes
//! (a leaf module: the error type names them, the codec uses them).

/// Operation codes (`ZooDefs.OpCode`).
pub mod opcode {
    /// Create a znode.
    pub const CREATE: i32 = 1;
    /// Delete a znode.
    pub const DELETE: i32 = 2;
    /// Stat of a znode (and set a watch).
    pub const EXISTS: i32 = 3;
    /// Data and stat of a znode.
    pub const GET_DATA: i32 = 4;
    /// Replace a znode's data (optionally at a version).
    pub const SET_DATA: i32 = 5;
    /// Names of a znode's children.
    pub const GET_CHILDREN: i32 = 8;
    /// Keep-alive.
    pub const PING: i32 = 11;
    /// Check a znode's version (inside `multi` only).
    pub const CHECK: i32 = 13;
    /// Atomic batch of create / delete / setData / check.
    pub const MULTI: i32 = 14;
    /// End the session (its ephemeral znodes are deleted at once).
    pub const CLOSE_SESSION: i32 = -11;
    /// Marks an error result inside a multi response.
    pub const ERROR: i32 = -1;
}

/// Reserved xids of server-initiated or special packets.
pub mod xid {
    /// A watch notification.
    pub const NOTIFICATION: i32 = -1;
    /// A ping reply.
    pub const PING: i32 = -2;
    /// An authentication reply.
    pub const AUTH: i32 = -4;
    /// A set-watches reply (after a reconnect).
    pub const SET_WATCHES: i32 = -8;
}

/// Error codes (`KeeperException.Code`).
pub mod err {
    /// Success.
    pub const OK: i32 = 0;
    /// An op of a failed multi that was not the cause.
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    /// The znode does not exist.
    pub const NO_NODE: i32 = -101;
    /// The version did not match.
    pub const BAD_VERSION: i32 = -103;
    /// The znode exists already.
    pub const NODE_EXISTS: i32 = -110;
    /// The znode has children.
    pub const NOT_EMPTY: i32 = -111;
    /// The session has expired.
    pub const SESSION_EXPIRED: i32 = -112;
}

/// The name of a ZooKeeper error code, for messages.
pub fn err_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        -1 => "SYSTEMERROR",
        -2 => "RUNTIMEINCONSISTENCY",
        -3 => "DATAINCONSISTENCY",
        -4 => "CONNECTIONLOSS",
        -5 => "MARSHALLINGERROR",
        -6 => "UNIMPLEMENTED",
        -7 => "OPERATIONTIMEOUT",
        -8 => "BADARGUMENTS",
        -12 => "UNKNOWNSESSION",
        -13 => "NEWCONFIGNOQUORUM",
        -14 => "RECONFIGINPROGRESS",
        -100 => "APIERROR",
        -101 => "NONODE",
        -102 => "NOAUTH",
        -103 => "BADVERSION",
        -108 => "NOCHILDRENFOREPHEMERALS",
        -110 => "NODEEXISTS",
        -111 => "NOTEMPTY",
        -112 => "SESSIONEXPIRED",
        -113 => "INVALIDCALLBACK",
        -114 => "INVALIDACL",
        -115 => "AUTHFAILED",
        -118 => "SESSIONMOVED",
        -119 => "NOTREADONLY",
        -120 => "EPHEMERALONLOCALSESSION",
        -121 => "NOWATCHER",
        -122 => "REQUESTTIMEOUT",
        -123 => "RECONFIGDISABLED",
        -124 => "SESSIONCLOSEDREQUIRESASLAUTH",
        -125 => "QUOTAEXCEEDED",
        -127 => "THROTTLEDOP",
        _ => "unknown error code",
    }
}
