//! The values every backend shares: keys and their rules, ETags, object metadata, payloads,
//! the answers of `get`, `put` and `list`, and the streaming reader for large objects.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::time::SystemTime;

use bytes::Bytes;

pub(crate) use crate::error::shorten;
use crate::error::{Error, Result};

/// The longest key, prefix included (S3's and Swift's limit: 1024 bytes of UTF-8).
pub const MAX_KEY_LEN: usize = 1024;
/// The most user-metadata bytes (names + values) on one object: S3 allows 2 KiB of
/// `x-amz-meta-*`, Swift 4 KiB of `X-Object-Meta-*`; the smaller one holds everywhere.
pub const MAX_USER_META_BYTES: usize = 2048;
/// The largest buffer a backend allocates in advance from a length the store announced; a
/// larger body grows as its bytes arrive.
pub const MAX_PREALLOC: usize = 8 << 20;

/// Check `key` against the rules every backend accepts: 1..=1024 bytes (with the store URL's
/// prefix), no control characters, no leading or trailing `/`, no empty, `.` or `..` segment
/// (S3 would take some of these, but `object_store` paths and Swift's URLs cannot carry them
/// unchanged, so one rule set keeps a key portable between backends).
pub fn validate_key(key: &str, prefix_len: usize) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidKey {
            key: shorten(key),
            why: why.to_string(),
        })
    };
    if key.is_empty() {
        return bad("the key is empty");
    }
    if key.len() + prefix_len > MAX_KEY_LEN {
        return bad(&format!(
            "{} bytes with the store prefix; object stores allow at most {MAX_KEY_LEN}",
            key.len() + prefix_len
        ));
    }
    if key.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("it starts or ends with `/`");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("it has an empty, `.` or `..` path segment");
    }
    Ok(())
}

/// An entity tag as the store computes it (MD5 of the body for plain objects on both APIs),
/// without the surrounding quotes S3 puts on the wire.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(String);

impl ETag {
    /// From a header value: surrounding quotes and a weak `W/` marker are dropped.
    pub fn new(raw: &str) -> ETag {
        let t = raw.trim();
        let t = t.strip_prefix("W/").unwrap_or(t);
        ETag(t.trim_matches('"').to_string())
    }
    /// The tag without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The tag as an `If-None-Match` / `If-Match` header value: quoted.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store keeps beside an object's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its entity tag.
    pub etag: ETag,
    /// Its length in bytes.
    pub len: u64,
    /// `Content-Type`, if the store reports one.
    pub content_type: Option<String>,
    /// `Last-Modified` (whole seconds on both APIs).
    pub last_modified: Option<SystemTime>,
    /// User metadata (`x-amz-meta-*`, `X-Object-Meta-*`): names in lower case.
    pub user_meta: BTreeMap<String, String>,
}

/// What a writer sets beside the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutMeta {
    /// `Content-Type` (the store's default, usually `application/octet-stream`, if `None`).
    pub content_type: Option<String>,
    /// User metadata. Names: ASCII letters, digits and `-`, stored in lower case (HTTP header
    /// names are case-insensitive, and both APIs hand them back lower-cased or title-cased;
    /// Swift's WSGI turns `_` into `-`). Values: printable ASCII without leading or trailing
    /// spaces (the stores trim them). At most [`MAX_USER_META_BYTES`] in all.
    pub user_meta: BTreeMap<String, String>,
}

impl PutMeta {
    /// Check the metadata against the rules above.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, why: &str| {
            Err(Error::InvalidMetadata {
                name: shorten(name),
                why: why.to_string(),
            })
        };
        let mut total = 0;
        for (k, v) in &self.user_meta {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return bad(k, "a name must be ASCII letters, digits or `-`");
            }
            if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) || v.trim() != v {
                return bad(
                    k,
                    "a value must be printable ASCII without leading or trailing spaces (encode other text first)",
                );
            }
            total += k.len() + v.len();
        }
        if total > MAX_USER_META_BYTES {
            return bad(
                "(all)",
                &format!("{total} bytes of user metadata; the limit is {MAX_USER_META_BYTES}"),
            );
        }
        if let Some(ct) = &self.content_type {
            if ct.is_empty() || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return bad("content-type", "must be non-empty printable ASCII");
            }
        }
        Ok(())
    }
}

/// An object's bytes to upload: one or more chunks, sent in order without being joined (a
/// 64 MiB value kept as 1 MiB pieces is uploaded without a 64 MiB copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(Vec<Bytes>);

