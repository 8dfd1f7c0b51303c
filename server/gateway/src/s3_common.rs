//! What the S3 operations share: the front end's state, running calls on the blocking pool,
//! errors in S3's terms, conditional headers, metadata mapping, and GetObject (first piece,
//! then the rest streamed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use s3s::dto::{self, ETag as S3ETag, ETagCondition, StreamingBlob, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::body;
use crate::error::{GwError, GwResult};
use crate::objects::{self, Info, NewMeta, PIECE};
use crate::shared::Shared;

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
        GwError::BadDigest(m) => (C::BadDigest, m.clone()),
        GwError::SignatureMismatch => (
            C::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.".to_string(),
        ),
        GwError::EntityTooLarge(m) => (C::EntityTooLarge, m.clone()),
        GwError::EntityTooSmall(m) => (C::EntityTooSmall, m.clone()),
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

/// The owner shown in listings: the signing access key, as Swift's s3api shows it.
pub(crate) fn owner(c: Option<&s3s::auth::Credentials>) -> dto::Owner {
    let name = c.map_or_else(|| "anonymous".to_string(), |c| c.access_key.clone());
    dto::Owner {
        display_name: Some(name.clone()),
        id: Some(name),
    }
}

/// What S3 gives an object PUT without a content type.
pub(crate) const S3_DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

pub(crate) fn etag(s: &str) -> Option<S3ETag> {
    (!s.is_empty()).then(|| S3ETag::Strong(s.to_string()))
}

