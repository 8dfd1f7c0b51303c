//! An in-memory store: the reference behaviour of [`ObjectStore`] for unit tests and the
//! simulator. Not for production data (nothing bounds it but the caller).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::store::{check_limit, ObjectStore};
use crate::types::{
    validate_key, ETag, GetResult, GetStream, ListEntry, ListPage, ObjectMeta, ObjectReader,
    Payload, PutMeta, PutResult,
};

/// See the module documentation.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    objects: Mutex<Option<BTreeMap<String, (Bytes, ObjectMeta)>>>,
}

impl MemoryStore {
    /// An empty store whose bucket is called `name`.
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            name: name.to_string(),
            objects: Mutex::new(Some(BTreeMap::new())),
        }
    }

    /// A store whose bucket does not exist: every call fails with [`Error::NoSuchBucket`].
    pub fn missing_bucket(name: &str) -> MemoryStore {
        MemoryStore {
            name: name.to_string(),
            objects: Mutex::new(None),
        }
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.lock().as_ref().map_or(0, BTreeMap::len)
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn no_bucket(&self) -> Error {
        Error::NoSuchBucket {
            store: self.describe(),
            bucket: self.name.clone(),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, (Bytes, ObjectMeta)>) -> T,
    ) -> Result<T> {
        let mut g = self.objects.lock();
        match g.as_mut() {
            Some(m) => Ok(f(m)),
            None => Err(self.no_bucket()),
        }
    }
}

/// A content hash as the ETag (not MD5: the memory store only needs equal bytes → equal tag).
fn etag_of(body: &Payload) -> ETag {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for c in body.chunks() {
        c.hash(&mut h);
    }
    ETag::new(&format!("{:016x}{:08x}", h.finish(), body.len()))
}

impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    fn check(&self) -> Result<()> {
        self.with(|_| ())
    }

    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        validate_key(key, 0)?;
        self.with(|m| match m.get(key) {
            None => GetResult::NotFound,
            Some((_, meta)) if Some(&meta.etag) == if_none_match => GetResult::NotModified,
            Some((body, meta)) => GetResult::Found {
                body: body.clone(),
                meta: meta.clone(),
            },
        })
    }

    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream> {
        Ok(match self.get(key, if_none_match)? {
            GetResult::Found { body, meta } => GetStream::Found(ObjectReader::new(
                meta,
                Box::new(std::io::Cursor::new(body)),
            )),
            GetResult::NotModified => GetStream::NotModified,
            GetResult::NotFound => GetStream::NotFound,
        })
    }

    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult> {
        validate_key(key, 0)?;
        meta.validate()?;
        let etag = etag_of(&body);
        let stored = ObjectMeta {
            etag: etag.clone(),
            len: body.len(),
            content_type: Some(
                meta.content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            last_modified: Some(SystemTime::now()),
            user_meta: meta
                .user_meta
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        };
        let bytes = body.to_bytes();
        self.with(|m| m.insert(key.to_string(), (bytes, stored)))?;
        Ok(PutResult { etag })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key, 0)?;
        self.with(|m| m.get(key).map(|(_, meta)| meta.clone()))
    }

    fn delete(&self, key: &str) -> Result<()> {
        validate_key(key, 0)?;
        self.with(|m| {
            m.remove(key);
        })
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        check_limit(limit)?;
        self.with(|m| {
            let from = start_after.map_or(std::ops::Bound::Unbounded, |s| {
                std::ops::Bound::Excluded(s.to_string())
            });
            let mut entries: Vec<ListEntry> = m
                .range((from, std::ops::Bound::Unbounded))
                .filter(|(k, _)| k.starts_with(prefix))
                .take(limit + 1)
                .map(|(k, (_, meta))| ListEntry {
                    key: k.clone(),
                    len: meta.len,
                    etag: meta.etag.clone(),
                    last_modified: meta.last_modified,
                })
                .collect();
            let next = (entries.len() > limit).then(|| {
                entries.truncate(limit);
                entries[limit - 1].key.clone()
            });
            ListPage { entries, next }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_conditional_list_delete() {
        let s = MemoryStore::new("b");
        let mut meta = PutMeta {
            content_type: Some("image/png".into()),
            ..Default::default()
        };
        meta.user_meta.insert("Width".into(), "640".into());
        let etag = s.put("a/1", b"hello".to_vec().into(), &meta).unwrap().etag;
        let GetResult::Found { body, meta: got } = s.get("a/1", None).unwrap() else {
            panic!("missing")
        };
        assert_eq!(&body[..], b"hello");
        assert_eq!(got.etag, etag);
        assert_eq!(got.user_meta.get("width").map(String::as_str), Some("640"));
        assert_eq!(s.get("a/1", Some(&etag)).unwrap(), GetResult::NotModified);
        assert_eq!(s.get("a/2", None).unwrap(), GetResult::NotFound);
        s.put("a/2", Bytes::new().into(), &PutMeta::default())
            .unwrap();
        s.put("b/1", Bytes::new().into(), &PutMeta::default())
            .unwrap();
        let p = s.list("a/", None, 1).unwrap();
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.next.as_deref(), Some("a/1"));
        let p = s.list("a/", p.next.as_deref(), 5).unwrap();
        assert_eq!(p.entries[0].key, "a/2");
        assert_eq!(p.next, None);
        s.delete("a/1").unwrap();
        s.delete("a/1").unwrap();
        assert_eq!(s.head("a/1").unwrap(), None);
    }

    #[test]
    fn a_missing_bucket_is_an_error() {
        let s = MemoryStore::missing_bucket("nope");
        assert!(matches!(s.check(), Err(Error::NoSuchBucket { .. })));
        assert!(matches!(s.get("k", None), Err(Error::NoSuchBucket { .. })));
    }
}
