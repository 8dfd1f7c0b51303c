//! Swift object requests: GET/HEAD (one range, conditionals, large objects streamed piece by
//! piece), PUT (within the body budget, `ETag` checked), DELETE, POST (metadata: the object is
//! rewritten with it) and copies (`COPY` with `Destination`, `PUT` with `X-Copy-From`), all on
//! the blocking object operations of [`crate::objects`].

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use md5::{Digest, Md5};

use super::util::{
    ceil_secs, encode, error, gw_error, header, http_date, meta_header, parse_range, respond,
    user_meta, x_timestamp, Conditions, MetaError, Resp,
};
use crate::body::{self, Grant};
use crate::buckets::Bucket;
use crate::error::{GwError, GwResult};
use crate::objects::{self, Info, NewMeta, PIECE};
use crate::shared::Shared;

/// Run `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> GwResult<T> + Send + 'static,
) -> GwResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(GwError::Internal(format!("gateway task failed: {e}"))),
    }
}

/// The headers Swift sends with an object (GET, HEAD).
fn object_headers(info: &Info, len: u64) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-length".to_string(), len.to_string()),
        ("content-type".to_string(), info.content_type.clone()),
        ("accept-ranges".to_string(), "bytes".to_string()),
        ("last-modified".to_string(), http_date(info.last_modified)),
        ("etag".to_string(), info.etag.clone()),
        ("x-timestamp".to_string(), x_timestamp(info.last_modified)),
    ];
    for (k, v) in &info.user {
        h.push((meta_header(k), v.clone()));
    }
    h
}

/// The first piece a GET needs and the span `[start, end)` it sends (after the conditions).
fn open_for_get(
    b: &Bucket,
    key: &str,
    range: Option<&str>,
    cond: &Conditions,
) -> GwResult<(Info, faascache_client::ObjectPiece, u64, u64, bool)> {
    let suffix = range.is_some_and(|r| r.trim().starts_with("bytes=-"));
    // Where the bytes start when the range is `N-[M]` (the length is not needed for that).
    let hint = match parse_range(range, u64::MAX) {
        Some(Ok((s, _))) if !suffix => s,
        _ => 0,
    };
    let offset = if suffix {
        let info = objects::head(b, key)?;
        match parse_range(range, info.len) {
            Some(Ok((s, _))) => s,
            _ => 0,
        }
    } else {
        hint
    };
    let (mut info, mut first) = objects::first_piece(b, key, offset, PIECE)?;
    cond.check(&info.etag, ceil_secs(info.last_modified))?;
    let ranged = matches!(parse_range(range, info.len), Some(Ok(_)));
    let (start, end) = match parse_range(range, info.len) {
        None => (0, info.len),
        Some(Ok(span)) => span,
        Some(Err(())) => return Err(GwError::InvalidRange(info.len)),
    };
    if start != offset {
        // The range was ignored, or the object changed since its length was read.
        (info, first) = objects::first_piece(b, key, start, PIECE)?;
        if end > info.len {
            return Err(GwError::Unavailable(
                "the object changed while it was being read; read it again".into(),
            ));
        }
    }
    Ok((info, first, start, end, ranged))
}

