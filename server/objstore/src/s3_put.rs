//! The streaming write of [`S3Store`] (see [`crate::upload`]): one plain PUT for an object
//! that ends within a part, else a multipart upload through `object_store`'s
//! `MultipartUpload`, one part uploading while the next fills.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    Attributes, MultipartUpload, ObjectStore as _, PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::runtime::Rt;
use crate::s3::S3Store;
use crate::types::{ETag, Payload, PutResult};
use crate::upload::{PutStream, PART_SIZE};

/// A streamed S3 write; see the module documentation.
pub(crate) struct S3Put {
    rt: Arc<Rt>,
    s3: Arc<AmazonS3>,
    path: Path,
    key: String,
    bucket: String,
    attributes: Attributes,
    /// Bytes written and not yet sent as a part.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// The multipart upload, once a part had to be sent.
    upload: Option<Box<dyn MultipartUpload>>,
    /// The part being uploaded.
    in_flight: Option<JoinHandle<object_store::Result<()>>>,
}

impl S3Store {
    /// A streamed write of `key` (already checked) with `attributes`.
    pub(crate) fn start_put(&self, key: &str, path: Path, attributes: Attributes) -> S3Put {
        S3Put {
            rt: self.rt.clone(),
            s3: self.s3.clone(),
            path,
            key: key.to_string(),
            bucket: self.url.bucket.clone(),
            attributes,
            pending: Vec::new(),
            pending_len: 0,
            upload: None,
            in_flight: None,
        }
    }
}

impl S3Put {
    fn error(&self, e: &object_store::Error) -> Error {
        if matches!(e, object_store::Error::NotFound { .. }) {
            return Error::NoSuchBucket {
                store: self.rt.store.clone(),
                bucket: self.bucket.clone(),
            };
        }
        crate::s3::map_error(&self.rt.store, &self.bucket, &self.key, e, self.rt.timeout)
    }

    /// Wait for the part in flight, if any.
    fn wait_part(&mut self) -> Result<()> {
        let Some(h) = self.in_flight.take() else {
            return Ok(());
        };
        let r = self.rt.run("PUT part", async move {
            h.await.map_err(|e| Error::Unavailable {
                store: "object store".into(),
                detail: format!("a part upload stopped: {e}"),
                retryable: true,
            })
        })?;
        r.map_err(|e| self.error(&e))
    }

    /// Send `chunks` as the next part (starting the multipart upload if this is the first).
    fn send_part(&mut self, chunks: Vec<Bytes>) -> Result<()> {
        if self.upload.is_none() {
            let (s3, path) = (self.s3.clone(), self.path.clone());
            let opts = PutMultipartOptions {
                attributes: self.attributes.clone(),
                ..Default::default()
            };
            let r = self.rt.run("start multipart upload", async move {
                Ok(s3.put_multipart_opts(&path, opts).await)
            })?;
            self.upload = Some(r.map_err(|e| self.error(&e))?);
        }
        // At most one part uploads while the next one fills.
        self.wait_part()?;
        let payload: PutPayload = chunks.into_iter().collect();
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        let part = upload.put_part(payload);
        self.in_flight = Some(self.rt.spawn(part));
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.send_part(chunks)
    }

    /// Abort without blocking (on drop, or after a failure).
    fn abort_now(&mut self) {
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
        if let Some(mut u) = self.upload.take() {
            self.rt.spawn(async move {
                let _ = u.abort().await;
            });
        }
        self.pending.clear();
    }
}

impl PutStream for S3Put {
    fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= PART_SIZE {
            if let Err(e) = self.flush_pending() {
                self.abort_now();
                return Err(e);
            }
        }
        Ok(())
    }

    fn keeps_parts(&self) -> bool {
        true
    }

    fn write_part(&mut self, part: Payload) -> Result<()> {
        let r = self
            .flush_pending()
            .and_then(|()| self.send_part(part.into_chunks()));
        if r.is_err() {
            self.abort_now();
        }
        r
    }

    fn finish(mut self: Box<Self>) -> Result<PutResult> {
        if self.upload.is_none() {
            // Within one part: a plain PUT (its ETag the MD5 of the bytes).
            let payload: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
            let opts = PutOptions {
                attributes: self.attributes.clone(),
                ..Default::default()
            };
            let (s3, path) = (self.s3.clone(), self.path.clone());
            let r = self.rt.run(
                "PUT",
                async move { Ok(s3.put_opts(&path, payload, opts).await) },
            )?;
            return match r {
                Ok(r) => Ok(PutResult {
                    etag: ETag::new(r.e_tag.as_deref().unwrap_or("")),
                }),
                Err(e) => Err(self.error(&e)),
            };
        }
        let r = self.flush_pending().and_then(|()| self.wait_part());
        if let Err(e) = r {
            self.abort_now();
            return Err(e);
        }
        let Some(mut upload) = self.upload.take() else {
            return Err(Error::Protocol {
                store: self.rt.store.clone(),
                detail: "a multipart upload vanished".into(),
            });
        };
        let r = self.rt.run("complete multipart upload", async {
            Ok(upload.complete().await)
        });
        match r {
            Ok(Ok(r)) => Ok(PutResult {
                etag: ETag::new(r.e_tag.as_deref().unwrap_or("")),
            }),
            Ok(Err(e)) => {
                self.upload = Some(upload);
                let err = self.error(&e);
                self.abort_now();
                Err(err)
            }
            Err(e) => {
                self.upload = Some(upload);
                self.abort_now();
                Err(e)
            }
        }
    }

    fn abort(mut self: Box<Self>) {
        self.abort_now();
    }
}

impl Drop for S3Put {
    fn drop(&mut self) {
        self.abort_now();
    }
}
