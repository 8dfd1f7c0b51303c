//! Object operations on a [`Bucket`], blocking (the front ends call them on the gateway's
//! blocking pool): what the S3 and Swift APIs share.
//!
//! * **Reads** come from the cluster (a hit from DRAM, a miss read through by the master):
//!   the first piece (up to 1 MiB) carries the metadata and length, the rest is read piece by
//!   piece as the response is sent, each checked to be of the same object version.
//! * **Writes** of objects that fit one cached value (about 1 MiB) go to the cluster with
//!   their metadata and follow the table's policy (write-back by default). Larger objects are
//!   written to the store by the gateway itself (after any queued write of the key reached
//!   the store, so the store never ends with an older version), then the cached copy is
//!   dropped; the next read fills the cache.
//! * **Listings** come from the store, after the table's dirty objects were flushed to it, so
//!   a listing shows every acknowledged write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faascache_client::{Error as ClientError, ObjectMeta, ObjectPiece};
use faascache_objstore::{ObjectStore, Payload, PutMeta, MAX_USER_META_BYTES};

use crate::buckets::Bucket;
use crate::error::{GwError, GwResult};

/// Bytes of one piece read from the cluster (the master's limit).
pub const PIECE: u32 = 1 << 20;
/// Objects up to this size are always written to the cluster as one value (the engine's 1 MiB
/// less the most room the key, the envelope and the metadata take); a little larger ones are
/// too when their metadata is small; larger ones go to the store directly.
pub const INLINE_MAX: usize = (1 << 20) - 8 * 1024;
/// How long a large write or a listing waits for the key's (the table's) queued writes to
/// reach the store first.
pub const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// What a reader sees of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// ETag without quotes (MD5 hex for objects written in one piece).
    pub etag: String,
    /// Length in bytes.
    pub len: u64,
    /// Content type (`application/octet-stream` when unknown, as the stores answer).
    pub content_type: String,
    /// Last modified.
    pub last_modified: SystemTime,
    /// User metadata, names in lower case.
    pub user: Vec<(String, String)>,
}

/// The content type the stores give an object written without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl Info {
    fn from_piece(p: &ObjectPiece) -> Info {
        let m = &p.meta;
        Info {
            etag: m.etag.clone(),
            len: p.total_len,
            content_type: if m.content_type.is_empty() {
                DEFAULT_CONTENT_TYPE.to_string()
            } else {
                m.content_type.clone()
            },
            last_modified: UNIX_EPOCH + Duration::from_millis(m.last_modified_ms),
            user: m.user.clone(),
        }
    }
}

/// What a writer sets beside the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMeta {
    /// Content type.
    pub content_type: Option<String>,
    /// User metadata (names are lower-cased here).
    pub user: Vec<(String, String)>,
}

impl NewMeta {
    /// Check the metadata against the stores' limits.
    pub fn validate(&self) -> GwResult<()> {
        let size: usize = self.user.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_USER_META_BYTES {
            return Err(GwError::InvalidArgument(format!(
                "{size} bytes of user metadata; at most {MAX_USER_META_BYTES} are kept"
            )));
        }
        for (k, v) in &self.user {
            let name_ok = !k.is_empty()
                && k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            if !name_ok || v.chars().any(char::is_control) {
                return Err(GwError::InvalidArgument(format!(
                    "user metadata {k:?}: names are ASCII letters, digits, `-` and `_`, values printable"
                )));
            }
        }
        Ok(())
    }
}

/// Running totals of one gateway (shown by its status).
#[derive(Debug, Default)]
pub struct Totals {
    /// Bytes sent to clients.
    pub bytes_out: AtomicU64,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Writes to the store made by the gateway itself (large objects).
    pub direct_puts: AtomicU64,
}