/// GET or HEAD of an object.
pub(crate) async fn get(
    gw: &Arc<Shared>,
    container: String,
    key: String,
    h: &HeaderMap,
    head: bool,
) -> Resp {
    gw.ops.count(if head {
        "SwiftHeadObject"
    } else {
        "SwiftGetObject"
    });
    let cond = Conditions::from_headers(h);
    if head {
        let g = gw.clone();
        let r = blocking(move || {
            let info = g.buckets.with(&container, |b| objects::head(b, &key))?;
            cond.check(&info.etag, ceil_secs(info.last_modified))?;
            Ok(info)
        })
        .await;
        return match r {
            Ok(info) => respond(
                StatusCode::OK,
                &object_headers(&info, info.len),
                s3s::Body::empty(),
            ),
            Err(e) => gw_error(&e),
        };
    }
    let range = header(h, "range").map(str::to_string);
    let g = gw.clone();
    let k = key.clone();
    let opened = blocking(move || {
        let b = g.buckets.get(&container)?;
        let (info, first, start, end, ranged) = open_for_get(&b, &k, range.as_deref(), &cond)?;
        Ok((info, first, start, end, ranged, b))
    })
    .await;
    let (info, mut first, start, end, partial, b) = match opened {
        Ok(x) => x,
        Err(GwError::InvalidRange(len)) => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, None);
            if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert("content-range", v);
            }
            return r;
        }
        Err(e) => return gw_error(&e),
    };
    let mut headers = object_headers(&info, end - start);
    if partial {
        headers.push((
            "content-range".into(),
            format!("bytes {start}-{}/{}", end.saturating_sub(1), info.len),
        ));
    }
    let mut data = std::mem::take(&mut first.data);
    data.truncate(usize::try_from(end - start).unwrap_or(usize::MAX));
    objects::Totals::add(&gw.totals.bytes_out, end - start);
    let sent = start + data.len() as u64;
    let body = if sent >= end {
        s3s::Body::from(Bytes::from(data))
    } else {
        let (feed, piped) = body::pipe();
        let _ = feed.try_send(Ok(data.into()));
        tokio::task::spawn_blocking(move || {
            crate::s3_common::stream_rest(&b, &key, sent, end, &first, &feed);
        });
        s3s::Body::from(s3s::dto::StreamingBlob::wrap(piped))
    };
    let status = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    respond(status, &headers, body)
}

/// The content type of a write: the request's, else (absent, empty or
/// `X-Detect-Content-Type: true`) guessed from the name as Swift does.
fn content_type_of(h: &HeaderMap, key: &str) -> String {
    let detect = header(h, "x-detect-content-type").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match header(h, "content-type") {
        Some(ct) if !ct.is_empty() && !detect => ct.to_string(),
        _ => super::util::guess_content_type(key).to_string(),
    }
}

/// The response to a write: 201 with the new ETag.
fn created(etag: &str, extra: Vec<(String, String)>) -> Resp {
    let mut h = vec![
        ("etag".to_string(), etag.to_string()),
        ("last-modified".to_string(), http_date(SystemTime::now())),
        (
            "content-type".to_string(),
            "text/html; charset=UTF-8".to_string(),
        ),
        ("content-length".to_string(), "0".to_string()),
    ];
    h.extend(extra);
    respond(StatusCode::CREATED, &h, s3s::Body::empty())
}

/// The declared length of a request's body: `Ok(None)` for a chunked body, `Err` (411/400) for
/// neither or a bad value.
fn declared_length(h: &HeaderMap) -> Result<Option<u64>, Resp> {
    let chunked =
        header(h, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    match header(h, "content-length") {
        _ if chunked => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                Some("Invalid Content-Length header value"),
            )
        }),
        None => Err(error(StatusCode::LENGTH_REQUIRED, None)),
    }
}

/// PUT of an object (a copy when it has `X-Copy-From`).
pub(crate) async fn put(
    gw: &Arc<Shared>,
    container: String,
    key: String,
    req: http::Request<s3s::Body>,
) -> Resp {
    let h = req.headers();
    if let Some(from) = header(h, "x-copy-from") {
        let Some(src) = super::util::parse_copy_path(from) else {
            return error(
                StatusCode::PRECONDITION_FAILED,
                Some("X-Copy-From header must be of the form <container name>/<object name>"),
            );
        };
        let h = h.clone();
        return copy(gw, src, (container, key), &h).await;
    }
    gw.ops.count("SwiftPutObject");
    if h.contains_key("x-object-manifest") || h.contains_key("x-static-large-object") {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            Some("large object manifests (DLO/SLO) are not served by the FaaSCache gateway; upload the object in one PUT"),
        );
    }
    let declared = match declared_length(h) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let user = match user_meta(h) {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, Some(&m.to_string())),
    };
    let meta = NewMeta {
        content_type: Some(content_type_of(h, &key)),
        user,
    };
    if let Err(e) = meta.validate() {
        return gw_error(&e);
    }
    let expected = header(h, "etag").map(|e| e.trim_matches('"').to_ascii_lowercase());
    let target = crate::ingest::Target {
        bucket: container,
        key,
        meta,
    };
    let up = match crate::ingest::receive(
        gw,
        target,
        req.into_body(),
        declared,
        s3s::checksum::ChecksumHasher::default(),
    )
    .await
    {
        Ok(u) => u,
        Err(e) => return gw_error(&e),
    };
    // A mismatch drops `up`: a streamed write is aborted, nothing is stored.
    if expected.is_some_and(|e| e != up.md5_hex) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, None);
    }
    match up.commit(gw).await {
        Ok(etag) => created(&etag, Vec::new()),
        Err(e) => gw_error(&e),
    }
}

