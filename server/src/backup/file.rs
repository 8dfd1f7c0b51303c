//! Backup replica files: one file per replica, `DIR/<master id, 16 hex digits>/<segment id>.replica`.
//! Specified in `docs/log-format.md`, "Backup replica files"; this file is its implementation.
//!
//! ```text
//! offset 0     header slot 0 (64 bytes)
//! offset 4096  header slot 1 (64 bytes)
//! offset 8192  the replica's bytes (offset o of the replica at 8192 + o)
//! header: magic "FCBR" u32, version u16, flags u16 (bit 0 closed), master u64, segment u64,
//!         sequence u64, length u32, certificate length u32, certificate checksum u32,
//!         replica epoch u64, reserved (8 zero bytes), crc32c u32 over bytes 0..60
//! ```
//!
//! Invariants (the crash-safety argument):
//! - An update writes the data bytes and `fdatasync`s them *before* it writes a header naming
//!   them, and `fdatasync`s the header before it returns. So a header on disk never names bytes
//!   that were not on disk first.
//! - Headers alternate between the two slots (slot = sequence mod 2): a torn header write damages
//!   only the newest slot; the other still holds the previous, fully synced header.
//! - Loading takes the valid header with the highest sequence whose certificate validates the
//!   bytes (`SegmentIterator`), falling back to the other slot. So a torn write yields the
//!   previous replica (a shorter prefix), never one that fails validation later. Retried writes
//!   resend identical bytes, so rewriting bytes below a certified length never changes them.
//! - The data region is read only up to a certificate length that was checked against
//!   [`MAX_REPLICA_BYTES`] and the file's size before anything is allocated.
//!
//! Threading: a [`ReplicaFile`] is owned by one replica and used under that replica's I/O lock.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use faascache_protocol::msg::backup::MAX_REPLICA_BYTES;
use faascache_protocol::ServerId;

use faascache_storage::format::{le32, le64, Certificate};

/// Magic at the start of every header slot ("FCBR" little-endian).
pub const FILE_MAGIC: u32 = u32::from_le_bytes(*b"FCBR");
/// Version of the replica file format written by this build (readers accept exactly this).
pub const FILE_VERSION: u16 = 1;
/// Bytes of one header.
pub const HEADER_LEN: usize = 64;
/// Where the two header slots are: a page apart, so one torn page write cannot damage both.
pub const SLOT_OFFSETS: [u64; 2] = [0, 4096];
/// Where the replica's bytes start (page aligned).
pub const DATA_OFFSET: u64 = 8192;
/// File name suffix of a replica.
pub const REPLICA_SUFFIX: &str = ".replica";
/// Suffix a file that failed to load is renamed with (kept for inspection, never loaded).
pub const BAD_SUFFIX: &str = ".bad";

const FLAG_CLOSED: u16 = 1;

/// One header slot's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// The master whose segment this is.
    pub master: ServerId,
    /// The segment.
    pub segment_id: u64,
    /// Incremented by every header write; the slot is `sequence % 2`.
    pub sequence: u64,
    /// Bytes of replica data written to the file.
    pub length: u32,
    /// Certificate of the replica's first `certificate.length` (≤ `length`) bytes.
    pub certificate: Certificate,
    /// The master closed the segment.
    pub closed: bool,
    /// The highest replica epoch the master wrote (recovery ignores an open replica below the
    /// epoch its master recorded at the coordinator). Files written before epochs hold 0.
    pub epoch: u64,
}

/// Why a header slot does not decode (the first broken rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("header is {0} bytes, needs {HEADER_LEN}")]
    Short(usize),
    /// The header's CRC does not match.
    #[error("header checksum {stored:#010x} does not match its bytes ({actual:#010x})")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// CRC of the bytes.
        actual: u32,
    },
    /// Not a replica file.
    #[error("not a replica file: magic {0:#010x}")]
    Magic(u32),
    /// Written by another build.
    #[error("replica file version {0} is not supported (this build reads {FILE_VERSION})")]
    Version(u16),
    /// Reserved bits set.
    #[error("reserved header bits set (flags {0:#06x})")]
    Reserved(u16),
    /// Lengths no writer produces.
    #[error("impossible lengths: {length} bytes written, certificate covers {certified} (limit {MAX_REPLICA_BYTES})")]
    Lengths {
        /// Bytes written.
        length: u32,
        /// Bytes certified.
        certified: u32,
    },
}

