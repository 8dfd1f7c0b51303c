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
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faascache_client::{
    Client, Error as ClientError, RejectRules, TableBacking, TableId, WriteOptions, WritePolicy,
};
use md5::{Digest, Md5};
use s3s::dto::{self, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde_json::{json, Value};

use crate::body;
use crate::error::{GwError, GwResult};
use crate::objects::{self, NewMeta};
use crate::s3::{blocking, to_s3, S3Front};

/// Names of the gateway's own tables start with this (hidden from ListBuckets).
pub const TABLE_PREFIX: &str = "faascache-gateway-";
const RECORDS: &str = "faascache-gateway-uploads";
const PARTS: &str = "faascache-gateway-parts";
/// Staged parts are dropped this long after they were written.
const PART_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Bytes of one staged chunk (one cluster value with room for its envelope).
pub const CHUNK: usize = (1 << 20) - 8 * 1024;
/// S3's limits.
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_PART_SIZE: u64 = 5 << 30;
/// Conditional updates of a record before giving up (each lost race is another part landing).
const CAS_TRIES: usize = 64;

/// The staging tables of one gateway.
#[derive(Debug)]
pub struct Uploads {
    records: TableId,
    parts: TableId,
}

impl Uploads {
    /// Find or create the staging tables.
    pub fn open(c: &Client) -> Result<Uploads, ClientError> {
        let records = match c.table_id(RECORDS) {
            Ok(t) => t,
            Err(ClientError::NoSuchTable(_)) => c.create_table(RECORDS, 1)?,
            Err(e) => return Err(e),
        };
        let mut b = TableBacking::new("", WritePolicy::Ephemeral);
        b.ttl_ms = PART_TTL_MS;
        let parts = c.create_backed_table_unchecked(PARTS, 1, &b)?;
        Ok(Uploads { records, parts })
    }
}

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
    let meta = crate::s3::new_meta(i.content_type, i.metadata);
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
    let up = match i.body {
        Some(b) => body::read(b, declared, &f.gw.budget).await.map_err(to_s3)?,
        None => {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                "UploadPart needs a body",
            ))
        }
    };
    if let Some(md5) = &i.content_md5 {
        crate::s3::check_md5(md5, &up.md5)?;
    }
    let gw = f.gw.clone();
    let etag = up.md5_hex.clone();
    let (bucket, key, id, n) = (i.bucket, i.key, i.upload_id, i.part_number);
    blocking(move || {
        let c = gw.buckets.client();
        let u = gw.uploads()?;
        record(c, u, &id, &bucket, &key)?;
        let data: Vec<u8> = up.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let pieces: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(CHUNK).collect() };
        for (ci, piece) in pieces.iter().enumerate() {
            c.write(u.parts, chunk_key(&id, n, ci).as_bytes(), piece)?;
        }
        let entry = json!({"etag": up.md5_hex, "size": up.len, "chunks": pieces.len(), "modified_ms": now_ms()});
        for _ in 0..CAS_TRIES {
            let (mut rec, version) = record(c, u, &id, &bucket, &key)?;
            rec["parts"][n.to_string()] = entry.clone();
            match c.write_with(u.records, id.as_bytes(), rec.to_string().as_bytes(), &only_if_version(version)) {
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
        for (n, etag) in &named {
            match have.get(n) {
                Some((e, size, _, _)) if e == etag => total += size,
                _ => {
                    return Err(GwError::InvalidPart(format!(
                        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {n})"
                    )))
                }
            }
        }
        let grant = gw.budget.take(total)?;
        let mut chunks = Vec::new();
        let mut h = Md5::new();
        for (n, _) in &named {
            let (_, _, count, _) = have[n];
            for ci in 0..count {
                let (_, data, _) = c.read_object(u.parts, chunk_key(&id, *n, ci).as_bytes())?;
                h.update(&data);
                chunks.push(Bytes::from(data));
            }
        }
        let md5: [u8; 16] = h.finalize().into();
        let meta = NewMeta {
            content_type: rec["content_type"].as_str().map(str::to_string),
            user: serde_json::from_value(rec["user"].clone()).unwrap_or_default(),
        };
        let etag = gw
            .buckets
            .with(&bucket, |b| objects::put(b, &key, &meta, chunks, &body::hex(&md5)))?;
        drop(grant);
        discard(c, u, &id, &rec);
        Ok(etag)
    })
    .await?;
    Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
        bucket: Some(b2),
        key: Some(k2),
        e_tag: Some(dto::ETag::Strong(etag)),
        ..Default::default()
    }))
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
        part_number_marker: i.part_number_marker,
        next_part_number_marker: next,
        parts: Some(parts),
        ..Default::default()
    }))
}

/// The staging tables, opened on first use.
pub(crate) fn open_lazily<'a>(
    cell: &'a std::sync::OnceLock<Uploads>,
    c: &Arc<Client>,
) -> GwResult<&'a Uploads> {
    if let Some(u) = cell.get() {
        return Ok(u);
    }
    let u = Uploads::open(c)?;
    Ok(cell.get_or_init(|| u))
}