/// DELETE of an object: 404 if it does not exist, as in Swift.
pub(crate) async fn delete(gw: &Arc<Shared>, container: String, key: String) -> Resp {
    gw.ops.count("SwiftDeleteObject");
    let g = gw.clone();
    let r = blocking(move || {
        g.buckets.with(&container, |b| {
            objects::head(b, &key)?;
            objects::delete(b, &key)
        })
    })
    .await;
    match r {
        Ok(()) => respond(
            StatusCode::NO_CONTENT,
            &[
                ("content-type", "text/html; charset=UTF-8".to_string()),
                ("content-length", "0".to_string()),
            ],
            s3s::Body::empty(),
        ),
        Err(e) => gw_error(&e),
    }
}

/// A whole object read into memory within the budget: its info, bytes, MD5 hex and the grant
/// held until it is written again.
struct Whole {
    info: Info,
    chunks: Vec<Bytes>,
    md5_hex: String,
    grant: Grant,
}

fn read_whole(b: &Bucket, key: &str, budget: &Arc<body::Budget>) -> GwResult<Whole> {
    let len = objects::head(b, key)?.len;
    let grant = budget.take(len)?;
    let (info, mut first) = objects::first_piece(b, key, 0, PIECE)?;
    if info.len != len {
        return Err(GwError::Unavailable(
            "the object changed while it was being read; retry".into(),
        ));
    }
    let mut h = Md5::new();
    let data = Bytes::from(std::mem::take(&mut first.data));
    let mut off = data.len() as u64;
    h.update(&data);
    let mut chunks = vec![data];
    while off < len {
        let want = u32::try_from((len - off).min(u64::from(PIECE))).unwrap_or(PIECE);
        let piece = objects::next_piece(b, key, off, want, &first)?;
        off += piece.len() as u64;
        h.update(&piece);
        chunks.push(piece);
    }
    Ok(Whole {
        info,
        chunks,
        md5_hex: body::hex(&h.finalize()),
        grant,
    })
}

/// POST of an object: its user metadata (all of it) and, if given, its content type are
/// replaced. The object is read and written again (within the body budget); 202 as in Swift.
pub(crate) async fn post(gw: &Arc<Shared>, container: String, key: String, h: &HeaderMap) -> Resp {
    gw.ops.count("SwiftPostObject");
    let user = match user_meta(h) {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, Some(&m.to_string())),
    };
    let content_type = header(h, "content-type")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let (g, budget) = (gw.clone(), gw.budget.clone());
    let r = blocking(move || {
        g.buckets.with(&container, |b| {
            let w = read_whole(b, &key, &budget)?;
            let meta = NewMeta {
                content_type: content_type.or(Some(w.info.content_type)),
                user,
            };
            let r = objects::put(b, &key, &meta, w.chunks, &w.md5_hex);
            drop(w.grant);
            r
        })
    })
    .await;
    match r {
        Ok(_) => {
            let page = super::util::status_page(StatusCode::ACCEPTED);
            respond(
                StatusCode::ACCEPTED,
                &[
                    ("content-type", "text/html; charset=UTF-8".to_string()),
                    ("content-length", page.len().to_string()),
                ],
                s3s::Body::from(page.to_string()),
            )
        }
        Err(e) => gw_error(&e),
    }
}

