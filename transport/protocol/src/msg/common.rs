//! Pieces shared by several messages: limits, the key hash, reject rules, the exactly-once
//! header, server ids, service masks and the error reply.

use super::{decode_all, read_str, Message, MsgError};
use crate::wire::codec::{Reader, Writer};

/// Largest key, in bytes (keys travel with a u16 length). Equals the storage engine's limit.
pub const MAX_KEY_LEN: usize = 64 * 1024 - 1;
/// Largest value, in bytes (1 MiB, RAMCloud's limit). Equals the storage engine's limit; a
/// decoder refuses a longer value before reading it.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// Most items in one multi-read / multi-write / multi-remove request. RAMCloud sends 20 per RPC;
/// the cap only bounds what a server allocates for one request.
pub const MAX_MULTI_ITEMS: usize = 4096;
/// Longest table name, in bytes of UTF-8.
pub const MAX_TABLE_NAME_LEN: usize = 1024;
/// Longest service locator, in bytes of UTF-8.
pub const MAX_LOCATOR_LEN: usize = 4096;
/// Longest human-readable detail in an [`ErrorReply`].
pub const MAX_DETAIL_LEN: usize = 4096;

/// The 64-bit hash of a key that places it in a tablet: XXH3-64 with seed 0 — of the whole
/// key, except for a chunk key ([`chunk_key`]), which hashes as its object's key so that an
/// object's chunks live in its tablet (recovered and migrated with it). Part of the protocol:
/// clients and masters must agree (the storage engine's `key_hash` is the same).
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(chunk_parent(key).unwrap_or(key))
}

/// Bytes a chunk key adds to its object's key: `00 FC`, object id `u64` BE, index `u32` BE,
/// `FC 00`. Keys of backed tables are object-store keys, which never hold a NUL, so no client
/// key of a backed table has this form; a key of another table that happens to is merely
/// placed with its prefix.
pub const CHUNK_SUFFIX_LEN: usize = 16;

/// The key of chunk `index` of version `object_id` of the object at `key` (a large object of a
/// backed table is a manifest at its key plus chunks at these keys).
pub fn chunk_key(key: &[u8], object_id: u64, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + CHUNK_SUFFIX_LEN);
    k.extend_from_slice(key);
    k.extend_from_slice(&[0x00, 0xFC]);
    k.extend_from_slice(&object_id.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&[0xFC, 0x00]);
    k
}

/// The object key a chunk key belongs to, or `None` if `key` is not a chunk key.
#[inline]
pub fn chunk_parent(key: &[u8]) -> Option<&[u8]> {
    let n = key.len();
    if n > CHUNK_SUFFIX_LEN
        && key[n - CHUNK_SUFFIX_LEN] == 0x00
        && key[n - CHUNK_SUFFIX_LEN + 1] == 0xFC
        && key[n - 2] == 0xFC
        && key[n - 1] == 0x00
    {
        Some(&key[..n - CHUNK_SUFFIX_LEN])
    } else {
        None
    }
}

