//! The S3 API on `s3s`: s3s parses requests, checks signatures (SigV4 in headers, presigned
//! URLs and streaming chunks) and writes S3's XML; this module maps each operation to the
//! blocking object operations of [`crate::objects`], run on the gateway's blocking pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use s3s::dto::{self, ETag as S3ETag, ETagCondition, StreamingBlob, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::body;
use crate::error::{GwError, GwResult};
use crate::objects::{self, Info, NewMeta, PIECE};
use crate::Shared;

/// The S3 front end.
#[derive(Debug, Clone)]
pub struct S3Front {
    pub(crate) gw: Arc<Shared>,
}

/// Run `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> GwResult<T> + Send + 'static,
) -> S3Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(to_s3),
        Err(e) => Err(S3Error::with_message(
            S3ErrorCode::InternalError,
            format!("gateway task failed: {e}"),
        )),
    }
}

/// A gateway error in S3's terms.
pub(crate) fn to_s3(e: GwError) -> S3Error {
    use S3ErrorCode as C;
    let (code, msg) = match &e {
        GwError::NoSuchBucket(_) => (
            C::NoSuchBucket,
            "The specified bucket does not exist".to_string(),
        ),
        GwError::NoSuchKey => (
            C::NoSuchKey,
            "The specified key does not exist.".to_string(),
        ),
        GwError::NoSuchUpload(_) => (
            C::NoSuchUpload,
            "The specified multipart upload does not exist.".to_string(),
        ),
        GwError::InvalidPart(m) => (C::InvalidPart, m.clone()),
        GwError::InvalidPartOrder => (C::InvalidPartOrder, e.to_string()),
        GwError::AccessDenied(m) => (C::AccessDenied, m.clone()),
        GwError::InvalidArgument(m) | GwError::InvalidKey(m) => (C::InvalidArgument, m.clone()),
        GwError::PreconditionFailed => (C::PreconditionFailed, e.to_string()),
        GwError::NotModified => (C::NotModified, e.to_string()),
        GwError::InvalidRange(_) => (C::InvalidRange, e.to_string()),
        GwError::EntityTooLarge(m) => (C::EntityTooLarge, m.clone()),
        GwError::SlowDown(m) => (C::SlowDown, m.clone()),
        GwError::Unavailable(m) => (C::ServiceUnavailable, m.clone()),
        GwError::StoreRejected(m) => (C::AccessDenied, format!("the object store refused: {m}")),
        GwError::Internal(m) => {
            tracing::error!(error = %m, "gateway: internal error");
            (C::InternalError, m.clone())
        }
    };
    let mut err = S3Error::with_message(code, msg);
    if matches!(e, GwError::NotModified) {
        err.set_status_code(http::StatusCode::NOT_MODIFIED);
    }
    err
}

fn etag(s: &str) -> Option<S3ETag> {
    (!s.is_empty()).then(|| S3ETag::Strong(s.to_string()))
}

fn user_meta(info: &Info) -> Option<dto::Metadata> {
    (!info.user.is_empty()).then(|| info.user.iter().cloned().collect::<HashMap<_, _>>())
}

pub(crate) fn new_meta(content_type: Option<String>, metadata: Option<dto::Metadata>) -> NewMeta {
    let mut user: Vec<(String, String)> = metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    user.sort();
    NewMeta { content_type, user }
}

/// Whole seconds (what `Last-Modified` and the `If-*-Since` headers carry).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ts_secs(t: &Timestamp) -> u64 {
    let t: time::OffsetDateTime = t.clone().into();
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(t) => t.value() == etag,
    }
}

/// The conditional headers of a GET or HEAD, evaluated as S3 does (RFC 9110 order: If-Match,
/// else If-Unmodified-Since; then If-None-Match, else If-Modified-Since).
#[derive(Debug, Default, Clone)]
pub(crate) struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

impl Conditions {
    pub(crate) fn check(&self, info: &Info) -> GwResult<()> {
        let modified = secs(info.last_modified);
        match (&self.if_match, &self.if_unmodified_since) {
            (Some(c), _) if !matches(c, &info.etag) => return Err(GwError::PreconditionFailed),
            (None, Some(t)) if modified > ts_secs(t) => return Err(GwError::PreconditionFailed),
            _ => {}
        }
        match (&self.if_none_match, &self.if_modified_since) {
            (Some(c), _) if matches(c, &info.etag) => Err(GwError::NotModified),
            (None, Some(t)) if modified <= ts_secs(t) => Err(GwError::NotModified),
            _ => Ok(()),
        }
    }
}

