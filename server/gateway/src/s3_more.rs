//! The S3 operations beyond single objects: CopyObject, ListObjectsV2, ListBuckets.

use std::time::SystemTime;

use s3s::dto::{self, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::error::GwError;
use crate::objects::{self, NewMeta, PIECE};
use crate::s3_common::{blocking, Conditions, S3Front};

/// CopyObject: read the source (within the gateway's buffer budget), write the target with
/// the source's metadata (`COPY`, the default) or the request's (`REPLACE`).
pub(crate) async fn copy_object(
    f: &S3Front,
    req: S3Request<dto::CopyObjectInput>,
) -> S3Result<S3Response<dto::CopyObjectOutput>> {
    let i = req.input;
    let (src_bucket, src_key) = match &i.copy_source {
        dto::CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
        _ => {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "copying from an access point is not supported",
            ))
        }
    };
    let replace = i
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
    if !replace && src_bucket == i.bucket && src_key == i.key {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let cond = Conditions::new(
        i.copy_source_if_match,
        i.copy_source_if_none_match,
        i.copy_source_if_modified_since,
        i.copy_source_if_unmodified_since,
    );
    let gw = f.gw.clone();
    let (content_type, metadata, bucket, key) = (i.content_type, i.metadata, i.bucket, i.key);
    let (etag, modified) = blocking(move || {
        let src = gw.buckets.get(&src_bucket)?;
        let (info, first) = objects::first_piece(&src, &src_key, 0, PIECE)?;
        // A failed copy condition is a 412 whichever header it was.
        cond.check(&info).map_err(|e| match e {
            GwError::NotModified => GwError::PreconditionFailed,
            e => e,
        })?;
        let grant = gw.budget.take(info.len)?;
        let mut chunks = vec![bytes::Bytes::from(first.data.clone())];
        let mut at = first.data.len() as u64;
        while at < info.len {
            let b = objects::next_piece(&src, &src_key, at, PIECE, &first)?;
            at += b.len() as u64;
            chunks.push(b);
        }
        let md5 = {
            use md5::{Digest, Md5};
            let mut h = Md5::new();
            for c in &chunks {
                h.update(c);
            }
            let d: [u8; 16] = h.finalize().into();
            crate::body::hex(&d)
        };
        let meta = if replace {
            crate::s3_common::new_meta(content_type, metadata)
        } else {
            NewMeta {
                content_type: Some(info.content_type.clone()),
                user: info.user.clone(),
            }
        };
        let etag = gw
            .buckets
            .with(&bucket, |b| objects::put(b, &key, &meta, chunks, &md5))?;
        drop(grant);
        Ok((etag, SystemTime::now()))
    })
    .await?;
    Ok(S3Response::new(dto::CopyObjectOutput {
        copy_object_result: Some(dto::CopyObjectResult {
            e_tag: Some(dto::ETag::Strong(etag)),
            last_modified: Some(Timestamp::from(modified)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// ListObjectsV2 over the store (after a flush of the table's dirty objects). The
/// continuation token is the last key (or common prefix) returned.
pub(crate) async fn list_objects_v2(
    f: &S3Front,
    req: S3Request<dto::ListObjectsV2Input>,
) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
    let i = req.input;
    let start = i
        .continuation_token
        .clone()
        .or_else(|| i.start_after.clone());
    let q = Query {
        bucket: i.bucket.clone(),
        prefix: i.prefix.clone().unwrap_or_default(),
        delimiter: i.delimiter.clone(),
        start,
        max: i.max_keys.unwrap_or(1000),
    };
    let max = q.max;
    let page = fetch(f, q).await?;
    let key_count = (page.objects.len() + page.prefixes.len()) as i32;
    let enc = encoder(i.encoding_type.as_ref());
    let (contents, prefixes) = entries(page.objects, page.prefixes, &enc, None);
    Ok(S3Response::new(dto::ListObjectsV2Output {
        name: Some(i.bucket),
        prefix: Some(enc(i.prefix.unwrap_or_default())),
        max_keys: Some(max),
        key_count: Some(key_count),
        continuation_token: i.continuation_token,
        is_truncated: Some(page.next.is_some()),
        next_continuation_token: page.next,
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        delimiter: i.delimiter.map(&enc),
        encoding_type: i.encoding_type,
        start_after: i.start_after.map(&enc),
        ..Default::default()
    }))
}

/// ListObjects (version 1): the same listing with a marker; every entry names its owner.
pub(crate) async fn list_objects_v1(
    f: &S3Front,
    req: S3Request<dto::ListObjectsInput>,
) -> S3Result<S3Response<dto::ListObjectsOutput>> {
    let owner = crate::s3_common::owner(req.credentials.as_ref());
    let i = req.input;
    let q = Query {
        bucket: i.bucket.clone(),
        prefix: i.prefix.clone().unwrap_or_default(),
        delimiter: i.delimiter.clone(),
        start: i.marker.clone(),
        max: i.max_keys.unwrap_or(1000),
    };
    let max = q.max;
    let page = fetch(f, q).await?;
    let enc = encoder(i.encoding_type.as_ref());
    let truncated = page.next.is_some();
    let next_marker = page.next.filter(|_| i.delimiter.is_some()).map(&enc);
    let (contents, prefixes) = entries(page.objects, page.prefixes, &enc, Some(&owner));
    Ok(S3Response::new(dto::ListObjectsOutput {
        name: Some(i.bucket),
        prefix: Some(enc(i.prefix.unwrap_or_default())),
        marker: Some(enc(i.marker.unwrap_or_default())),
        next_marker,
        max_keys: Some(max),
        is_truncated: Some(truncated),
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        delimiter: i.delimiter.map(&enc),
        encoding_type: i.encoding_type,
        ..Default::default()
    }))
}

/// ListBuckets: the cluster's tables.
pub(crate) async fn list_buckets(
    f: &S3Front,
    owner: Option<String>,
) -> S3Result<S3Response<dto::ListBucketsOutput>> {
    let owner = owner.unwrap_or_else(|| "anonymous".into());
    let gw = f.gw.clone();
    let names = blocking(move || gw.buckets.list()).await?;
    let started = Timestamp::from(f.gw.started);
    let buckets = names
        .into_iter()
        .filter(|n| !n.starts_with(crate::multipart::TABLE_PREFIX))
        .map(|n| dto::Bucket {
            name: Some(n),
            creation_date: Some(started.clone()),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(dto::ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(dto::Owner {
            display_name: Some(owner.clone()),
            id: Some(owner),
        }),
        ..Default::default()
    }))
}

/// What a listing asks for.
struct Query {
    bucket: String,
    prefix: String,
    delimiter: Option<String>,
    start: Option<String>,
    max: i32,
}

/// One page of a listing (none for `max-keys=0`).
async fn fetch(f: &S3Front, q: Query) -> S3Result<objects::Listing> {
    if q.max < 0 {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "max-keys must be a non-negative integer",
        ));
    }
    if q.max == 0 {
        return Ok(objects::Listing::default());
    }
    let gw = f.gw.clone();
    blocking(move || {
        gw.buckets.with(&q.bucket, |b| {
            objects::list(
                b,
                &q.prefix,
                q.delimiter.as_deref(),
                q.start.as_deref(),
                q.max as usize,
            )
        })
    })
    .await
}

/// Names as the listing returns them: percent-encoded (`/` kept) for `encoding-type=url`,
/// which boto3 asks for.
fn encoder(t: Option<&dto::EncodingType>) -> impl Fn(String) -> String {
    let url = t.is_some_and(|e| e.as_str() == dto::EncodingType::URL);
    move |s: String| if url { url_encode(&s) } else { s }
}

/// A listing page's objects and common prefixes as S3 lists them (names through `enc`; each
/// object with `owner` when given: ListObjects v1 names it, v2 does not unless asked).
fn entries(
    objects: Vec<objects::Listed>,
    prefixes: Vec<String>,
    enc: &dyn Fn(String) -> String,
    owner: Option<&dto::Owner>,
) -> (Vec<dto::Object>, Vec<dto::CommonPrefix>) {
    let contents = objects
        .into_iter()
        .map(|o| dto::Object {
            e_tag: Some(dto::ETag::Strong(o.etag)),
            key: Some(enc(o.key)),
            last_modified: o.last_modified.map(Timestamp::from),
            size: Some(i64::try_from(o.len).unwrap_or(i64::MAX)),
            owner: owner.cloned(),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect();
    let prefixes = prefixes
        .into_iter()
        .map(|p| dto::CommonPrefix {
            prefix: Some(enc(p)),
        })
        .collect();
    (contents, prefixes)
}

/// Percent-encode everything but RFC 3986's unreserved characters and `/` (what S3 and
/// Swift's s3api do for `encoding-type=url`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        assert_eq!(super::url_encode("a/b c+d%é"), "a/b%20c%2Bd%25%C3%A9");
    }
}