/// Checks a key against the protocol limits (1..=65 535 bytes).
pub fn check_key(key: &[u8]) -> Result<(), MsgError> {
    if key.is_empty() {
        return Err(MsgError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(MsgError::TooLong {
            field: "key",
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// Checks a value against the protocol limit (1 MiB). A server may refuse smaller values if
/// its segments cannot hold them (it answers with the limit in the detail).
pub fn check_value(value: &[u8]) -> Result<(), MsgError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(MsgError::TooLong {
            field: "value",
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Conditions under which a master refuses an operation (RAMCloud's reject rules). Version
/// rules apply only to an object that exists. Wire: flags `u8` (bit 0 doesn't-exist, bit 1
/// exists, bit 2 version ≤ given, bit 3 version ≠ given; bits 4–7 reserved) + given version
/// `u64` = 9 bytes. The default refuses nothing.
///
/// ```
/// use faascache_protocol::msg::RejectRules;
/// // Compare-and-swap: only if the object is at version 7.
/// let cas = RejectRules::version_is(7);
/// assert!(cas.doesnt_exist && cas.version_ne_given && cas.given_version == 7);
/// // Create-only.
/// assert!(RejectRules::must_not_exist().exists);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RejectRules {
    /// Refuse if the object does not exist.
    pub doesnt_exist: bool,
    /// Refuse if the object exists.
    pub exists: bool,
    /// Refuse if the object's version is ≤ `given_version`.
    pub version_le_given: bool,
    /// Refuse if the object's version is ≠ `given_version`.
    pub version_ne_given: bool,
    /// The version the version rules compare with.
    pub given_version: u64,
}

impl RejectRules {
    /// Encoded size.
    pub const LEN: usize = 9;
    /// No conditions.
    pub const NONE: RejectRules = RejectRules {
        doesnt_exist: false,
        exists: false,
        version_le_given: false,
        version_ne_given: false,
        given_version: 0,
    };

    /// Only if the object exists at exactly `version` (compare-and-swap).
    ///
    /// ```
    /// assert_eq!(faascache_protocol::msg::RejectRules::version_is(3).given_version, 3);
    /// ```
    pub fn version_is(version: u64) -> RejectRules {
        RejectRules {
            doesnt_exist: true,
            version_ne_given: true,
            given_version: version,
            ..Self::NONE
        }
    }

    /// Only if the object does not exist yet (create).
    ///
    /// ```
    /// assert!(faascache_protocol::msg::RejectRules::must_not_exist().exists);
    /// ```
    pub fn must_not_exist() -> RejectRules {
        RejectRules {
            exists: true,
            ..Self::NONE
        }
    }

    /// Only if the object exists (update).
    ///
    /// ```
    /// assert!(faascache_protocol::msg::RejectRules::must_exist().doesnt_exist);
    /// ```
    pub fn must_exist() -> RejectRules {
        RejectRules {
            doesnt_exist: true,
            ..Self::NONE
        }
    }

    /// Whether no rule is set.
    ///
    /// ```
    /// assert!(faascache_protocol::msg::RejectRules::NONE.is_none());
    /// ```
    pub fn is_none(&self) -> bool {
        !(self.doesnt_exist || self.exists || self.version_le_given || self.version_ne_given)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        let flags = self.doesnt_exist as u8
            | (self.exists as u8) << 1
            | (self.version_le_given as u8) << 2
            | (self.version_ne_given as u8) << 3;
        w.u8(flags).u64(self.given_version);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<RejectRules, MsgError> {
        let flags = r.u8()?;
        if flags & 0xF0 != 0 {
            return Err(MsgError::BadField {
                field: "reject_rules.flags",
                value: flags as u64,
            });
        }
        Ok(RejectRules {
            doesnt_exist: flags & 1 != 0,
            exists: flags & 2 != 0,
            version_le_given: flags & 4 != 0,
            version_ne_given: flags & 8 != 0,
            given_version: r.u64()?,
        })
    }
}

/// The exactly-once header of a mutation (RAMCloud's linearizable RPC header): the client's id,
/// this RPC's id (unique and increasing per client), and the client's ack id (every rpc id
/// ≤ ack id has its reply at the client, so the master may forget those results).
/// `client_id == 0` means "not tracked": the mutation runs at most as often as it is sent.
/// Wire: three `u64` = 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactlyOnce {
    /// Client id: the id of the client's lease from the coordinator's `GetClientLease`, or 0
    /// (untracked).
    pub client_id: u64,
    /// This RPC's id (≥ 1 when tracked).
    pub rpc_id: u64,
    /// Every rpc id ≤ this is acknowledged.
    pub ack_id: u64,
    /// The client's lease, as last granted.
    pub lease: ClientLease,
}

impl ExactlyOnce {
    /// Encoded size.
    pub const LEN: usize = 24 + ClientLease::LEN;
    /// An untracked mutation.
    pub const UNTRACKED: ExactlyOnce = ExactlyOnce {
        client_id: 0,
        rpc_id: 0,
        ack_id: 0,
        lease: ClientLease::NONE,
    };

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.client_id).u64(self.rpc_id).u64(self.ack_id);
        self.lease.write(w);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ExactlyOnce, MsgError> {
        Ok(ExactlyOnce {
            client_id: r.u64()?,
            rpc_id: r.u64()?,
            ack_id: r.u64()?,
            lease: ClientLease::read(r)?,
        })
    }
}

/// A client lease as the coordinator granted it, in *cluster time* (milliseconds on the
/// coordinator's clock; see `docs/operations.md`, "Leases"). Wire: expiration `u64`,
/// timestamp `u64`.
///
/// Masters learn the cluster time from `timestamp` (the coordinator's time when it granted the
/// lease) and from the coordinator's heartbeat replies, and never run a tracked mutation whose
/// lease expired at or before the cluster time they know: such a lease is dead at the
/// coordinator too (it never extends an expired lease).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClientLease {
    /// The lease is valid until this cluster time (ms).
    pub expiration: u64,
    /// The coordinator's cluster time (ms) when it granted or renewed the lease.
    pub timestamp: u64,
}

impl ClientLease {
    /// Encoded size.
    pub const LEN: usize = 16;
    /// No lease (untracked requests).
    pub const NONE: ClientLease = ClientLease {
        expiration: 0,
        timestamp: 0,
    };

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.expiration).u64(self.timestamp);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ClientLease, MsgError> {
        Ok(ClientLease {
            expiration: r.u64()?,
            timestamp: r.u64()?,
        })
    }
}

/// A server's id: a slot index (low 32 bits) and a generation (high 32 bits). A restarted
/// process enlists again and gets a new id (same or other index, higher generation), so a
/// message meant for the old process is never taken by the new one. 0 is "no server".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u64);

impl ServerId {
    /// "No server".
    pub const NONE: ServerId = ServerId(0);
    /// Id from its parts.
    pub const fn new(index: u32, generation: u32) -> ServerId {
        ServerId((generation as u64) << 32 | index as u64)
    }
    /// Slot index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }
    /// Generation.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Is this "no server"?
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.index(), self.generation())
    }
}

/// Services a server runs (a bit mask on the wire, `u32`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Services(pub u32);

impl Services {
    /// Master: owns tablets, serves reads and writes.
    pub const MASTER: Services = Services(1);
    /// Backup: keeps replicas of other masters' segments (issue "Durability").
    pub const BACKUP: Services = Services(2);
    /// The master replicates its log to backups: recover it from them if it crashes.
    pub const REPLICATED: Services = Services(4);
    /// Every bit this build knows.
    pub const KNOWN: u32 = 7;
    /// Does this mask include all of `other`?
    pub const fn has(self, other: Services) -> bool {
        self.0 & other.0 == other.0
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Services, MsgError> {
        let v = r.u32()?;
        if v & !Self::KNOWN != 0 {
            return Err(MsgError::BadField {
                field: "services",
                value: v as u64,
            });
        }
        Ok(Services(v))
    }
}

impl std::fmt::Display for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.has(Services::MASTER) {
            parts.push("master");
        }
        if self.has(Services::BACKUP) {
            parts.push("backup");
        }
        if parts.is_empty() {
            parts.push("none");
        }
        f.write_str(&parts.join("+"))
    }
}

/// The body of every non-`OK` reply sent by a cluster service: the object's current version
/// (for `OBJECT_EXISTS` / `WRONG_VERSION`; else 0) and a human-readable cause and remedy.
/// Wire: version `u64`, detail (`u16` length + UTF-8, ≤ 4096 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// Current version of the object, or 0.
    pub version: u64,
    /// Cause and remedy.
    pub detail: &'a str,
}