/// Where a GET starts and how many bytes it wants, from its Range header.
fn range_start(r: Option<&dto::Range>) -> u64 {
    match r {
        Some(dto::Range::Int { first, .. }) => *first,
        _ => 0,
    }
}

impl S3Front {
    async fn get(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let i = req.input;
        let cond = Conditions {
            if_match: i.if_match,
            if_none_match: i.if_none_match,
            if_modified_since: i.if_modified_since,
            if_unmodified_since: i.if_unmodified_since,
        };
        let range = i.range;
        let gw = self.gw.clone();
        let (bucket, key) = (i.bucket, i.key);
        let start = range_start(range.as_ref());
        let (info, first, b) = {
            let key = key.clone();
            blocking(move || {
                let b = gw.buckets.get(&bucket)?;
                let (info, first) = match range {
                    // A suffix range needs the length first.
                    Some(dto::Range::Suffix { .. }) => {
                        let info = objects::head(&b, &key)?;
                        let from = range
                            .as_ref()
                            .and_then(|r| r.check(info.len).ok())
                            .map_or(0, |r| r.start);
                        objects::first_piece(&b, &key, from, PIECE)?
                    }
                    _ => objects::first_piece(&b, &key, start, PIECE)?,
                };
                cond.check(&info)?;
                Ok((info, first, b))
            })
            .await?
        };
        let total = info.len;
        let span = match &range {
            None => 0..total,
            Some(r) => r
                .check(total)
                .map_err(|_| to_s3(GwError::InvalidRange(total)))?,
        };
        let mut out = dto::GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(span.end - span.start).unwrap_or(i64::MAX)),
            content_type: Some(info.content_type.clone()),
            e_tag: etag(&info.etag),
            last_modified: Some(Timestamp::from(info.last_modified)),
            metadata: user_meta(&info),
            ..Default::default()
        };
        if range.is_some() {
            out.content_range = Some(format!(
                "bytes {}-{}/{total}",
                span.start,
                span.end.saturating_sub(1)
            ));
        }
        let mut data = first.data.clone();
        data.truncate((span.end - span.start) as usize);
        crate::objects::Totals::add(&self.gw.totals.bytes_out, span.end - span.start);
        if span.start + data.len() as u64 >= span.end {
            out.body = Some(StreamingBlob::from(s3s::Body::from(bytes::Bytes::from(
                data,
            ))));
        } else {
            let (feed, piped) = body::pipe();
            let sent = span.start + data.len() as u64;
            let _ = feed.try_send(Ok(data.into()));
            let end = span.end;
            tokio::task::spawn_blocking(move || stream_rest(&b, &key, sent, end, &first, &feed));
            out.body = Some(StreamingBlob::wrap(piped));
        }
        let mut resp = S3Response::new(out);
        if range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }
}

