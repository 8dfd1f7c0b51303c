//! Multipart uploads, staged in the cluster so any gateway of the cluster can take any part
//! and a gateway restart loses nothing:
//!
//! * `faascache-gateway-uploads` (a plain table): one record per upload at key `UPLOAD_ID` —
//!   the bucket, key, content type, user metadata, start time and the parts received so far
//!   (number → ETag, size, chunk count), as JSON, updated with a conditional write (version
//!   check, retried) so parts uploaded at once are all kept;
//! * `faascache-gateway-parts` (an ephemeral table, TTL 7 days, so abandoned parts go
//!   away): part `N` of an upload as chunks of at most [`CHUNK`] bytes at
//!   `UPLOAD_ID/N/I`.
//!
//! Completion reads the parts named, in order, checks their ETags, writes the object like a
//! PUT (the cluster for small objects, the store for large ones) and removes the staging
//! keys. The object's ETag is the MD5 of its bytes (what the store gives the single PUT the
//! gateway makes), not S3's `MD5-of-MD5s-N` (see `docs/faas.md`).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faascache_client::{Client, Error as ClientError, RejectRules, WriteOptions};
use faascache_objstore::{Payload, PutMeta};
use md5::{Digest, Md5};
use s3s::dto::{self, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde_json::{json, Value};

use crate::body;
use crate::buckets::Bucket;
use crate::error::{GwError, GwResult};
use crate::objects::{self, NewMeta};
use crate::s3_common::{blocking, to_s3, S3Front};
use crate::staging::Uploads;
pub use crate::staging::TABLE_PREFIX;

/// Bytes of one staged chunk (one cluster value with room for its envelope).
pub const CHUNK: usize = (1 << 20) - 8 * 1024;
/// S3's limits.
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_PART_SIZE: u64 = 5 << 30;
const MIN_PART_SIZE: u64 = 5 << 20;
/// Conditional updates of a record before giving up (each lost race is another part landing).
const CAS_TRIES: usize = 64;

fn new_upload_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn chunk_key(id: &str, part: i32, i: usize) -> String {
    format!("{id}/{part}/{i}")
}

/// The record of `id`, with its version; `NoSuchUpload` if there is none, or if it belongs
/// to another bucket or key.
fn record(c: &Client, u: &Uploads, id: &str, bucket: &str, key: &str) -> GwResult<(Value, u64)> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GwError::NoSuchUpload(id.to_string()));
    }
    let o = match c.read(u.records, id.as_bytes()) {
        Ok(o) => o,
        Err(ClientError::NoSuchObject) => return Err(GwError::NoSuchUpload(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    let v: Value = serde_json::from_slice(&o.value)
        .map_err(|e| GwError::Internal(format!("upload record {id} does not parse: {e}")))?;
    if v["bucket"] != bucket || v["key"] != key {
        return Err(GwError::NoSuchUpload(id.to_string()));
    }
    Ok((v, o.version))
}

fn only_if_version(v: u64) -> WriteOptions {
    WriteOptions::default().reject(RejectRules {
        doesnt_exist: true,
        version_ne_given: true,
        given_version: v,
        ..RejectRules::NONE
    })
}

pub(crate) async fn create(
    f: &S3Front,
    req: S3Request<dto::CreateMultipartUploadInput>,
) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
    let i = req.input;
    let meta = crate::s3_common::new_meta(i.content_type, i.metadata);
    meta.validate().map_err(to_s3)?;
    let gw = f.gw.clone();
    let (bucket, key) = (i.bucket, i.key);
    let id = new_upload_id();
    {
        let (bucket, key, id) = (bucket.clone(), key.clone(), id.clone());
        blocking(move || {
            gw.buckets.get(&bucket)?;
            let u = gw.uploads()?;
            let rec = json!({
                "bucket": bucket, "key": key, "content_type": meta.content_type,
                "user": meta.user, "initiated_ms": now_ms(), "parts": {},
            });
            gw.buckets
                .client()
                .write(u.records, id.as_bytes(), rec.to_string().as_bytes())?;
            Ok(())
        })
        .await?;
    }
    Ok(S3Response::new(dto::CreateMultipartUploadOutput {
        bucket: Some(bucket),
        key: Some(key),
        upload_id: Some(id),
        ..Default::default()
    }))
}

pub(crate) async fn upload_part(
    f: &S3Front,
    req: S3Request<dto::UploadPartInput>,
) -> S3Result<S3Response<dto::UploadPartOutput>> {
    let i = req.input;
    if !(1..=MAX_PART_NUMBER).contains(&i.part_number) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    let declared = i.content_length.and_then(|l| u64::try_from(l).ok());
    if declared.is_some_and(|d| d > MAX_PART_SIZE) {
        return Err(to_s3(GwError::EntityTooLarge(
            "a part is at most 5 GiB".into(),
        )));
    }
    let sums = crate::checksum::hasher_for(&req.headers);
    let up = match i.body {
        Some(b) => body::read(b, declared, &f.gw.budget, sums)
            .await
            .map_err(to_s3)?,
        None => {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                "UploadPart needs a body",
            ))
        }
    };
    if let Some(md5) = &i.content_md5 {
        crate::s3_common::check_md5(md5, &up.md5)?;
    }
    let trailers = req.trailing_headers.and_then(|t| t.take());
    crate::checksum::verify(&up.checksums, &req.headers, trailers.as_ref()).map_err(to_s3)?;
    let gw = f.gw.clone();
    let etag = up.md5_hex.clone();
    let (bucket, key, id, n) = (i.bucket, i.key, i.upload_id, i.part_number);
    blocking(move || {
        let c = gw.buckets.client();
        let u = gw.uploads()?;
        record(c, u, &id, &bucket, &key)?;
        // Staged in values of at most CHUNK bytes, cut from the body as it arrived (one
        // value's copy at a time, not a second copy of the part).
        let mut count = 0usize;
        let mut piece: Vec<u8> =
            Vec::with_capacity(CHUNK.min(up.chunks.iter().map(|c| c.len()).sum()));
        for mut chunk in up.chunks.iter().cloned() {
            while !chunk.is_empty() {
                let k = (CHUNK - piece.len()).min(chunk.len());
                piece.extend_from_slice(&chunk.split_to(k));
                if piece.len() == CHUNK {
                    c.write(u.parts, chunk_key(&id, n, count).as_bytes(), &piece)?;
                    count += 1;
                    piece.clear();
                }
            }
        }
        if !piece.is_empty() || count == 0 {
            c.write(u.parts, chunk_key(&id, n, count).as_bytes(), &piece)?;
            count += 1;
        }
        let entry =
            json!({"etag": up.md5_hex, "size": up.len, "chunks": count, "modified_ms": now_ms()});
        for _ in 0..CAS_TRIES {
            let (mut rec, version) = record(c, u, &id, &bucket, &key)?;
            rec["parts"][n.to_string()] = entry.clone();
            match c.write_with(
                u.records,
                id.as_bytes(),
                rec.to_string().as_bytes(),
                &only_if_version(version),
            ) {
                Ok(_) => return Ok(()),
                Err(ClientError::VersionMismatch { .. }) => continue,
                Err(ClientError::NoSuchObject) => return Err(GwError::NoSuchUpload(id.clone())),
                Err(e) => return Err(e.into()),
            }
        }
        Err(GwError::SlowDown(format!(
            "upload {id}: {CAS_TRIES} concurrent part updates in a row; retry the part"
        )))
    })
    .await?;
    Ok(S3Response::new(dto::UploadPartOutput {
        e_tag: Some(dto::ETag::Strong(etag)),
        ..Default::default()
    }))
}