pub(crate) fn user_meta(info: &Info) -> Option<dto::Metadata> {
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

/// The conditional headers of a GET or HEAD, each evaluated on its own as Swift's s3api does
/// (a failed `If-Match` or `If-Unmodified-Since` is 412, then a matching `If-None-Match` or an
/// unchanged `If-Modified-Since` is 304), stricter than RFC 9110's "If-Match wins".
#[derive(Debug, Default, Clone)]
pub(crate) struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

impl Conditions {
    /// The four conditional headers (or the four `x-amz-copy-source-if-*` of a copy).
    pub(crate) fn new(
        if_match: Option<ETagCondition>,
        if_none_match: Option<ETagCondition>,
        if_modified_since: Option<Timestamp>,
        if_unmodified_since: Option<Timestamp>,
    ) -> Conditions {
        Conditions {
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
        }
    }

    pub(crate) fn check(&self, info: &Info) -> GwResult<()> {
        let modified = secs(info.last_modified);
        let failed = self
            .if_match
            .as_ref()
            .is_some_and(|c| !matches(c, &info.etag))
            || self
                .if_unmodified_since
                .as_ref()
                .is_some_and(|t| modified > ts_secs(t));
        if failed {
            return Err(GwError::PreconditionFailed);
        }
        let current = self
            .if_none_match
            .as_ref()
            .is_some_and(|c| matches(c, &info.etag))
            || self
                .if_modified_since
                .as_ref()
                .is_some_and(|t| modified <= ts_secs(t));
        if current {
            return Err(GwError::NotModified);
        }
        Ok(())
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
    pub(crate) async fn get(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let i = req.input;
        let cond = Conditions::new(
            i.if_match,
            i.if_none_match,
            i.if_modified_since,
            i.if_unmodified_since,
        );
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
        // The bytes leave the piece (no copy); what identifies the object stays for the rest.
        let mut first = first;
        let mut data = std::mem::take(&mut first.data);
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

    use std::time::{Duration, UNIX_EPOCH};

    /// Last modified at 1,700,000,000.4 s (headers carry whole seconds).
    const MODIFIED: u64 = 1_700_000_000;

    fn info() -> Info {
        Info {
            etag: "abc".into(),
            len: 3,
            content_type: "text/plain".into(),
            last_modified: UNIX_EPOCH + Duration::from_millis(MODIFIED * 1000 + 400),
            user: Vec::new(),
        }
    }

    fn at(secs: u64) -> Option<Timestamp> {
        Some(Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs)))
    }

    fn tag(t: &str) -> Option<ETagCondition> {
        Some(ETagCondition::ETag(S3ETag::Strong(t.into())))
    }

    /// What `check` answers: "200", "304" or "412".
    fn answer(c: &Conditions) -> &'static str {
        match c.check(&info()) {
            Ok(()) => "200",
            Err(GwError::NotModified) => "304",
            Err(GwError::PreconditionFailed) => "412",
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn each_condition_alone() {
        let (past, now, future) = (at(MODIFIED - 60), at(MODIFIED), at(MODIFIED + 60));
        let cases = [
            (Conditions::default(), "200"),
            // If-Match: the ETag, `*`, another.
            (
                Conditions {
                    if_match: tag("abc"),
                    ..Default::default()
                },
                "200",
            ),
            (
                Conditions {
                    if_match: Some(ETagCondition::Any),
                    ..Default::default()
                },
                "200",
            ),
            (
                Conditions {
                    if_match: tag("xyz"),
                    ..Default::default()
                },
                "412",
            ),
            // If-None-Match: the ETag, `*`, another.
            (
                Conditions {
                    if_none_match: tag("abc"),
                    ..Default::default()
                },
                "304",
            ),
            (
                Conditions {
                    if_none_match: Some(ETagCondition::Any),
                    ..Default::default()
                },
                "304",
            ),
            (
                Conditions {
                    if_none_match: tag("xyz"),
                    ..Default::default()
                },
                "200",
            ),
            // If-Modified-Since: before, at (the same second), after.
            (
                Conditions {
                    if_modified_since: past.clone(),
                    ..Default::default()
                },
                "200",
            ),
            (
                Conditions {
                    if_modified_since: now.clone(),
                    ..Default::default()
                },
                "304",
            ),
            (
                Conditions {
                    if_modified_since: future.clone(),
                    ..Default::default()
                },
                "304",
            ),
            // If-Unmodified-Since: before, at, after.
            (
                Conditions {
                    if_unmodified_since: past,
                    ..Default::default()
                },
                "412",
            ),
            (
                Conditions {
                    if_unmodified_since: now,
                    ..Default::default()
                },
                "200",
            ),
            (
                Conditions {
                    if_unmodified_since: future,
                    ..Default::default()
                },
                "200",
            ),
        ];
        for (i, (c, want)) in cases.iter().enumerate() {
            assert_eq!(answer(c), *want, "case {i}: {c:?}");
        }
    }

    #[test]
    fn combinations_are_each_evaluated_as_swift_does() {
        let (past, future) = (at(MODIFIED - 60), at(MODIFIED + 60));
        let cases = [
            // A matching If-Match does not excuse a failed If-Unmodified-Since (RFC 9110 would
            // ignore the date).
            (
                Conditions {
                    if_match: tag("abc"),
                    if_unmodified_since: past.clone(),
                    ..Default::default()
                },
                "412",
            ),
            // A non-matching If-None-Match does not excuse an unchanged If-Modified-Since (RFC
            // 9110 would ignore the date).
            (
                Conditions {
                    if_none_match: tag("xyz"),
                    if_modified_since: future.clone(),
                    ..Default::default()
                },
                "304",
            ),
            (
                Conditions {
                    if_none_match: tag("xyz"),
                    if_modified_since: past.clone(),
                    ..Default::default()
                },
                "200",
            ),
            // 412 is decided before 304.
            (
                Conditions {
                    if_match: tag("xyz"),
                    if_none_match: tag("abc"),
                    ..Default::default()
                },
                "412",
            ),
            (
                Conditions {
                    if_unmodified_since: past.clone(),
                    if_modified_since: future.clone(),
                    ..Default::default()
                },
                "412",
            ),
            (
                Conditions {
                    if_match: tag("abc"),
                    if_none_match: tag("abc"),
                    ..Default::default()
                },
                "304",
            ),
            (
                Conditions {
                    if_match: tag("abc"),
                    if_none_match: tag("xyz"),
                    if_modified_since: past.clone(),
                    if_unmodified_since: future.clone(),
                },
                "200",
            ),
            (
                Conditions {
                    if_match: Some(ETagCondition::Any),
                    if_none_match: tag("xyz"),
                    if_modified_since: future,
                    if_unmodified_since: past,
                },
                "412",
            ),
        ];
        for (i, (c, want)) in cases.iter().enumerate() {
            assert_eq!(answer(c), *want, "case {i}: {c:?}");
        }
    }
}