/// Send the pieces `[from, end)` of the object `first` began to `feed`; stops when the
/// reader goes away. A failure ends the body early (the client sees a short response).
pub(crate) fn stream_rest(
    b: &crate::buckets::Bucket,
    key: &str,
    mut from: u64,
    end: u64,
    first: &faascache_client::ObjectPiece,
    feed: &body::Feed,
) {
    while from < end {
        let want = u32::try_from((end - from).min(u64::from(PIECE))).unwrap_or(PIECE);
        match objects::next_piece(b, key, from, want, first) {
            Ok(bytes) => {
                from += bytes.len() as u64;
                if feed.blocking_send(Ok(bytes)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "gateway: streaming an object failed");
                let _ = feed.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.gw.ops.count("GetObject");
        self.get(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.gw.ops.count("HeadObject");
        let i = req.input;
        let cond = Conditions {
            if_match: i.if_match,
            if_none_match: i.if_none_match,
            if_modified_since: i.if_modified_since,
            if_unmodified_since: i.if_unmodified_since,
        };
        let gw = self.gw.clone();
        let info = blocking(move || {
            let info = gw.buckets.with(&i.bucket, |b| objects::head(b, &i.key))?;
            cond.check(&info)?;
            Ok(info)
        })
        .await?;
        Ok(S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(info.len).unwrap_or(i64::MAX)),
            content_type: Some(info.content_type.clone()),
            e_tag: etag(&info.etag),
            last_modified: Some(Timestamp::from(info.last_modified)),
            metadata: user_meta(&info),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.gw.ops.count("PutObject");
        let i = req.input;
        let declared = i.content_length.and_then(|l| u64::try_from(l).ok());
        let up = match i.body {
            Some(b) => body::read(b, declared, &self.gw.budget)
                .await
                .map_err(to_s3)?,
            None => body::read(
                futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
                Some(0),
                &self.gw.budget,
            )
            .await
            .map_err(to_s3)?,
        };
        if let Some(md5) = &i.content_md5 {
            check_md5(md5, &up.md5)?;
        }
        crate::objects::Totals::add(&self.gw.totals.bytes_in, up.len);
        let meta = new_meta(i.content_type, i.metadata);
        let gw = self.gw.clone();
        let (bucket, key) = (i.bucket, i.key);
        let etag_s = blocking(move || {
            let body::Upload {
                chunks,
                md5_hex,
                grant,
                ..
            } = up;
            let r = gw
                .buckets
                .with(&bucket, |b| objects::put(b, &key, &meta, chunks, &md5_hex));
            drop(grant);
            r
        })
        .await?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: etag(&etag_s),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.gw.ops.count("DeleteObject");
        let i = req.input;
        let gw = self.gw.clone();
        blocking(move || gw.buckets.with(&i.bucket, |b| objects::delete(b, &i.key))).await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.gw.ops.count("DeleteObjects");
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "a DeleteObjects request names at most 1000 keys",
            ));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let gw = self.gw.clone();
        let out = blocking(move || {
            let b = gw.buckets.get(&i.bucket)?;
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            for o in i.delete.objects {
                match objects::delete(&b, &o.key) {
                    Ok(()) => {
                        if !quiet {
                            deleted.push(dto::DeletedObject {
                                key: Some(o.key),
                                ..Default::default()
                            });
                        }
                    }
                    Err(e) => {
                        let s3e = to_s3(e);
                        errors.push(dto::Error {
                            code: Some(s3e.code().as_str().to_string()),
                            key: Some(o.key),
                            message: s3e.message().map(str::to_string),
                            version_id: None,
                        });
                    }
                }
            }
            Ok(dto::DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: (!errors.is_empty()).then_some(errors),
                ..Default::default()
            })
        })
        .await?;
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.gw.ops.count("CopyObject");
        crate::s3_more::copy_object(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.gw.ops.count("ListObjectsV2");
        crate::s3_more::list_objects_v2(self, req).await
    }

    async fn list_buckets(
        &self,
        _req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.gw.ops.count("ListBuckets");
        crate::s3_more::list_buckets(self).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.gw.ops.count("HeadBucket");
        let gw = self.gw.clone();
        let name = req.input.bucket;
        blocking(move || gw.buckets.get(&name).map(|_| ())).await?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.gw.ops.count("CreateBucket");
        let gw = self.gw.clone();
        let name = req.input.bucket;
        let created = blocking(move || gw.buckets.create(&name)).await?;
        if !created {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            ));
        }
        Ok(S3Response::new(dto::CreateBucketOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.gw.ops.count("CreateMultipartUpload");
        crate::multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.gw.ops.count("UploadPart");
        crate::multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.gw.ops.count("CompleteMultipartUpload");
        crate::multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.gw.ops.count("AbortMultipartUpload");
        crate::multipart::abort(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.gw.ops.count("ListParts");
        crate::multipart::list_parts(self, req).await
    }
}

/// Check a `Content-MD5` header (base64 of the MD5) against the body's.
pub(crate) fn check_md5(header: &str, md5: &[u8; 16]) -> S3Result<()> {
    let want = base64_md5(md5);
    if header.trim() != want {
        return Err(S3Error::with_message(
            S3ErrorCode::BadDigest,
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    Ok(())
}

/// Base64 (standard, padded) of 16 bytes.
fn base64_md5(b: &[u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(24);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                s.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_md5() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e, base64 1B2M2Y8AsgTpgAmY7PhCfg==
        let md5 = [
            0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
            0x42, 0x7e,
        ];
        assert_eq!(base64_md5(&md5), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