impl Payload {
    /// The chunks.
    pub fn chunks(&self) -> &[Bytes] {
        &self.0
    }
    /// The chunks, owned.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.0
    }
    /// Total length.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|c| c.len() as u64).sum()
    }
    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All bytes in one buffer (a copy unless there is at most one chunk).
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len() as usize);
                for c in many {
                    v.extend_from_slice(c);
                }
                v.into()
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Payload {
        Payload(vec![b])
    }
}
impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload(vec![v.into()])
    }
}
impl From<&'static [u8]> for Payload {
    fn from(v: &'static [u8]) -> Payload {
        Payload(vec![Bytes::from_static(v)])
    }
}
impl From<Vec<Bytes>> for Payload {
    fn from(v: Vec<Bytes>) -> Payload {
        Payload(v)
    }
}

/// The answer of a whole-object read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetResult {
    /// The object, in one buffer, and its metadata.
    Found {
        /// Its bytes.
        body: Bytes,
        /// Its metadata.
        meta: ObjectMeta,
    },
    /// The request named the object's current ETag (`If-None-Match`): unchanged.
    NotModified,
    /// No such object (the bucket exists, or the store did not say it does not).
    NotFound,
}

/// The answer of a streaming read.
#[derive(Debug)]
pub enum GetStream {
    /// The object: read its bytes from the reader.
    Found(ObjectReader),
    /// Unchanged (see [`GetResult::NotModified`]).
    NotModified,
    /// No such object.
    NotFound,
}

/// The body of an object being read: [`Read`] it. Each read waits at most the store's
/// timeout for the next bytes; an error mid-way is an `io::Error` wrapping [`Error`].
pub struct ObjectReader {
    meta: ObjectMeta,
    inner: Box<dyn Read + Send>,
}

impl ObjectReader {
    /// A reader over `inner` for an object with `meta`.
    pub fn new(meta: ObjectMeta, inner: Box<dyn Read + Send>) -> ObjectReader {
        ObjectReader { meta, inner }
    }
    /// The object's metadata (known before its bytes).
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// The answer of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The ETag the store gave the new object.
    pub etag: ETag,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Its key (without the store URL's prefix).
    pub key: String,
    /// Its length.
    pub len: u64,
    /// Its ETag.
    pub etag: ETag,
    /// When it was last written.
    pub last_modified: Option<SystemTime>,
}

/// A page of a listing, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects.
    pub entries: Vec<ListEntry>,
    /// `Some(key)`: there may be more; pass it as `start_after` for the next page.
    pub next: Option<String>,
}

/// The most objects one `list` call returns (both APIs' page limit).
pub const MAX_LIST_LIMIT: usize = 1000;

/// Read `reader` to its end into one buffer, preallocating at most [`MAX_PREALLOC`].
pub(crate) fn read_all(mut reader: impl Read, expected: u64) -> std::io::Result<Bytes> {
    let cap = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .min(MAX_PREALLOC);
    let mut v = Vec::with_capacity(cap);
    reader.read_to_end(&mut v)?;
    Ok(v.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_portable_rules() {
        assert!(validate_key("a", 0).is_ok());
        assert!(validate_key("photos/2024/cat 1.jpg", 0).is_ok());
        assert!(validate_key(&"k".repeat(1024), 0).is_ok());
        for bad in ["", "/a", "a/", "a//b", "a/./b", "../x", "a\nb", "a\u{0}"] {
            let e = validate_key(bad, 0).unwrap_err();
            assert!(matches!(e, Error::InvalidKey { .. }), "{bad:?}: {e}");
        }
        let e = validate_key(&"k".repeat(1000), 30).unwrap_err();
        assert!(e.to_string().contains("1030 bytes"), "{e}");
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(ETag::new("\"abc\"").as_str(), "abc");
        assert_eq!(ETag::new("W/\"abc\""), ETag::new("abc"));
        assert_eq!(ETag::new("abc").quoted(), "\"abc\"");
    }

    #[test]
    fn metadata_rules() {
        let mut m = PutMeta::default();
        m.user_meta.insert("colour-space".into(), "sRGB".into());
        assert!(m.validate().is_ok());
        m.user_meta.insert("bad name".into(), "x".into());
        assert!(matches!(m.validate(), Err(Error::InvalidMetadata { .. })));
        let mut m = PutMeta::default();
        m.user_meta.insert("k".into(), "é".into());
        assert!(m.validate().is_err());
        let mut m = PutMeta::default();
        m.user_meta
            .insert("k".into(), "v".repeat(MAX_USER_META_BYTES));
        assert!(m.validate().is_err());
    }

    #[test]
    fn payload_chunks_join_only_when_asked() {
        let p = Payload::from(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")]);
        assert_eq!(p.len(), 3);
        assert_eq!(&p.to_bytes()[..], b"abc");
        assert!(Payload::default().is_empty());
    }
}
