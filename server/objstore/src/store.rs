//! The [`ObjectStore`] trait: what FaaSCache needs of S3 and Swift, blocking.

use std::fmt::Debug;

use bytes::Bytes;

use crate::error::Result;
use crate::types::{
    read_all, validate_key, ETag, GetResult, GetStream, ListPage, ObjectMeta, Payload, PutMeta,
    PutResult,
};
use crate::upload::PutStream;

/// One bucket or container (and a key prefix within it), seen through one API.
///
/// What every implementation guarantees:
/// * **Blocking, thread-safe.** Any thread may call any method; a call returns when the store
///   has answered or the configured timeout passed (then [`crate::Error::Timeout`]). A call
///   must not be made from inside a tokio runtime (the network backends run their own).
/// * **Keys** are checked by [`crate::validate_key`] before anything is sent; the store URL's
///   prefix is added and removed by the store, never seen by the caller.
/// * **Atomic puts.** A `put` that returns an error stored nothing new *or* the whole object
///   (the store may have committed it before the answer was lost): the caller retries, and a
///   retry writes the same bytes. A reader never sees part of an object.
/// * **No hidden retries of failures that need the caller:** [`crate::Error::is_retryable`] says
///   which errors a retry may fix; ordering, back-off and coalescing belong to the caller
///   (the write-back worker), as do single flight and negative caching of reads.
/// * **404 is an answer**, not an error: [`GetResult::NotFound`], `head` → `None`, and
///   `delete` of a missing object succeeds. A missing bucket/container is an error
///   ([`crate::Error::NoSuchBucket`]) wherever the store tells it apart (always in
///   [`ObjectStore::check`], `put` and `list`).
/// * **Conditional reads**: `if_none_match = Some(etag)` answers
///   [`GetResult::NotModified`] when the object's ETag is still `etag`.
pub trait ObjectStore: Send + Sync + Debug {
    /// The store as `s3://bucket/prefix at ENDPOINT` (never a secret), for messages.
    fn describe(&self) -> String;

    /// Verify the credentials and that the bucket/container exists (one cheap request).
    fn check(&self) -> Result<()>;

    /// Read a whole object into one buffer (one copy of its bytes).
    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        match self.get_stream(key, if_none_match)? {
            GetStream::Found(reader) => {
                let meta = reader.meta().clone();
                let body = read_all(reader, meta.len).map_err(crate::io_to_error)?;
                Ok(GetResult::Found { body, meta })
            }
            GetStream::NotModified => Ok(GetResult::NotModified),
            GetStream::NotFound => Ok(GetResult::NotFound),
        }
    }

    /// Read an object as a stream: its metadata first, its bytes as they arrive (for large
    /// objects, which are copied once, into wherever the caller puts them).
    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream>;

    /// Write a whole object (replacing any), with its content type and user metadata.
    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult>;

    /// Write an object piece by piece with a bounded buffer ([`crate::PutStream`]; the
    /// default collects it and makes one `put`). The key and metadata are checked first.
    fn put_stream(&self, key: &str, meta: &PutMeta) -> Result<Box<dyn PutStream + '_>> {
        validate_key(key, 0)?;
        meta.validate()?;
        Ok(Box::new(Buffered::new(self, key, meta)))
    }

    /// An object's metadata, or `None` if there is no such object.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Delete an object; deleting a missing object succeeds.
    fn delete(&self, key: &str) -> Result<()>;

    /// Create the bucket or container; `Ok(true)` if it was created, `Ok(false)` if it
    /// existed. Stores that cannot (S3 through `object_store`, which has no bucket API) answer
    /// [`crate::Error::Config`] saying so.
    fn create_bucket(&self) -> Result<bool> {
        Err(crate::Error::Config(format!(
            "{} cannot create buckets through FaaSCache: create it with the store's own tools",
            self.describe()
        )))
    }

    /// Up to `limit` (1..=[`crate::MAX_LIST_LIMIT`]) objects whose keys start with `prefix`
    /// (a plain string prefix, not a directory), after `start_after`, in key order.
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage>;
}

impl<S: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn check(&self) -> Result<()> {
        (**self).check()
    }
    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        (**self).get(key, if_none_match)
    }
    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream> {
        (**self).get_stream(key, if_none_match)
    }
    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult> {
        (**self).put(key, body, meta)
    }
    fn put_stream(&self, key: &str, meta: &PutMeta) -> Result<Box<dyn PutStream + '_>> {
        (**self).put_stream(key, meta)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        (**self).head(key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        (**self).list(prefix, start_after, limit)
    }
    fn create_bucket(&self) -> Result<bool> {
        (**self).create_bucket()
    }
}

/// Check a listing's `limit`.
pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > crate::MAX_LIST_LIMIT {
        return Err(crate::Error::Config(format!(
            "a listing asks for 1..={} objects, not {limit}",
            crate::MAX_LIST_LIMIT
        )));
    }
    Ok(())
}

/// A [`PutStream`] that collects the object and makes one `put` of it (for stores with no
/// streaming write of their own: the memory store, tests).
#[derive(Debug)]
pub struct Buffered<'a, S: ObjectStore + ?Sized> {
    store: &'a S,
    key: String,
    meta: PutMeta,
    chunks: Vec<Bytes>,
}

impl<'a, S: ObjectStore + ?Sized> Buffered<'a, S> {
    /// A stream writing `key` of `store` at the end.
    pub fn new(store: &'a S, key: &str, meta: &PutMeta) -> Self {
        Buffered {
            store,
            key: key.to_string(),
            meta: meta.clone(),
            chunks: Vec::new(),
        }
    }
}

impl<S: ObjectStore + ?Sized> PutStream for Buffered<'_, S> {
    fn write(&mut self, data: Bytes) -> Result<()> {
        if !data.is_empty() {
            self.chunks.push(data);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<PutResult> {
        let Buffered {
            store,
            key,
            meta,
            chunks,
        } = *self;
        store.put(&key, Payload::from(chunks), &meta)
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn a_buffered_stream_stores_on_finish_only() {
        let m = MemoryStore::new("b");
        let mut w = m.put_stream("k", &PutMeta::default()).unwrap();
        w.write(Bytes::from_static(b"hello ")).unwrap();
        w.write_part(Payload::from(b"world".to_vec())).unwrap();
        assert!(matches!(m.get("k", None).unwrap(), GetResult::NotFound));
        w.finish().unwrap();
        match m.get("k", None).unwrap() {
            GetResult::Found { body, .. } => assert_eq!(&body[..], b"hello world"),
            other => panic!("{other:?}"),
        }
        let mut w = m.put_stream("gone", &PutMeta::default()).unwrap();
        w.write(Bytes::from_static(b"x")).unwrap();
        w.abort();
        assert!(matches!(m.get("gone", None).unwrap(), GetResult::NotFound));
    }
}
