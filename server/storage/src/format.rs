//! The log's byte format: entry framing, entry bodies, checksums and the segment iterator.
//!
//! `docs/log-format.md` is the specification; this file is its implementation. In short:
//!
//! ```text
//! entry   = header(1) length(1..4, LE) body(length)
//! header  = type (low 6 bits) | (length bytes - 1) << 6
//! body    = crc32c(4, LE, over the rest of the body) fields...
//! ```
//!
//! A segment is a sequence of entries starting with a `SegmentHeader`. A *certificate*
//! `(length, checksum)` commits a prefix: `checksum` is the CRC32C of every entry header
//! (type byte and length bytes) in the first `length` bytes, in order. Object bodies carry
//! their own checksum, so a certificate plus per-entry checksums validate every byte.
//!
//! Everything here is pure: functions over byte slices, no I/O, no locking.

use super::error::FormatError;

/// Magic at the start of every segment header body ("FCSG" little-endian).
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"FCSG");
/// Version of the log format written by this build. Readers accept exactly this version
/// (see `docs/log-format.md`, "Version changes").
pub const FORMAT_VERSION: u16 = 2;

/// Bit of an object's timestamp word that records it was written dirty (not yet in a backing
/// store). The log is immutable: an object later written back is marked clean in the hash
/// table, not here, so after recovery an object is conservatively dirty again.
pub const DIRTY_BIT: u32 = 1 << 31;

/// Kinds of log entry. The numbers are part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryType {
    /// First entry of every segment: which log, which segment.
    SegmentHeader = 1,
    /// A key-value object.
    Object = 2,
    /// Marks an object version dead.
    Tombstone = 3,
    /// Lower bound for versions of objects created from now on.
    SafeVersion = 4,
    /// The list of segments that make up the log, written at the start of every head.
    LogDigest = 5,
    /// Per-table byte and object counts, to partition a crashed master's tablets.
    TableStats = 6,
    /// The result of a tracked (exactly-once) mutation: RIFL's completion record.
    Completion = 7,
}

impl EntryType {
    /// Decodes a type number.
    pub fn from_u8(v: u8) -> Option<EntryType> {
        Some(match v {
            1 => EntryType::SegmentHeader,
            2 => EntryType::Object,
            3 => EntryType::Tombstone,
            4 => EntryType::SafeVersion,
            5 => EntryType::LogDigest,
            6 => EntryType::TableStats,
            7 => EntryType::Completion,
            _ => return None,
        })
    }
}

/// Commits a segment prefix: its length and the running checksum over its entry headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Certificate {
    /// Bytes of the segment covered.
    pub length: u32,
    /// CRC32C over every entry header in those bytes.
    pub checksum: u32,
}

impl Certificate {
    /// Encoded size.
    pub const BYTES: usize = 8;