impl Totals {
    /// Add `n` to `c`.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

fn key_str(key: &str) -> GwResult<&[u8]> {
    if key.is_empty() {
        return Err(GwError::InvalidKey("the key is empty".into()));
    }
    Ok(key.as_bytes())
}

/// The first piece (metadata, length, bytes from `offset`, at most `max` of them).
pub fn first_piece(b: &Bucket, key: &str, offset: u64, max: u32) -> GwResult<(Info, ObjectPiece)> {
    let c = b.client();
    let p = c.read_object_piece(b.table, key_str(key)?, offset, max)?;
    Ok((Info::from_piece(&p), p))
}

/// The piece at `offset` of the object `first` started; `Err(Unavailable)` if the object
/// changed meanwhile (a streamed response cannot take back what it sent: the reader retries).
pub fn next_piece(
    b: &Bucket,
    key: &str,
    offset: u64,
    max: u32,
    first: &ObjectPiece,
) -> GwResult<Bytes> {
    let p = b
        .client()
        .read_object_piece(b.table, key_str(key)?, offset, max)?;
    if !p.continues(first) {
        return Err(GwError::Unavailable(
            "the object changed while it was being sent; read it again".into(),
        ));
    }
    if p.data.is_empty() && offset < first.total_len {
        return Err(GwError::Internal(format!(
            "the cluster returned no bytes at offset {offset} of {}",
            first.total_len
        )));
    }
    Ok(p.data.into())
}

/// The object's metadata (one piece of at most 0 bytes is read).
pub fn head(b: &Bucket, key: &str) -> GwResult<Info> {
    Ok(first_piece(b, key, 0, 0)?.0)
}

/// Write `body` (whose MD5 hex is `md5`) as `key` with `meta`; returns the ETag.
pub fn put(b: &Bucket, key: &str, meta: &NewMeta, body: Vec<Bytes>, md5: &str) -> GwResult<String> {
    meta.validate()?;
    let len: usize = body.iter().map(Bytes::len).sum();
    let m = ObjectMeta {
        etag: md5.to_string(),
        content_type: meta.content_type.clone().unwrap_or_default(),
        last_modified_ms: 0,
        user: meta.user.clone(),
    };
    if len + envelope_room(&m) <= VALUE_MAX {
        let mut value = Vec::with_capacity(len);
        for c in &body {
            value.extend_from_slice(c);
        }
        let k = key_str(key)?;
        let r = if b.backing.is_some() {
            b.client().write_object(b.table, k, &m, &value)
        } else {
            // A plain table keeps bytes only: no metadata, no ETag.
            b.client().write(b.table, k, &value)
        };
        match r {
            Ok(_) => return Ok(md5.to_string()),
            Err(ClientError::TooLarge { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    put_direct(b, key, meta, body)
}

/// The largest value the cluster stores (its engine's limit).
const VALUE_MAX: usize = 1 << 20;

/// Bytes a backed-table value needs beside the object's own: the envelope's header and the
/// metadata, with room to spare for the engine's per-object header.
fn envelope_room(m: &ObjectMeta) -> usize {
    let user: usize = m.user.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    256 + m.etag.len() + m.content_type.len() + user
}

/// Write a large object to the store directly, then drop the cached copy.
fn put_direct(b: &Bucket, key: &str, meta: &NewMeta, body: Vec<Bytes>) -> GwResult<String> {
    let Some(store) = &b.store else {
        return Err(GwError::EntityTooLarge(format!(
            "bucket {} has no object store behind it, and objects larger than {INLINE_MAX} bytes are written to the store",
            b.name
        )));
    };
    let k = key_str(key)?;
    // A queued (older) write of the key must reach the store before this one does.
    b.client().flush(b.table, Some(k), FLUSH_WAIT)?;
    let pm = PutMeta {
        content_type: meta.content_type.clone(),
        user_meta: meta.user.iter().cloned().collect(),
    };
    let r = store.put(key, Payload::from(body), &pm)?;
    b.client().invalidate(b.table, k)?;
    Ok(r.etag.as_str().to_string())
}

/// Remove `key` (a removal of a missing key succeeds).
pub fn delete(b: &Bucket, key: &str) -> GwResult<()> {
    match b.client().remove(b.table, key_str(key)?) {
        Ok(_) | Err(ClientError::NoSuchObject) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// Length.
    pub len: u64,
    /// ETag without quotes.
    pub etag: String,
    /// Last modified.
    pub last_modified: Option<SystemTime>,
}

/// A listing page: objects and common prefixes (with a delimiter), in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects.
    pub objects: Vec<Listed>,
    /// Common prefixes (each ends with the delimiter).
    pub prefixes: Vec<String>,
    /// Where the next page starts (`Some`: truncated).
    pub next: Option<String>,
}

/// The most entries a listing returns per page.
pub const MAX_KEYS: usize = 1000;

/// List the objects of `b` whose keys start with `prefix`, after `start_after`, grouping keys
/// that contain `delimiter` after the prefix into common prefixes; at most `max` entries
/// (objects + prefixes).
pub fn list(
    b: &Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
) -> GwResult<Listing> {
    let Some(store) = &b.store else {
        return Err(GwError::InvalidArgument(format!(
            "bucket {} has no object store behind it; listing an ephemeral table is not supported by the gateway (use `faascache` enumerate)",
            b.name
        )));
    };
    b.client().flush(b.table, None, FLUSH_WAIT)?;
    list_store(
        &**store,
        prefix,
        delimiter.filter(|d| !d.is_empty()),
        start_after,
        max.clamp(1, MAX_KEYS),
    )
}

/// The key just after every key that starts with `p` (to skip a common prefix).
fn after_prefix(p: &str) -> String {
    format!("{p}\u{10FFFF}")
}

/// Whether the continuation `c` is a common prefix of a listing of `prefix` grouped by `d`:
/// the prefix, then the rest up to its first delimiter, ending with it. An object named like a
/// folder (`photos/` listed under the prefix `photos/`) is not one.
fn is_common_prefix(c: &str, prefix: &str, d: &str) -> bool {
    c.strip_prefix(prefix)
        .is_some_and(|rest| rest.find(d).is_some_and(|i| i + d.len() == rest.len()))
}

/// The common prefix `key` falls in, if any.
fn group_of(key: &str, prefix: &str, d: &str) -> Option<String> {
    let rest = key.get(prefix.len()..)?;
    rest.find(d)
        .map(|i| key[..prefix.len() + i + d.len()].to_string())
}

/// [`list`] on the store itself.
pub(crate) fn list_store(
    store: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
) -> GwResult<Listing> {
    list_in_pages(store, prefix, delimiter, start_after, max, MAX_KEYS)
}

/// [`list_store`], asking the store for `store_page` keys at a time.
fn list_in_pages(
    store: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
    store_page: usize,
) -> GwResult<Listing> {
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let max = max.max(1);
    let mut out = Listing::default();
    let mut cursor = start_after.map(str::to_string);
    // The common prefix whose keys are being skipped (returned already).
    let mut skipping: Option<String> = None;
    // A continuation at a common prefix already returned skips the rest of it.
    if let (Some(d), Some(c)) = (delimiter, &cursor) {
        if is_common_prefix(c, prefix, d) {
            skipping = Some(c.clone());
            cursor = Some(after_prefix(c));
        }
    }
    let mut last: Option<String> = None;
    loop {
        let page = store.list(prefix, cursor.as_deref(), store_page)?;
        let mut jumped = false;
        for e in page.entries {
            let group = delimiter.and_then(|d| group_of(&e.key, prefix, d));
            // A key sorting after the skip mark yet in the skipped prefix (one with U+10FFFF).
            if group.is_some() && group == skipping {
                continue;
            }
            if out.objects.len() + out.prefixes.len() >= max {
                out.next = last;
                return Ok(out);
            }
            if let Some(p) = group {
                cursor = Some(after_prefix(&p));
                out.prefixes.push(p.clone());
                skipping = Some(p.clone());
                last = Some(p);
                // The store lists the rest of this prefix next: skip it.
                jumped = true;
                break;
            }
            last = Some(e.key.clone());
            cursor = Some(e.key.clone());
            out.objects.push(Listed {
                key: e.key,
                len: e.len,
                etag: e.etag.as_str().to_string(),
                last_modified: e.last_modified,
            });
        }
        if jumped {
            continue;
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests;