/// The parts of a record: number → (ETag, size, chunks, modified ms).
fn parts_of(rec: &Value) -> BTreeMap<i32, (String, u64, usize, u64)> {
    let mut out = BTreeMap::new();
    if let Some(m) = rec["parts"].as_object() {
        for (k, v) in m {
            if let Ok(n) = k.parse::<i32>() {
                out.insert(
                    n,
                    (
                        v["etag"].as_str().unwrap_or_default().to_string(),
                        v["size"].as_u64().unwrap_or(0),
                        v["chunks"].as_u64().unwrap_or(0) as usize,
                        v["modified_ms"].as_u64().unwrap_or(0),
                    ),
                );
            }
        }
    }
    out
}

/// Remove an upload's staged chunks and its record (best effort: the TTL removes leftovers).
fn discard(c: &Client, u: &Uploads, id: &str, rec: &Value) {
    for (n, (_, _, chunks, _)) in parts_of(rec) {
        for ci in 0..chunks {
            let _ = c.remove(u.parts, chunk_key(id, n, ci).as_bytes());
        }
    }
    let _ = c.remove(u.records, id.as_bytes());
}

pub(crate) async fn complete(
    f: &S3Front,
    req: S3Request<dto::CompleteMultipartUploadInput>,
) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let i = req.input;
    let named: Vec<(i32, String)> = i
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.part_number.unwrap_or(0),
                p.e_tag
                    .map(|t| t.value().trim_matches('"').to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    if named.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: a completion names at least one part",
        ));
    }
    if named.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(to_s3(GwError::InvalidPartOrder));
    }
    let gw = f.gw.clone();
    let (bucket, key, id) = (i.bucket, i.key, i.upload_id);
    let (b2, k2) = (bucket.clone(), key.clone());
    let etag = blocking(move || {
        let c = gw.buckets.client();
        let u = gw.uploads()?;
        let (rec, _) = record(c, u, &id, &bucket, &key)?;
        let have = parts_of(&rec);
        let mut total = 0u64;
        for (idx, (n, etag)) in named.iter().enumerate() {
            match have.get(n) {
                Some((_, size, _, _)) if idx + 1 < named.len() && *size < MIN_PART_SIZE => {
                    return Err(GwError::EntityTooSmall(format!(
                        "Your proposed upload is smaller than the minimum allowed object size: part {n} has {size} bytes; every part but the last needs at least {MIN_PART_SIZE}"
                    )))
                }
                Some((e, size, _, _)) if e == etag => total += size,
                _ => {
                    return Err(GwError::InvalidPart(format!(
                        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {n})"
                    )))
                }
            }
        }
        let meta = NewMeta {
            content_type: Some(
                rec["content_type"]
                    .as_str()
                    .unwrap_or(crate::objects::DEFAULT_CONTENT_TYPE)
                    .to_string(),
            ),
            user: serde_json::from_value(rec["user"].clone()).unwrap_or_default(),
        };
        let parts: Vec<Staged> = named
            .iter()
            .map(|(n, _)| {
                let (etag, size, chunks, _) = &have[n];
                Staged { n: *n, etag: etag.clone(), size: *size, chunks: *chunks }
            })
            .collect();
        let etag = multipart_etag(&parts)?;
        let largest = parts.iter().map(|p| p.size).max().unwrap_or(0).min(ALIGN_MAX);
        let grant = gw.budget.take(2 * largest + CHUNK as u64)?;
        gw.buckets
            .with(&bucket, |b| assemble(b, u, &id, &key, &meta, &parts, total))?;
        drop(grant);
        discard(c, u, &id, &rec);
        Ok(etag)
    })
    .await?;
    Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
        location: Some(format!("http://{host}/{b2}/{k2}")),
        bucket: Some(b2),
        key: Some(k2),
        e_tag: Some(dto::ETag::Strong(etag)),
        ..Default::default()
    }))
}