/// The metadata of a copy: the source's (unless `X-Fresh-Metadata: true`) overlaid with the
/// request's `X-Object-Meta-*`; the request's content type, else the source's.
fn copy_meta(src: &Info, h: &HeaderMap) -> Result<NewMeta, MetaError> {
    let fresh = header(h, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut user: Vec<(String, String)> = if fresh { Vec::new() } else { src.user.clone() };
    for (k, v) in user_meta(h)? {
        user.retain(|(n, _)| *n != k);
        user.push((k, v));
    }
    user.sort();
    let content_type = header(h, "content-type")
        .filter(|c| !c.is_empty())
        .map_or_else(|| src.content_type.clone(), str::to_string);
    Ok(NewMeta {
        content_type: Some(content_type),
        user,
    })
}

/// A server-side copy of `src` to `dst` (both `(container, object)` of the same account),
/// read whole within the body budget; 201 with `X-Copied-From` as in Swift.
pub(crate) async fn copy(
    gw: &Arc<Shared>,
    src: (String, String),
    dst: (String, String),
    h: &HeaderMap,
) -> Resp {
    gw.ops.count("SwiftCopyObject");
    if let Err(m) = user_meta(h) {
        return error(StatusCode::BAD_REQUEST, Some(&m.to_string()));
    }
    let (g, budget, h2) = (gw.clone(), gw.budget.clone(), h.clone());
    let from = encode(&format!("{}/{}", src.0, src.1));
    let r = blocking(move || {
        let w = g.buckets.with(&src.0, |b| read_whole(b, &src.1, &budget))?;
        let meta = copy_meta(&w.info, &h2).map_err(|e| GwError::InvalidArgument(e.to_string()))?;
        let etag = g.buckets.with(&dst.0, |b| {
            objects::put(b, &dst.1, &meta, w.chunks, &w.md5_hex)
        })?;
        drop(w.grant);
        Ok((etag, w.info.last_modified))
    })
    .await;
    match r {
        Ok((etag, src_modified)) => created(
            &etag,
            vec![
                ("x-copied-from".into(), from),
                (
                    "x-copied-from-last-modified".into(),
                    http_date(src_modified),
                ),
            ],
        ),
        Err(e) => gw_error(&e),
    }
}

/// `COPY /v1/a/c/o` with `Destination: /container/object`.
pub(crate) async fn copy_method(
    gw: &Arc<Shared>,
    container: String,
    key: String,
    h: &HeaderMap,
) -> Resp {
    let Some(dst) = header(h, "destination").and_then(super::util::parse_copy_path) else {
        return error(
            StatusCode::PRECONDITION_FAILED,
            Some("Destination header must be of the form <container name>/<object name>"),
        );
    };
    copy(gw, (container, key), dst, h).await
}

/// Whether `m` is a method Swift's object server takes.
pub(crate) fn is_object_method(m: &Method) -> bool {
    matches!(
        m.as_str(),
        "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "COPY"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn info() -> Info {
        Info {
            etag: "abc".into(),
            len: 3,
            content_type: "text/plain".into(),
            last_modified: UNIX_EPOCH,
            user: vec![("color".into(), "blue".into()), ("size".into(), "s".into())],
        }
    }

    #[test]
    fn copies_keep_or_replace_metadata() {
        let mut h = HeaderMap::new();
        h.insert("x-object-meta-color", http::HeaderValue::from_static("red"));
        let m = copy_meta(&info(), &h).unwrap();
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            m.user,
            vec![("color".into(), "red".into()), ("size".into(), "s".into())]
        );
        h.insert("x-fresh-metadata", http::HeaderValue::from_static("True"));
        h.insert("content-type", http::HeaderValue::from_static("image/png"));
        let m = copy_meta(&info(), &h).unwrap();
        assert_eq!(m.content_type.as_deref(), Some("image/png"));
        assert_eq!(m.user, vec![("color".into(), "red".into())]);
    }

    #[test]
    fn object_headers_as_swift_sends_them() {
        let h = object_headers(&info(), 3);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("etag"), Some("abc"));
        assert_eq!(get("content-length"), Some("3"));
        assert_eq!(get("X-Object-Meta-Color"), Some("blue"));
        assert_eq!(get("last-modified"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
    }

    #[test]
    fn lengths_and_content_types_of_writes() {
        let mut h = HeaderMap::new();
        assert!(declared_length(&h).is_err());
        h.insert("content-length", http::HeaderValue::from_static("12"));
        assert_eq!(declared_length(&h).ok(), Some(Some(12)));
        h.insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        assert_eq!(declared_length(&h).ok(), Some(None));
        h.remove("transfer-encoding");
        h.insert("content-length", http::HeaderValue::from_static("-1"));
        assert!(declared_length(&h).is_err());
        assert_eq!(content_type_of(&h, "a.txt"), "text/plain");
        h.insert("content-type", http::HeaderValue::from_static("image/png"));
        assert_eq!(content_type_of(&h, "a.txt"), "image/png");
        h.insert(
            "x-detect-content-type",
            http::HeaderValue::from_static("true"),
        );
        assert_eq!(content_type_of(&h, "a.txt"), "text/plain");
    }
}