/// What is wrong with one header slot or the replica it describes (see [`LoadError`]).
#[derive(Debug, thiserror::Error)]
pub enum SlotProblem {
    /// The slot was never written.
    #[error("slot {0}: not written")]
    NotWritten(usize),
    /// The slot does not decode.
    #[error("slot {slot}: {source}")]
    Bad {
        /// Slot.
        slot: usize,
        /// Why.
        source: HeaderError,
    },
    /// The header names another segment or master than the file name.
    #[error("slot {slot}: names segment {found_segment} of master {found_master}, but the file is named for segment {segment} of master {master}")]
    WrongSegment {
        /// Slot.
        slot: usize,
        /// Segment in the header.
        found_segment: u64,
        /// Master in the header.
        found_master: ServerId,
        /// Segment in the name.
        segment: u64,
        /// Master in the name.
        master: ServerId,
    },
    /// The sequence number belongs in the other slot.
    #[error("slot {slot}: sequence {sequence} belongs in the other slot")]
    WrongSlot {
        /// Slot.
        slot: usize,
        /// Its sequence.
        sequence: u64,
    },
    /// The sequence number cannot advance.
    #[error("sequence {0}: at its maximum, no further header can be written")]
    SequenceExhausted(u64),
    /// The file is shorter than the certified data.
    #[error("sequence {sequence}: certificate covers {len} bytes but the file holds only {holds}")]
    ShortFile {
        /// The header's sequence.
        sequence: u64,
        /// Certified bytes.
        len: usize,
        /// Data bytes in the file.
        holds: u64,
    },
    /// The certified bytes do not validate.
    #[error("sequence {sequence}: {reason}")]
    Invalid {
        /// The header's sequence.
        sequence: u64,
        /// The validator's error.
        reason: String,
    },
}

/// Why a replica file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An I/O error (`op` says which step).
    #[error("cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No header slot gives a valid replica; why, slot by slot.
    #[error("no valid header: {}", problems_text(.0))]
    NoValidHeader(Vec<SlotProblem>),
}

fn problems_text(p: &[SlotProblem]) -> String {
    let v: Vec<String> = p.iter().map(SlotProblem::to_string).collect();
    v.join("; ")
}

impl FileHeader {
    /// The 64-byte encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&FILE_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&FILE_VERSION.to_le_bytes());
        let flags = if self.closed { FLAG_CLOSED } else { 0 };
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.master.0.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        b[32..36].copy_from_slice(&self.length.to_le_bytes());
        b[36..44].copy_from_slice(&self.certificate.to_bytes());
        b[44..52].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks one slot; the error names the first broken rule.
    pub fn decode(b: &[u8]) -> Result<FileHeader, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Short(b.len()));
        }
        let stored = le32(b, 60);
        let actual = crc32c::crc32c(&b[..60]);
        if stored != actual {
            return Err(HeaderError::Checksum { stored, actual });
        }
        if le32(b, 0) != FILE_MAGIC {
            return Err(HeaderError::Magic(le32(b, 0)));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != FILE_VERSION {
            return Err(HeaderError::Version(version));
        }
        let flags = u16::from_le_bytes([b[6], b[7]]);
        if flags & !FLAG_CLOSED != 0 || b[52..60].iter().any(|&x| x != 0) {
            return Err(HeaderError::Reserved(flags));
        }
        let h = FileHeader {
            master: ServerId(le64(b, 8)),
            segment_id: le64(b, 16),
            sequence: le64(b, 24),
            length: le32(b, 32),
            certificate: Certificate {
                length: le32(b, 36),
                checksum: le32(b, 40),
            },
            closed: flags & FLAG_CLOSED != 0,
            epoch: le64(b, 44),
        };
        if h.length as usize > MAX_REPLICA_BYTES || h.certificate.length > h.length {
            return Err(HeaderError::Lengths {
                length: h.length,
                certified: h.certificate.length,
            });
        }
        Ok(h)
    }
}

/// The directory holding a master's replica files.
pub fn master_dir(dir: &Path, master: ServerId) -> PathBuf {
    dir.join(format!("{:016x}", master.0))
}