/// A part named by a completion, as staged.
struct Staged {
    n: i32,
    etag: String,
    size: u64,
    chunks: usize,
}

/// Parts up to this size keep their boundaries in an S3 store (each is held whole while it
/// uploads, two at most); larger ones are re-cut into the store's own parts (the store's
/// ETag then differs from the completion's; docs/faas.md).
const ALIGN_MAX: u64 = 64 << 20;

/// S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, then `-N`.
fn multipart_etag(parts: &[Staged]) -> GwResult<String> {
    let mut h = Md5::new();
    for p in parts {
        let raw = (0..p.etag.len())
            .step_by(2)
            .map(|i| {
                p.etag
                    .get(i..i + 2)
                    .and_then(|x| u8::from_str_radix(x, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .filter(|r| r.len() == 16)
            .ok_or_else(|| {
                GwError::Internal(format!("part {} has no MD5 ETag: {:?}", p.n, p.etag))
            })?;
        h.update(&raw);
    }
    Ok(format!("{}-{}", body::hex(&h.finalize()), parts.len()))
}

/// Read part `p`'s staged chunk `ci`.
fn staged_chunk(c: &Client, u: &Uploads, id: &str, p: &Staged, ci: usize) -> GwResult<Bytes> {
    match c.read_object(u.parts, chunk_key(id, p.n, ci).as_bytes()) {
        Ok((_, data, _)) => Ok(Bytes::from(data)),
        Err(ClientError::NoSuchObject) => Err(GwError::InvalidPart(format!(
            "part {} of upload {id} is no longer staged (expired); upload it again",
            p.n
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Write the completed object: streamed part by part into the store (one store part per
/// part where the store has parts), or, for a bucket without a store, into the cluster when
/// it fits one value.
fn assemble(
    b: &Bucket,
    u: &Uploads,
    id: &str,
    key: &str,
    meta: &NewMeta,
    parts: &[Staged],
    total: u64,
) -> GwResult<()> {
    let c = b.client();
    let check = |p: &Staged, h: Md5| -> GwResult<()> {
        if body::hex(&h.finalize()) != p.etag {
            return Err(GwError::InvalidPart(format!(
                "part {} of upload {id} changed while staged; upload it again",
                p.n
            )));
        }
        Ok(())
    };
    let Some(store) = &b.store else {
        if total > objects::INLINE_MAX as u64 {
            return Err(GwError::EntityTooLarge(format!(
                "bucket {} has no object store behind it, and objects larger than {} bytes are written to the store",
                b.name,
                objects::INLINE_MAX
            )));
        }
        let (mut chunks, mut whole) = (Vec::new(), Md5::new());
        for p in parts {
            let mut h = Md5::new();
            for ci in 0..p.chunks {
                let data = staged_chunk(c, u, id, p, ci)?;
                h.update(&data);
                whole.update(&data);
                chunks.push(data);
            }
            check(p, h)?;
        }
        objects::put(b, key, meta, chunks, &body::hex(&whole.finalize()))?;
        return Ok(());
    };
    meta.validate()?;
    let k = key.as_bytes();
    // A queued (older) write of the key must reach the store before this one does.
    c.flush(b.table, Some(k), objects::FLUSH_WAIT)?;
    let pm = PutMeta {
        content_type: meta.content_type.clone(),
        user_meta: meta.user.iter().cloned().collect(),
    };
    let mut w = store.put_stream(key, &pm)?;
    let mut aligned = w.keeps_parts();
    for p in parts {
        aligned &= p.size <= ALIGN_MAX;
        let mut h = Md5::new();
        let mut held = Vec::new();
        for ci in 0..p.chunks {
            let data = staged_chunk(c, u, id, p, ci)?;
            h.update(&data);
            if aligned {
                held.push(data);
            } else {
                w.write(data)?;
            }
        }
        // Checked before the part is sent (a streamed one: before the object is committed).
        check(p, h)?;
        if aligned {
            w.write_part(Payload::from(held))?;
        }
    }
    w.finish()?;
    c.invalidate(b.table, k)?;
    Ok(())
}

pub(crate) async fn abort(
    f: &S3Front,
    req: S3Request<dto::AbortMultipartUploadInput>,
) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
    let i = req.input;
    let gw = f.gw.clone();
    blocking(move || {
        let c = gw.buckets.client();
        let u = gw.uploads()?;
        let (rec, _) = record(c, u, &i.upload_id, &i.bucket, &i.key)?;
        discard(c, u, &i.upload_id, &rec);
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
}

pub(crate) async fn list_parts(
    f: &S3Front,
    req: S3Request<dto::ListPartsInput>,
) -> S3Result<S3Response<dto::ListPartsOutput>> {
    let owner = crate::s3_common::owner(req.credentials.as_ref());
    let i = req.input;
    let gw = f.gw.clone();
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
    let marker = i.part_number_marker.unwrap_or(0);
    let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
    let rec = blocking(move || {
        let u = gw.uploads()?;
        Ok(record(gw.buckets.client(), u, &id, &bucket, &key)?.0)
    })
    .await?;
    let all: Vec<_> = parts_of(&rec)
        .into_iter()
        .filter(|(n, _)| *n > marker)
        .collect();
    let truncated = all.len() > max;
    let parts: Vec<dto::Part> = all
        .iter()
        .take(max)
        .map(|(n, (etag, size, _, ms))| dto::Part {
            e_tag: Some(dto::ETag::Strong(etag.clone())),
            last_modified: Some(Timestamp::from(
                UNIX_EPOCH + std::time::Duration::from_millis(*ms),
            )),
            part_number: Some(*n),
            size: Some(i64::try_from(*size).unwrap_or(i64::MAX)),
            ..Default::default()
        })
        .collect();
    let next = parts.last().and_then(|p| p.part_number);
    Ok(S3Response::new(dto::ListPartsOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(i.upload_id),
        is_truncated: Some(truncated),
        max_parts: Some(max as i32),
        part_number_marker: Some(marker),
        initiator: Some(dto::Initiator {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
        }),
        owner: Some(owner),
        storage_class: Some(dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
        next_part_number_marker: next,
        parts: Some(parts),
        ..Default::default()
    }))
}

/// ListMultipartUploads: the uploads of `bucket` not yet completed or aborted, by key then
/// start time (read from the records table; at most 1000).
pub(crate) async fn list_uploads(
    f: &S3Front,
    req: S3Request<dto::ListMultipartUploadsInput>,
) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
    let owner = crate::s3_common::owner(req.credentials.as_ref());
    let i = req.input;
    let gw = f.gw.clone();
    let (bucket, prefix) = (i.bucket.clone(), i.prefix.clone().unwrap_or_default());
    let mut found = blocking(move || {
        gw.buckets.get(&bucket)?;
        let u = gw.uploads()?;
        let mut out = Vec::new();
        for e in gw.buckets.client().enumerate(u.records) {
            let e = e?;
            let Ok(v) = serde_json::from_slice::<Value>(&e.value) else {
                continue;
            };
            let key = v["key"].as_str().unwrap_or_default().to_string();
            if v["bucket"] == bucket.as_str() && key.starts_with(&prefix) {
                let id = String::from_utf8_lossy(&e.key).into_owned();
                out.push((key, v["initiated_ms"].as_u64().unwrap_or(0), id));
            }
        }
        Ok(out)
    })
    .await?;
    found.sort();
    let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
    let truncated = found.len() > max;
    let uploads: Vec<dto::MultipartUpload> = found
        .into_iter()
        .take(max)
        .map(|(key, ms, id)| dto::MultipartUpload {
            initiated: Some(Timestamp::from(
                UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )),
            initiator: Some(dto::Initiator {
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
            }),
            key: Some(key),
            owner: Some(owner.clone()),
            storage_class: Some(dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            upload_id: Some(id),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(dto::ListMultipartUploadsOutput {
        bucket: Some(i.bucket),
        is_truncated: Some(truncated),
        key_marker: Some(i.key_marker.unwrap_or_default()),
        upload_id_marker: Some(i.upload_id_marker.unwrap_or_default()),
        next_key_marker: Some(String::new()),
        next_upload_id_marker: Some(String::new()),
        max_uploads: Some(max as i32),
        prefix: i.prefix,
        uploads: (!uploads.is_empty()).then_some(uploads),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(n: i32, data: &[u8]) -> Staged {
        Staged {
            n,
            etag: body::hex(&Md5::digest(data)),
            size: data.len() as u64,
            chunks: 1,
        }
    }

    #[test]
    fn the_etag_is_the_md5_of_the_part_md5s() {
        // S3's answer for parts "a" * 5 MiB and "b": computed by hand from the definition.
        let (a, b) = (vec![b'a'; 5 << 20], b"b".to_vec());
        let mut h = Md5::new();
        h.update(Md5::digest(&a));
        h.update(Md5::digest(&b));
        let want = format!("{}-2", body::hex(&h.finalize()));
        assert_eq!(
            multipart_etag(&[staged(1, &a), staged(2, &b)]).unwrap(),
            want
        );
        // One part: the MD5 of its MD5, then -1 (not the MD5 of the bytes).
        let one = multipart_etag(&[staged(1, b"x")]).unwrap();
        assert!(one.ends_with("-1") && !one.starts_with(&body::hex(&Md5::digest(b"x"))));
        let mut bad = staged(1, b"x");
        bad.etag = "not-hex".into();
        assert!(matches!(multipart_etag(&[bad]), Err(GwError::Internal(_))));
    }
}
