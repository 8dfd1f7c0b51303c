//! Reading replicas for recovery: validation under a certificate, the log digest, filtering a
//! replica's entries by tablet, and the parser the recovery master runs over the result.
//!
//! Pure functions over byte slices (no locking, no I/O). Everything goes through the storage
//! engine's validating [`SegmentIterator`], so a replica is used only if every entry up to its
//! certificate's length has a valid frame and checksum and the frames match the certificate.

use faascache_protocol::msg::control::TabletRange;

use faascache_storage::format::{
    decode_completion, decode_entry_header, decode_object, decode_safe_version, decode_tombstone,
    Certificate, CompletionRecord, Entry, EntryType, ObjectView, SegmentIterator, TombstoneView,
};
use faascache_storage::{key_hash, FormatError};

/// What a valid replica holds that `BackupGetReplicas` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSummary {
    /// The first `LogDigest` entry of the replica (heads start with one), if any.
    pub digest: Option<Vec<u64>>,
}

/// Walks `bytes` under `cert` and checks everything (`SegmentIterator` rules). An empty replica
/// (certificate length 0) holds no segment header and is not valid.
pub fn validate(bytes: &[u8], cert: Certificate) -> Result<ReplicaSummary, FormatError> {
    let mut it = SegmentIterator::new(bytes, Some(cert))?;
    let mut digest = None;
    while let Some(e) = it.next() {
        if let (_, Entry::LogDigest(d)) = e? {
            if digest.is_none() {
                digest = Some(d);
            }
        }
    }
    Ok(ReplicaSummary { digest })
}

fn wanted(ranges: &[TabletRange], table: u32, key: &[u8]) -> bool {
    wanted_hash(ranges, table, key_hash(key))
}

fn wanted_hash(ranges: &[TabletRange], table: u32, hash: u64) -> bool {
    ranges
        .iter()
        .any(|r| r.table_id == u64::from(table) && r.contains(hash))
}

/// Validates the replica (`bytes` under `cert`) and appends to `out` its Object, Tombstone and
/// Completion entries whose (table, key hash) lies in one of `ranges`, and every SafeVersion
/// entry — each
/// entry's header and body exactly as in the log, in log order. On error `out` is left as it
/// was: nothing of an invalid replica is returned.
pub fn filter_recovery_entries(
    bytes: &[u8],
    cert: Certificate,
    ranges: &[TabletRange],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let start = out.len();
    let r = (|| {
        let mut it = SegmentIterator::new(bytes, Some(cert))?;
        loop {
            let Some(e) = it.next() else { return Ok(()) };
            let (offset, entry) = e?;
            let keep = match entry {
                Entry::Object(o) => wanted(ranges, o.table, o.key),
                Entry::Tombstone(t) => wanted(ranges, t.table, t.key),
                Entry::Completion(c) => wanted_hash(ranges, c.table, c.key_hash),
                Entry::SafeVersion(_) => true,
                _ => false,
            };
            if keep {
                out.extend_from_slice(&bytes[offset..it.position()]);
            }
        }
    })();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// One entry of `BackupGetRecoveryData`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryEntry<'a> {
    /// A live-at-the-time object.
    Object(ObjectView<'a>),
    /// A tombstone.
    Tombstone(TombstoneView<'a>),
    /// A safe version: the recovered master's version counter must exceed it.
    SafeVersion(u64),
    /// A tracked mutation's result.
    Completion(CompletionRecord),
}

fn walk<'a>(bytes: &'a [u8], mut f: impl FnMut(RecoveryEntry<'a>)) -> Result<(), FormatError> {
    let mut pos = 0;
    while pos < bytes.len() {
        let h = decode_entry_header(&bytes[pos..], pos)?;
        let end = pos
            .checked_add(h.total_len())
            .filter(|&e| e <= bytes.len())
            .ok_or(FormatError::Truncated {
                offset: pos,
                what: "entry body",
            })?;
        let body = &bytes[pos + h.header_len..end];
        f(match h.ty {
            EntryType::Object => RecoveryEntry::Object(decode_object(body, pos)?),
            EntryType::Tombstone => RecoveryEntry::Tombstone(decode_tombstone(body, pos)?),
            EntryType::SafeVersion => RecoveryEntry::SafeVersion(decode_safe_version(body, pos)?),
            EntryType::Completion => RecoveryEntry::Completion(decode_completion(body, pos)?),
            _ => return Err(FormatError::BadField {
                offset: pos,
                what: "entry type (recovery data holds only objects, tombstones, completion records and safe versions)",
            }),
        });
        pos = end;
    }
    Ok(())
}

/// Parses the `entries` of a `BackupGetRecoveryData` reply: every entry's frame and checksum
/// is verified first, and only if all are valid is `f` called for each, in order. Bad input is
/// an error (never a panic) and then `f` is not called at all.
pub fn for_each_recovery_entry(
    bytes: &[u8],
    f: impl FnMut(RecoveryEntry<'_>),
) -> Result<(), FormatError> {
    walk(bytes, |_| {})?;
    walk(bytes, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_storage::format::encode_entry_header;

    #[test]
    fn hostile_recovery_bytes_are_errors() {
        // Random garbage, truncations, wrong types: typed errors, no call of f.
        let mut body = Vec::new();
        faascache_storage::format::encode_safe_version(&mut body, 7);
        let mut h = [0u8; 5];
        let n = encode_entry_header(EntryType::SafeVersion, body.len(), &mut h);
        let mut good = h[..n].to_vec();
        good.extend_from_slice(&body);
        let mut seen = Vec::new();
        for_each_recovery_entry(&good, |e| seen.push(format!("{e:?}"))).unwrap();
        assert_eq!(seen, vec!["SafeVersion(7)".to_string()]);
        for cut in 1..good.len() {
            let mut called = false;
            assert!(for_each_recovery_entry(&good[..cut], |_| called = true).is_err());
            assert!(!called);
        }
        // A valid entry followed by garbage: f is not called for the valid one either.
        let mut bad = good.clone();
        bad.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        let mut called = false;
        assert!(for_each_recovery_entry(&bad, |_| called = true).is_err());
        assert!(!called);
        // A type recovery data never holds.
        let mut digest = Vec::new();
        faascache_storage::format::encode_log_digest(&mut digest, &[1]);
        let n = encode_entry_header(EntryType::LogDigest, digest.len(), &mut h);
        let mut d = h[..n].to_vec();
        d.extend_from_slice(&digest);
        assert!(for_each_recovery_entry(&d, |_| {}).is_err());
        // A huge declared length.
        assert!(for_each_recovery_entry(&[0xC2, 0xFF, 0xFF, 0xFF, 0xFF], |_| {}).is_err());
        assert!(for_each_recovery_entry(&[], |_| panic!("no entries")).is_ok());
    }
}