/// The file of one replica.
pub fn replica_path(dir: &Path, master: ServerId, segment_id: u64) -> PathBuf {
    master_dir(dir, master).join(format!("{segment_id}{REPLICA_SUFFIX}"))
}

/// The master named by a master directory's name (16 hex digits), if it is one.
pub fn parse_master_dir(name: &str) -> Option<ServerId> {
    if name.len() != 16 || !name.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(name, 16)
        .ok()
        .filter(|&v| v != 0)
        .map(ServerId)
}

/// The segment named by a replica file's name (`<decimal>.replica`), if it is one.
pub fn parse_replica_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(REPLICA_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `fsync` a directory (makes a created, renamed or removed entry durable).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    super::faults::before_sync();
    File::open(dir)?.sync_all()
}

/// An open replica file.
#[derive(Debug)]
pub struct ReplicaFile {
    file: File,
    path: PathBuf,
    master: ServerId,
    segment_id: u64,
    next_sequence: u64,
    epoch: u64,
}

impl ReplicaFile {
    /// Creates (or truncates) the file of a new, empty replica: an empty header in slot 0
    /// (sequence 0), then `fsync` of the file, its directory and (if created) the backup dir.
    pub fn create(dir: &Path, master: ServerId, segment_id: u64) -> std::io::Result<ReplicaFile> {
        super::faults::before_write()?;
        let mdir = master_dir(dir, master);
        if !mdir.is_dir() {
            std::fs::create_dir_all(&mdir)?;
            sync_dir(dir)?;
        }
        let path = replica_path(dir, master, segment_id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut f = ReplicaFile {
            file,
            path,
            master,
            segment_id,
            next_sequence: 0,
            epoch: 0,
        };
        f.write_header(0, Certificate::default(), false)?;
        sync_dir(&mdir)?;
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The replica epoch the next header records.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Stores `data` at replica offset `offset` and `fdatasync`s it, then records the replica's
    /// new state (`length` bytes written, `certificate`, `closed`) in the next header slot and
    /// `fdatasync`s that. Either step failing leaves the previous header valid.
    pub fn write(
        &mut self,
        offset: usize,
        data: &[u8],
        length: u32,
        certificate: Certificate,
        closed: bool,
    ) -> std::io::Result<()> {
        super::faults::before_write()?;
        if !data.is_empty() {
            self.file.write_all_at(data, DATA_OFFSET + offset as u64)?;
            super::faults::before_sync();
            self.file.sync_data()?;
        }
        self.write_header(length, certificate, closed)
    }

    fn write_header(
        &mut self,
        length: u32,
        certificate: Certificate,
        closed: bool,
    ) -> std::io::Result<()> {
        let next = self.next_sequence.checked_add(1).ok_or_else(|| {
            std::io::Error::other(format!(
                "header sequence of segment {} of master {} is at its maximum",
                self.segment_id, self.master
            ))
        })?;
        let h = FileHeader {
            master: self.master,
            segment_id: self.segment_id,
            sequence: self.next_sequence,
            length,
            certificate,
            closed,
            epoch: self.epoch,
        };
        let slot = SLOT_OFFSETS[(h.sequence % 2) as usize];
        self.file.write_all_at(&h.encode(), slot)?;
        super::faults::before_sync();
        self.file.sync_data()?;
        self.next_sequence = next;
        Ok(())
    }
}

/// A replica read back from its file.
#[derive(Debug)]
pub struct LoadedReplica {
    /// Its bytes: exactly the prefix its certificate covers.
    pub data: Vec<u8>,
    /// The certificate that validated them.
    pub certificate: Certificate,
    /// Closed by its master.
    pub closed: bool,
    /// Its replica epoch.
    pub epoch: u64,
    /// The header slot used was not the newest (a torn or failed last update was dropped).
    pub fell_back: bool,
    /// The file, ready for further writes.
    pub file: ReplicaFile,
}

/// Loads the replica file at `path`, which its name says holds segment `segment_id` of
/// `master`. `validate` checks bytes under a certificate (the segment iterator). The error
/// says why no header slot gave a valid replica.
pub fn load<E: std::fmt::Display>(
    path: &Path,
    master: ServerId,
    segment_id: u64,
    validate: impl Fn(&[u8], Certificate) -> Result<(), E>,
) -> Result<LoadedReplica, LoadError> {
    let io = |op: &str| {
        let op = op.to_string();
        move |source| LoadError::Io { op, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open"))?;
    let size = file.metadata().map_err(io("stat"))?.len();
    let mut headers = Vec::new();
    let mut problems = Vec::new();
    for (slot, &at) in SLOT_OFFSETS.iter().enumerate() {
        let mut b = [0u8; HEADER_LEN];
        match file.read_exact_at(&mut b, at) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                problems.push(SlotProblem::NotWritten(slot));
                continue;
            }
            Err(e) => return Err(io(&format!("read header slot {slot}"))(e)),
        }
        match FileHeader::decode(&b) {
            Ok(h) if h.master != master || h.segment_id != segment_id => {
                problems.push(SlotProblem::WrongSegment {
                    slot,
                    found_segment: h.segment_id,
                    found_master: h.master,
                    segment: segment_id,
                    master,
                })
            }
            Ok(h) if h.sequence % 2 != slot as u64 => problems.push(SlotProblem::WrongSlot {
                slot,
                sequence: h.sequence,
            }),
            Ok(h) => headers.push(h),
            Err(source) => problems.push(SlotProblem::Bad { slot, source }),
        }
    }
    headers.sort_by_key(|h| std::cmp::Reverse(h.sequence));
    for (i, h) in headers.iter().enumerate() {
        let len = h.certificate.length as usize;
        // Lengths were checked against MAX_REPLICA_BYTES by decode; check the file holds them
        // before allocating.
        if len > 0 && DATA_OFFSET + len as u64 > size {
            problems.push(SlotProblem::ShortFile {
                sequence: h.sequence,
                len,
                holds: size.saturating_sub(DATA_OFFSET),
            });
            continue;
        }
        let Some(next_sequence) = h.sequence.checked_add(1) else {
            problems.push(SlotProblem::SequenceExhausted(h.sequence));
            continue;
        };
        let mut data = vec![0u8; len];
        if len > 0 {
            file.read_exact_at(&mut data, DATA_OFFSET)
                .map_err(io(&format!("read {len} data bytes")))?;
        }
        match validate(&data, h.certificate) {
            Ok(()) => {
                return Ok(LoadedReplica {
                    data,
                    certificate: h.certificate,
                    closed: h.closed,
                    epoch: h.epoch,
                    fell_back: i > 0,
                    file: ReplicaFile {
                        file,
                        path: path.to_path_buf(),
                        master,
                        segment_id,
                        next_sequence,
                        epoch: h.epoch,
                    },
                })
            }
            Err(e) => problems.push(SlotProblem::Invalid {
                sequence: h.sequence,
                reason: e.to_string(),
            }),
        }
    }
    Err(LoadError::NoValidHeader(problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_every_bit_flip_is_caught() {
        let h = FileHeader {
            master: ServerId::new(3, 7),
            segment_id: 42,
            sequence: 5,
            length: 100,
            certificate: Certificate {
                length: 90,
                checksum: 0xABCD,
            },
            closed: true,
            epoch: 0x0102_0304_0506_0708,
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b), Ok(h));
        for bit in 0..HEADER_LEN * 8 {
            let mut bad = b;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(FileHeader::decode(&bad).is_err(), "bit {bit}");
        }
        assert!(FileHeader::decode(&b[..10]).is_err());
        let too_long = FileHeader {
            length: MAX_REPLICA_BYTES as u32 + 1,
            ..h
        };
        assert!(FileHeader::decode(&too_long.encode()).is_err());
    }

    #[test]
    fn names_parse() {
        let m = ServerId::new(1, 2);
        let p = replica_path(Path::new("/d"), m, 17);
        assert_eq!(p, Path::new("/d/0000000200000001/17.replica"));
        assert_eq!(parse_master_dir("0000000200000001"), Some(m));
        assert_eq!(parse_master_dir("0000000000000000"), None);
        assert_eq!(parse_master_dir("xyz"), None);
        assert_eq!(parse_master_dir("+000000200000001"), None);
        assert_eq!(parse_replica_name("17.replica"), Some(17));
        assert_eq!(parse_replica_name(".replica"), None);
        assert_eq!(parse_replica_name("17.replica.bad"), None);
        assert_eq!(parse_replica_name("+1.replica"), None);
    }
}