impl<'a> Message<'a> for ErrorReply<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        // Cut an over-long detail at a character boundary rather than fail.
        let mut d = self.detail;
        if d.len() > MAX_DETAIL_LEN {
            let mut end = MAX_DETAIL_LEN;
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            d = &d[..end];
        }
        Writer::new(out).u64(self.version).bytes_u16(d.as_bytes());
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ErrorReply {
                version: r.u64()?,
                detail: read_str(r, "detail", MAX_DETAIL_LEN)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_xxh3_seed0() {
        // Reference values of XXH3-64 (seed 0).
        assert_eq!(key_hash(b""), 0x2D06800538D394C2);
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }

    #[test]
    fn rules_and_ids() {
        let rules = RejectRules {
            doesnt_exist: true,
            version_ne_given: true,
            given_version: 42,
            ..RejectRules::NONE
        };
        let mut buf = Vec::new();
        rules.write(&mut Writer::new(&mut buf));
        assert_eq!(buf.len(), RejectRules::LEN);
        assert_eq!(RejectRules::read(&mut Reader::new(&buf)), Ok(rules));
        buf[0] |= 0x10;
        assert!(matches!(
            RejectRules::read(&mut Reader::new(&buf)),
            Err(MsgError::BadField { .. })
        ));
        let id = ServerId::new(3, 9);
        assert_eq!((id.index(), id.generation()), (3, 9));
        assert_eq!(id.to_string(), "3.9");
        assert!(check_key(b"").is_err() && check_key(&[0; MAX_KEY_LEN + 1]).is_err());
        // Chunks hash (and so are placed) with their object.
        let c = chunk_key(b"photos/a.jpg", 77, 3);
        assert_eq!(c.len(), 12 + CHUNK_SUFFIX_LEN);
        assert_eq!(chunk_parent(&c), Some(&b"photos/a.jpg"[..]));
        assert_eq!(key_hash(&c), key_hash(b"photos/a.jpg"));
        assert_ne!(key_hash(&chunk_key(b"b", 77, 3)), key_hash(b"photos/a.jpg"));
        assert_eq!(chunk_parent(b"photos/a.jpg"), None);
        assert_eq!(chunk_parent(&c[CHUNK_SUFFIX_LEN - 1..]), None);
        assert!(check_value(&vec![0; MAX_VALUE_LEN + 1]).is_err());
        let long = "é".repeat(MAX_DETAIL_LEN);
        let e = ErrorReply {
            version: 1,
            detail: &long,
        };
        let buf = e.to_vec();
        assert!(ErrorReply::decode(&buf).unwrap().detail.len() <= MAX_DETAIL_LEN);
    }
}