    /// Little-endian encoding: length, checksum.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.length.to_le_bytes());
        b[4..].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Decodes [`Certificate::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Certificate, FormatError> {
        if b.len() < 8 {
            return Err(FormatError::Truncated {
                offset: 0,
                what: "certificate",
            });
        }
        Ok(Certificate {
            length: le32(b, 0),
            checksum: le32(b, 4),
        })
    }
}

#[inline]
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
/// The little-endian `u32` at `b[at..at + 4]` (panics if out of bounds: callers check lengths).
#[inline]
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
/// The little-endian `u64` at `b[at..at + 8]` (panics if out of bounds: callers check lengths).
#[inline]
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Bytes needed to store `len` in the entry length field.
#[inline]
pub fn length_bytes(len: usize) -> usize {
    match len {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        _ => 4,
    }
}

/// Writes an entry header for a body of `len` bytes into `out`; returns its size (2..=5).
#[inline]
pub fn encode_entry_header(ty: EntryType, len: usize, out: &mut [u8; 5]) -> usize {
    assert!(len <= u32::MAX as usize, "entry body over 4 GiB");
    let n = length_bytes(len);
    out[0] = ty as u8 | (((n - 1) as u8) << 6);
    out[1..1 + n].copy_from_slice(&(len as u32).to_le_bytes()[..n]);
    1 + n
}

/// Bytes of an entry header (type byte + length bytes) whose first byte is `first`.
#[inline]
pub fn entry_header_len(first: u8) -> usize {
    2 + (first >> 6) as usize
}

/// A decoded entry header: type, header size and body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Entry type.
    pub ty: EntryType,
    /// Bytes of the header itself (type byte + length bytes).
    pub header_len: usize,
    /// Bytes of the body.
    pub body_len: usize,
}

impl EntryHeader {
    /// Total bytes of the entry.
    pub fn total_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Decodes the entry header at the start of `b` (`offset` is only for error messages).
pub fn decode_entry_header(b: &[u8], offset: usize) -> Result<EntryHeader, FormatError> {
    let Some(&first) = b.first() else {
        return Err(FormatError::Truncated {
            offset,
            what: "entry header",
        });
    };
    let ty = EntryType::from_u8(first & 0x3f).ok_or(FormatError::UnknownEntryType {
        offset,
        ty: first & 0x3f,
    })?;
    let n = entry_header_len(first) - 1;
    if b.len() < 1 + n {
        return Err(FormatError::Truncated {
            offset,
            what: "entry length",
        });
    }
    let mut len = [0u8; 4];
    len[..n].copy_from_slice(&b[1..1 + n]);
    Ok(EntryHeader {
        ty,
        header_len: 1 + n,
        body_len: u32::from_le_bytes(len) as usize,
    })
}

/// Fixed part of an object body: crc(4) table(4) version(8) timestamp|dirty(4) key_len(2).
pub const OBJECT_FIXED: usize = 22;
/// Fixed part of a tombstone body: crc(4) table(4) segment(8) version(8) timestamp(4) key_len(2).
pub const TOMBSTONE_FIXED: usize = 30;
/// Segment header body: crc(4) magic(4) version(2) reserved(2) log(8) segment(8) capacity(4).
pub const SEGMENT_HEADER_BODY: usize = 32;

/// A decoded object body, borrowing key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectView<'a> {
    /// Table.
    pub table: u32,
    /// Version.
    pub version: u64,
    /// Seconds on the engine clock when written.
    pub timestamp: u32,
    /// Not yet written back to a backing store.
    pub dirty: bool,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// Builds an object body into `out` (cleared first). `timestamp` must be below 2^31.
pub fn encode_object(out: &mut Vec<u8>, o: &ObjectView<'_>) {
    encode_object_head(out, o, [o.value, &[]]);
    out.extend_from_slice(o.value);
    debug_assert_eq!(le32(out, 0), object_crc(out));
}

/// Builds into `out` (cleared first) the head of an object body — fixed fields and key —
/// whose value is `value[0]` followed by `value[1]` (`o.value` is ignored): the body is the
/// head followed by those bytes, and the head's checksum covers them, so a caller can append
/// the three parts to the log without first joining them.
pub fn encode_object_head(out: &mut Vec<u8>, o: &ObjectView<'_>, value: [&[u8]; 2]) {
    out.clear();
    assert!(o.key.len() <= u16::MAX as usize);
    let ts = (o.timestamp & !DIRTY_BIT) | if o.dirty { DIRTY_BIT } else { 0 };
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&o.table.to_le_bytes());
    out.extend_from_slice(&o.version.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&(o.key.len() as u16).to_le_bytes());
    out.extend_from_slice(o.key);
    let crc = value.iter().fold(crc32c::crc32c(&out[4..]), |c, part| {
        crc32c::crc32c_append(c, part)
    });
    out[..4].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of an object body (over bytes 4..).
pub fn object_crc(body: &[u8]) -> u32 {
    crc32c::crc32c(&body[4..])
}

/// Decodes and verifies an object body.
pub fn decode_object(body: &[u8], offset: usize) -> Result<ObjectView<'_>, FormatError> {
    if body.len() < OBJECT_FIXED {
        return Err(FormatError::Truncated {
            offset,
            what: "object",
        });
    }
    let key_len = le16(body, 20) as usize;
    if key_len == 0 || OBJECT_FIXED + key_len > body.len() {
        return Err(FormatError::BadField {
            offset,
            what: "object key length",
        });
    }
    let stored = le32(body, 0);
    let actual = object_crc(body);
    if stored != actual {
        return Err(FormatError::ChecksumMismatch {
            offset,
            what: "object",
            stored,
            actual,
        });
    }
    let ts = le32(body, 16);
    Ok(ObjectView {
        table: le32(body, 4),
        version: le64(body, 8),
        timestamp: ts & !DIRTY_BIT,
        dirty: ts & DIRTY_BIT != 0,
        key: &body[OBJECT_FIXED..OBJECT_FIXED + key_len],
        value: &body[OBJECT_FIXED + key_len..],
    })
}

/// A decoded tombstone body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TombstoneView<'a> {
    /// Table of the dead object.
    pub table: u32,
    /// Segment that held the dead object; the tombstone is needed until that segment is gone.
    pub segment_id: u64,
    /// Version of the dead object.
    pub version: u64,
    /// Seconds on the engine clock when written.
    pub timestamp: u32,
    /// Key of the dead object.
    pub key: &'a [u8],
}

/// Builds a tombstone body into `out`.
pub fn encode_tombstone(out: &mut Vec<u8>, t: &TombstoneView<'_>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&t.table.to_le_bytes());
    out.extend_from_slice(&t.segment_id.to_le_bytes());
    out.extend_from_slice(&t.version.to_le_bytes());
    out.extend_from_slice(&t.timestamp.to_le_bytes());
    out.extend_from_slice(&(t.key.len() as u16).to_le_bytes());
    out.extend_from_slice(t.key);
    seal(out);
}

/// Decodes and verifies a tombstone body.
pub fn decode_tombstone(body: &[u8], offset: usize) -> Result<TombstoneView<'_>, FormatError> {
    if body.len() < TOMBSTONE_FIXED {
        return Err(FormatError::Truncated {
            offset,
            what: "tombstone",
        });
    }
    check_sealed(body, offset, "tombstone")?;
    let key_len = le16(body, 28) as usize;
    if key_len == 0 || TOMBSTONE_FIXED + key_len != body.len() {
        return Err(FormatError::BadField {
            offset,
            what: "tombstone key length",
        });
    }
    Ok(TombstoneView {
        table: le32(body, 4),
        segment_id: le64(body, 8),
        version: le64(body, 16),
        timestamp: le32(body, 24),
        key: &body[TOMBSTONE_FIXED..],
    })
}

/// The segment header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Log (master) the segment belongs to.
    pub log_id: u64,
    /// Segment id, unique within the log, increasing.
    pub segment_id: u64,
    /// Capacity in bytes the segment was opened with.
    pub capacity: u32,
}

/// Builds a segment header body.
pub fn encode_segment_header(out: &mut Vec<u8>, h: &SegmentHeader) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&h.log_id.to_le_bytes());
    out.extend_from_slice(&h.segment_id.to_le_bytes());
    out.extend_from_slice(&h.capacity.to_le_bytes());
    seal(out);
}

/// Decodes and verifies a segment header body.
pub fn decode_segment_header(body: &[u8], offset: usize) -> Result<SegmentHeader, FormatError> {
    if body.len() != SEGMENT_HEADER_BODY {
        return Err(FormatError::BadField {
            offset,
            what: "segment header length",
        });
    }
    check_sealed(body, offset, "segment header")?;
    if le32(body, 4) != SEGMENT_MAGIC {
        return Err(FormatError::BadMagic {
            found: le32(body, 4),
        });
    }
    let version = le16(body, 8);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(SegmentHeader {
        log_id: le64(body, 12),
        segment_id: le64(body, 20),
        capacity: le32(body, 28),
    })
}

/// Builds a safe-version body.
pub fn encode_safe_version(out: &mut Vec<u8>, version: u64) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&version.to_le_bytes());
    seal(out);
}

/// Decodes a safe-version body.
pub fn decode_safe_version(body: &[u8], offset: usize) -> Result<u64, FormatError> {
    if body.len() != 12 {
        return Err(FormatError::BadField {
            offset,
            what: "safe version length",
        });
    }
    check_sealed(body, offset, "safe version")?;
    Ok(le64(body, 4))
}

/// Builds a log-digest body naming `segments`.
pub fn encode_log_digest(out: &mut Vec<u8>, segments: &[u64]) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    for s in segments {
        out.extend_from_slice(&s.to_le_bytes());
    }
    seal(out);
}

/// Decodes a log-digest body.
pub fn decode_log_digest(body: &[u8], offset: usize) -> Result<Vec<u64>, FormatError> {
    if body.len() < 8 {
        return Err(FormatError::Truncated {
            offset,
            what: "log digest",
        });
    }
    check_sealed(body, offset, "log digest")?;
    let n = le32(body, 4) as usize;
    // The count is checked against the bytes present before anything is allocated.
    if body.len() != 8 + n.saturating_mul(8) {
        return Err(FormatError::BadField {
            offset,
            what: "log digest count",
        });
    }
    Ok((0..n).map(|i| le64(body, 8 + 8 * i)).collect())
}

/// One table's counts in a table-stats entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableStat {
    /// Table.
    pub table: u32,
    /// Live bytes of its objects in this log.
    pub bytes: u64,
    /// Live objects.
    pub objects: u64,
}

/// Builds a table-stats body.
pub fn encode_table_stats(out: &mut Vec<u8>, stats: &[TableStat]) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(stats.len() as u32).to_le_bytes());
    for s in stats {
        out.extend_from_slice(&s.table.to_le_bytes());
        out.extend_from_slice(&s.bytes.to_le_bytes());
        out.extend_from_slice(&s.objects.to_le_bytes());
    }
    seal(out);
}

/// Decodes a table-stats body.
pub fn decode_table_stats(body: &[u8], offset: usize) -> Result<Vec<TableStat>, FormatError> {
    if body.len() < 8 {
        return Err(FormatError::Truncated {
            offset,
            what: "table stats",
        });
    }
    check_sealed(body, offset, "table stats")?;
    let n = le32(body, 4) as usize;
    if body.len() != 8 + n.saturating_mul(20) {
        return Err(FormatError::BadField {
            offset,
            what: "table stats count",
        });
    }
    Ok((0..n)
        .map(|i| {
            let at = 8 + 20 * i;
            TableStat {
                table: le32(body, at),
                bytes: le64(body, at + 4),
                objects: le64(body, at + 12),
            }
        })
        .collect())
}

fn seal(body: &mut [u8]) {
    let crc = crc32c::crc32c(&body[4..]);
    body[..4].copy_from_slice(&crc.to_le_bytes());
}

fn check_sealed(body: &[u8], offset: usize, what: &'static str) -> Result<(), FormatError> {
    let stored = le32(body, 0);
    let actual = crc32c::crc32c(&body[4..]);
    if stored != actual {
        return Err(FormatError::ChecksumMismatch {
            offset,
            what,
            stored,
            actual,
        });
    }
    Ok(())
}

/// Body of a completion record: crc(4) table(4) key_hash(8) client(8) rpc(8) ack(8)
/// timestamp(4) status(2) version(8) kind(1) value(8).
pub const COMPLETION_BODY: usize = 63;

/// A tracked mutation's result, kept in the log beside the object it changed (RIFL's
/// completion record): written in the same append as the object (or alone when the mutation
/// changed nothing), replicated with it, moved with its tablet, replayed by crash recovery, and
/// dead once the client acknowledged it or its lease expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompletionRecord {
    /// Table of the key the mutation was for.
    pub table: u32,
    /// Hash of that key (which tablet the record belongs to).
    pub key_hash: u64,
    /// The client (lease id).
    pub client_id: u64,
    /// The rpc id.
    pub rpc_id: u64,
    /// The client's ack id when it sent the rpc: its results up to this id are dead.
    pub ack_id: u64,
    /// Seconds on the engine clock when written.
    pub timestamp: u32,
    /// The reply's status code (the protocol's `Status`).
    pub status: u16,
    /// The reply's version (the new one; the removed one; or the current one of a refusal).
    pub version: u64,
    /// What kind of reply to rebuild (owned by the master; opaque here).
    pub kind: u8,
    /// The 8-byte value of an increment's reply (zero otherwise).
    pub value: [u8; 8],
}

/// Builds a completion record body into `out`.
pub fn encode_completion(out: &mut Vec<u8>, c: &CompletionRecord) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&c.table.to_le_bytes());
    out.extend_from_slice(&c.key_hash.to_le_bytes());
    out.extend_from_slice(&c.client_id.to_le_bytes());
    out.extend_from_slice(&c.rpc_id.to_le_bytes());
    out.extend_from_slice(&c.ack_id.to_le_bytes());
    out.extend_from_slice(&c.timestamp.to_le_bytes());
    out.extend_from_slice(&c.status.to_le_bytes());
    out.extend_from_slice(&c.version.to_le_bytes());
    out.push(c.kind);
    out.extend_from_slice(&c.value);
    seal(out);
}

/// Decodes and verifies a completion record body.
pub fn decode_completion(body: &[u8], offset: usize) -> Result<CompletionRecord, FormatError> {
    if body.len() != COMPLETION_BODY {
        return Err(FormatError::Truncated {
            offset,
            what: "completion record",
        });
    }
    check_sealed(body, offset, "completion record")?;
    Ok(CompletionRecord {
        table: le32(body, 4),
        key_hash: le64(body, 8),
        client_id: le64(body, 16),
        rpc_id: le64(body, 24),
        ack_id: le64(body, 32),
        timestamp: le32(body, 40),
        status: le16(body, 44),
        version: le64(body, 46),
        kind: body[54],
        value: body[55..63].try_into().expect("8 bytes"),
    })
}

/// A decoded, verified entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Segment header.
    SegmentHeader(SegmentHeader),
    /// Object.
    Object(ObjectView<'a>),
    /// Tombstone.
    Tombstone(TombstoneView<'a>),
    /// Safe version.
    SafeVersion(u64),
    /// Log digest.
    LogDigest(Vec<u64>),
    /// Table stats.
    TableStats(Vec<TableStat>),
    /// Completion record.
    Completion(CompletionRecord),
}

/// Decodes and verifies one entry body of type `ty`.
pub fn decode_body(ty: EntryType, body: &[u8], offset: usize) -> Result<Entry<'_>, FormatError> {
    Ok(match ty {
        EntryType::SegmentHeader => Entry::SegmentHeader(decode_segment_header(body, offset)?),
        EntryType::Object => Entry::Object(decode_object(body, offset)?),
        EntryType::Tombstone => Entry::Tombstone(decode_tombstone(body, offset)?),
        EntryType::SafeVersion => Entry::SafeVersion(decode_safe_version(body, offset)?),
        EntryType::LogDigest => Entry::LogDigest(decode_log_digest(body, offset)?),
        EntryType::TableStats => Entry::TableStats(decode_table_stats(body, offset)?),
        EntryType::Completion => Entry::Completion(decode_completion(body, offset)?),
    })
}

/// Walks a contiguous segment image (a replica, or a segment copied out of memory) and
/// verifies everything: framing, the segment header first, every entry's checksum, and —
/// when a certificate is given — that the entry headers up to its length match its checksum.
/// Without a certificate the whole slice is walked. The first broken rule is returned as an
/// error; nothing is returned past it.
#[derive(Debug)]
pub struct SegmentIterator<'a> {
    bytes: &'a [u8],
    pos: usize,
    crc: u32,
    header: SegmentHeader,
    cert: Option<Certificate>,
    done: bool,
}

impl<'a> SegmentIterator<'a> {
    /// Starts iterating; checks the segment header and the certificate's bounds.
    pub fn new(bytes: &'a [u8], cert: Option<Certificate>) -> Result<Self, FormatError> {
        let end = match cert {
            Some(c) if c.length as usize > bytes.len() => {
                return Err(FormatError::CertificateBeyondData {
                    length: c.length,
                    available: bytes.len(),
                })
            }
            Some(c) => c.length as usize,
            None => bytes.len(),
        };
        let bytes = &bytes[..end];
        let h = decode_entry_header(bytes, 0)?;
        if h.ty != EntryType::SegmentHeader {
            return Err(FormatError::MissingSegmentHeader);
        }
        if h.total_len() > bytes.len() {
            return Err(FormatError::Truncated {
                offset: 0,
                what: "segment header",
            });
        }
        let header = decode_segment_header(&bytes[h.header_len..h.total_len()], 0)?;
        let mut it = SegmentIterator {
            bytes,
            pos: 0,
            crc: 0,
            header,
            cert,
            done: false,
        };
        it.crc = crc32c::crc32c(&bytes[..h.header_len]);
        it.pos = h.total_len();
        Ok(it)
    }

    /// The segment's header.
    pub fn header(&self) -> SegmentHeader {
        self.header
    }

    /// Offset of the next entry.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next verified entry with its offset, `None` at the end, or the first error.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<(usize, Entry<'a>), FormatError>> {
        if self.done {
            return None;
        }
        if self.pos == self.bytes.len() {
            self.done = true;
            if let Some(c) = self.cert {
                if c.checksum != self.crc {
                    return Some(Err(FormatError::CertificateMismatch {
                        stored: c.checksum,
                        actual: self.crc,
                    }));
                }
            }
            return None;
        }
        let offset = self.pos;
        let r = (|| {
            let h = decode_entry_header(&self.bytes[offset..], offset)?;
            let end = offset
                .checked_add(h.total_len())
                .filter(|&e| e <= self.bytes.len())
                .ok_or(FormatError::Truncated {
                    offset,
                    what: "entry body",
                })?;
            self.crc = crc32c::crc32c_append(self.crc, &self.bytes[offset..offset + h.header_len]);
            let body = &self.bytes[offset + h.header_len..end];
            if h.ty == EntryType::SegmentHeader {
                return Err(FormatError::BadField {
                    offset,
                    what: "second segment header",
                });
            }
            let e = decode_body(h.ty, body, offset)?;
            self.pos = end;
            Ok((offset, e))
        })();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ty: EntryType, body: &[u8], out: &mut Vec<u8>, crc: &mut u32) {
        let mut h = [0u8; 5];
        let n = encode_entry_header(ty, body.len(), &mut h);
        *crc = crc32c::crc32c_append(*crc, &h[..n]);
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(body);
    }

    fn sample_segment() -> (Vec<u8>, Certificate) {
        let mut seg = Vec::new();
        let mut crc = 0;
        let mut body = Vec::new();
        encode_segment_header(
            &mut body,
            &SegmentHeader {
                log_id: 7,
                segment_id: 3,
                capacity: 1 << 20,
            },
        );
        entry(EntryType::SegmentHeader, &body, &mut seg, &mut crc);
        encode_log_digest(&mut body, &[1, 2, 3]);
        entry(EntryType::LogDigest, &body, &mut seg, &mut crc);
        encode_object(
            &mut body,
            &ObjectView {
                table: 1,
                version: 9,
                timestamp: 5,
                dirty: true,
                key: b"k",
                value: b"v",
            },
        );
        entry(EntryType::Object, &body, &mut seg, &mut crc);
        encode_tombstone(
            &mut body,
            &TombstoneView {
                table: 1,
                segment_id: 2,
                version: 8,
                timestamp: 6,
                key: b"old",
            },
        );
        entry(EntryType::Tombstone, &body, &mut seg, &mut crc);
        encode_safe_version(&mut body, 100);
        entry(EntryType::SafeVersion, &body, &mut seg, &mut crc);
        encode_table_stats(
            &mut body,
            &[TableStat {
                table: 1,
                bytes: 30,
                objects: 1,
            }],
        );
        entry(EntryType::TableStats, &body, &mut seg, &mut crc);
        let cert = Certificate {
            length: seg.len() as u32,
            checksum: crc,
        };
        (seg, cert)
    }

    #[test]
    fn an_object_head_and_its_value_parts_make_the_encoded_object() {
        let o = ObjectView {
            table: 7,
            version: 42,
            timestamp: 99,
            dirty: true,
            key: b"photos/cat.jpg",
            value: b"envelope header|and the client's bytes",
        };
        let mut whole = Vec::new();
        encode_object(&mut whole, &o);
        let (a, b) = o.value.split_at(16);
        let mut head = vec![1, 2, 3];
        encode_object_head(&mut head, &ObjectView { value: &[], ..o }, [a, b]);
        let joined = [&head[..], a, b].concat();
        assert_eq!(joined, whole);
        assert_eq!(decode_object(&joined, 0).unwrap(), o);
    }

    #[test]
    fn entry_headers_round_trip_every_length_size() {
        for len in [0usize, 1, 255, 256, 65535, 65536, 0xff_ffff, 0x100_0000] {
            let mut h = [0u8; 5];
            let n = encode_entry_header(EntryType::Object, len, &mut h);
            let d = decode_entry_header(&h[..n], 0).unwrap();
            assert_eq!(
                (d.ty, d.header_len, d.body_len),
                (EntryType::Object, n, len)
            );
        }
    }

    #[test]
    fn iterator_returns_every_entry_and_checks_certificate() {
        let (seg, cert) = sample_segment();
        let mut it = SegmentIterator::new(&seg, Some(cert)).unwrap();
        assert_eq!(it.header().segment_id, 3);
        let mut kinds = Vec::new();
        while let Some(e) = it.next() {
            kinds.push(std::mem::discriminant(&e.unwrap().1));
        }
        assert_eq!(kinds.len(), 5);
        // Data beyond the certificate is ignored: a prefix commit.
        let mut longer = seg.clone();
        longer.extend_from_slice(&[0xAB; 10]);
        let mut it = SegmentIterator::new(&longer, Some(cert)).unwrap();
        let mut n = 0;
        while let Some(e) = it.next() {
            e.unwrap();
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let (seg, cert) = sample_segment();
        for byte in 0..seg.len() {
            for bit in 0..8 {
                let mut bad = seg.clone();
                bad[byte] ^= 1 << bit;
                let res = SegmentIterator::new(&bad, Some(cert)).and_then(|mut it| {
                    while let Some(e) = it.next() {
                        e?;
                    }
                    Ok(())
                });
                assert!(
                    res.is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncation_and_bad_certificates_are_errors() {
        let (seg, cert) = sample_segment();
        for cut in 0..seg.len() {
            let res = SegmentIterator::new(&seg[..cut], None).and_then(|mut it| {
                while let Some(e) = it.next() {
                    e?;
                }
                Ok(())
            });
            // A cut exactly at an entry boundary is a valid shorter segment; anything else fails.
            if res.is_ok() {
                let mut it = SegmentIterator::new(&seg, None).unwrap();
                let mut boundaries = vec![it.position()];
                while let Some(Ok(_)) = it.next() {
                    boundaries.push(it.position());
                }
                assert!(boundaries.contains(&cut), "cut at {cut} accepted");
            }
        }
        let long = Certificate {
            length: seg.len() as u32 + 1,
            ..cert
        };
        assert!(matches!(
            SegmentIterator::new(&seg, Some(long)),
            Err(FormatError::CertificateBeyondData { .. })
        ));
        let wrong = Certificate {
            checksum: cert.checksum ^ 1,
            ..cert
        };
        let mut it = SegmentIterator::new(&seg, Some(wrong)).unwrap();
        let mut last = None;
        while let Some(e) = it.next() {
            last = Some(e);
        }
        assert!(matches!(
            last,
            Some(Err(FormatError::CertificateMismatch { .. }))
        ));
    }

    #[test]
    fn digest_count_cannot_size_an_allocation() {
        let mut body = Vec::new();
        encode_log_digest(&mut body, &[1]);
        body[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&body[4..]);
        body[..4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_log_digest(&body, 0),
            Err(FormatError::BadField { .. })
        ));
    }
}
