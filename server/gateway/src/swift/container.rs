//! Swift account and container requests: container listings (plain or JSON, `prefix`,
//! `delimiter`, `marker`, `end_marker`, `limit`) from the store after a flush, the container
//! totals, and container creation (a backed table over an existing store container).

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use super::object::blocking;
use super::util::{
    error, guess_content_type, gw_error, header, http_date, iso_date, query_get, respond,
    x_timestamp, Resp,
};
use crate::buckets::Bucket;
use crate::error::{GwError, GwResult};
use crate::objects::{self, Listed, MAX_KEYS};
use crate::shared::Shared;

/// Swift's largest `limit` (and the default).
pub const LISTING_LIMIT: usize = 10_000;
/// Pages of [`MAX_KEYS`] objects read at most for a container's totals (object count and
/// bytes used): larger containers report the totals of their first 100,000 objects.
pub const TOTAL_PAGES: usize = 100;
/// Objects of one JSON listing whose content type is read (a metadata read each, from the
/// cache or through it); the rest get the type guessed from their name.
pub const TYPE_READS: usize = 1000;
/// Tables the gateway keeps for itself (multipart uploads), never listed.
pub const HIDDEN_PREFIX: &str = "faascache-gateway-";

/// How a listing is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Plain,
    Json,
}

/// The listing parameters of a GET on an account or a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: Option<String>,
    pub end_marker: Option<String>,
    pub limit: usize,
}

/// The format and parameters of a listing request; `Err` is Swift's answer to bad ones.
pub(crate) fn list_params(
    q: &[(String, String)],
    h: &HeaderMap,
) -> Result<(Format, ListParams), Resp> {
    let format = match query_get(q, "format")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Format::Json,
        Some("plain") => Format::Plain,
        Some("xml") => {
            return Err(error(
                StatusCode::NOT_ACCEPTABLE,
                Some("format=xml is not served by the FaaSCache gateway; use format=json"),
            ))
        }
        _ if header(h, "accept").is_some_and(|a| a.contains("application/json")) => Format::Json,
        _ => Format::Plain,
    };
    let limit = match query_get(q, "limit") {
        None => LISTING_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= LISTING_LIMIT => n,
            Ok(_) => {
                return Err(error(
                    StatusCode::PRECONDITION_FAILED,
                    Some("Maximum limit is 10000"),
                ))
            }
            Err(_) => {
                return Err(error(
                    StatusCode::PRECONDITION_FAILED,
                    Some("Value of limit must be a positive integer"),
                ))
            }
        },
    };
    let some = |k: &str| {
        query_get(q, k)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Ok((
        format,
        ListParams {
            prefix: query_get(q, "prefix").unwrap_or_default().to_string(),
            delimiter: some("delimiter"),
            marker: some("marker"),
            end_marker: some("end_marker"),
            limit,
        },
    ))
}

/// One entry of a container listing: an object, or a common prefix (`subdir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Object(Listed, Option<String>),
    Subdir(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(o, _) => &o.key,
            Entry::Subdir(s) => s,
        }
    }
}

/// Objects and common prefixes of one page, merged in name order.
fn merge(objects: Vec<Listed>, prefixes: Vec<String>) -> Vec<Entry> {
    let mut out = Vec::with_capacity(objects.len() + prefixes.len());
    let mut o = objects.into_iter().peekable();
    let mut p = prefixes.into_iter().peekable();
    loop {
        let take_object = match (o.peek(), p.peek()) {
            (Some(a), Some(b)) => a.key <= *b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        if take_object {
            out.extend(o.next().map(|x| Entry::Object(x, None)));
        } else {
            out.extend(p.next().map(Entry::Subdir));
        }
    }
}

/// The entries of a container listing, page by page from the store.
fn collect(b: &Bucket, p: &ListParams) -> GwResult<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut cursor = p.marker.clone();
    while out.len() < p.limit {
        let want = (p.limit - out.len()).min(MAX_KEYS);
        let page = objects::list(
            b,
            &p.prefix,
            p.delimiter.as_deref(),
            cursor.as_deref(),
            want,
        )?;
        for e in merge(page.objects, page.prefixes) {
            if p.end_marker.as_deref().is_some_and(|m| e.name() >= m) {
                return Ok(out);
            }
            out.push(e);
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out.truncate(p.limit);
    Ok(out)
}

/// A container's object count and bytes used (of its first [`TOTAL_PAGES`] pages).
fn totals(b: &Bucket) -> GwResult<(u64, u64)> {
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut cursor: Option<String> = None;
    for _ in 0..TOTAL_PAGES {
        let page = objects::list(b, "", None, cursor.as_deref(), MAX_KEYS)?;
        count += page.objects.len() as u64;
        bytes += page.objects.iter().map(|o| o.len).sum::<u64>();
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok((count, bytes)),
        }
    }
    tracing::warn!(bucket = %b.name, "gateway (Swift): container totals cover the first {} objects only", TOTAL_PAGES * MAX_KEYS);
    Ok((count, bytes))
}

/// Fill in the content types of the first [`TYPE_READS`] objects (the listing from the store
/// has none): from the object's metadata, else guessed from the name.
fn content_types(b: &Bucket, entries: &mut [Entry]) {
    let mut reads = 0;
    for e in entries {
        if let Entry::Object(o, ct) = e {
            let read = (reads < TYPE_READS)
                .then(|| {
                    reads += 1;
                    objects::head(b, &o.key).ok()
                })
                .flatten();
            *ct = Some(read.map_or_else(
                || guess_content_type(&o.key).to_string(),
                |i| i.content_type,
            ));
        }
    }
}

fn json_entry(e: &Entry) -> serde_json::Value {
    match e {
        Entry::Subdir(s) => serde_json::json!({ "subdir": s }),
        Entry::Object(o, ct) => serde_json::json!({
            "name": o.key,
            "bytes": o.len,
            "hash": o.etag,
            "last_modified": iso_date(o.last_modified.unwrap_or(SystemTime::UNIX_EPOCH)),
            "content_type": ct.clone().unwrap_or_else(|| guess_content_type(&o.key).to_string()),
        }),
    }
}

/// A listing's body and its status: JSON (200 even when empty) or plain names (204 when
/// empty), as Swift answers.
fn listing_body(
    format: Format,
    names: Vec<String>,
    json: Vec<serde_json::Value>,
) -> (StatusCode, String, String) {
    match format {
        Format::Json => (
            StatusCode::OK,
            "application/json; charset=utf-8".into(),
            serde_json::Value::Array(json).to_string(),
        ),
        Format::Plain if names.is_empty() => (
            StatusCode::NO_CONTENT,
            "text/plain; charset=utf-8".into(),
            String::new(),
        ),
        Format::Plain => {
            let mut s = names.join("\n");
            s.push('\n');
            (StatusCode::OK, "text/plain; charset=utf-8".into(), s)
        }
    }
}

/// GET or HEAD of a container.
pub(crate) async fn get(
    gw: &Arc<Shared>,
    container: String,
    q: &[(String, String)],
    h: &HeaderMap,
    head: bool,
) -> Resp {
    gw.ops.count(if head {
        "SwiftHeadContainer"
    } else {
        "SwiftGetContainer"
    });
    let (format, params) = match list_params(q, h) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let g = gw.clone();
    let r = blocking(move || {
        g.buckets.with(&container, |b| {
            let (count, bytes) = totals(b)?;
            if head {
                return Ok((count, bytes, Vec::new()));
            }
            let mut entries = collect(b, &params)?;
            if format == Format::Json {
                content_types(b, &mut entries);
            }
            Ok((count, bytes, entries))
        })
    })
    .await;
    let (count, bytes, entries) = match r {
        Ok(x) => x,
        Err(e) => return gw_error(&e),
    };
    let now = SystemTime::now();
    let mut headers = vec![
        ("x-container-object-count", count.to_string()),
        ("x-container-bytes-used", bytes.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("last-modified", http_date(now)),
        ("x-timestamp", x_timestamp(now)),
    ];
    if head {
        headers.push(("content-type", "text/plain; charset=utf-8".into()));
        headers.push(("content-length", "0".into()));
        return respond(StatusCode::NO_CONTENT, &headers, s3s::Body::empty());
    }
    let names = entries.iter().map(|e| e.name().to_string()).collect();
    let json = if format == Format::Json {
        entries.iter().map(json_entry).collect()
    } else {
        Vec::new()
    };
    let (status, ct, body) = listing_body(format, names, json);
    headers.push(("content-type", ct));
    headers.push(("content-length", body.len().to_string()));
    respond(status, &headers, s3s::Body::from(body))
}

/// GET or HEAD of the account: its containers (the cluster's tables but the gateway's own).
pub(crate) async fn account(
    gw: &Arc<Shared>,
    q: &[(String, String)],
    h: &HeaderMap,
    head: bool,
) -> Resp {
    gw.ops.count(if head {
        "SwiftHeadAccount"
    } else {
        "SwiftGetAccount"
    });
    let (format, p) = match list_params(q, h) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let g = gw.clone();
    let mut names = match blocking(move || g.buckets.list()).await {
        Ok(n) => n,
        Err(e) => return gw_error(&e),
    };
    names.retain(|n| !n.starts_with(HIDDEN_PREFIX));
    names.sort();
    names.dedup();
    let total = names.len();
    let mut headers = vec![
        ("x-account-container-count", total.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("x-timestamp", x_timestamp(gw.started)),
    ];
    if head {
        headers.push(("content-type", "text/plain; charset=utf-8".into()));
        headers.push(("content-length", "0".into()));
        return respond(StatusCode::NO_CONTENT, &headers, s3s::Body::empty());
    }
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(&p.prefix))
        .filter(|n| p.marker.as_deref().is_none_or(|m| n.as_str() > m))
        .filter(|n| p.end_marker.as_deref().is_none_or(|m| n.as_str() < m))
        .take(p.limit)
        .collect();
    // The gateway keeps no per-container totals: count and bytes are 0 (HEAD a container).
    let json = names
        .iter()
        .map(|n| serde_json::json!({ "name": n, "count": 0, "bytes": 0 }))
        .collect();
    let (status, ct, body) = listing_body(format, names, json);
    headers.push(("content-type", ct));
    headers.push(("content-length", body.len().to_string()));
    respond(status, &headers, s3s::Body::from(body))
}

fn empty(status: StatusCode) -> Resp {
    respond(
        status,
        &[
            ("content-type", "text/html; charset=UTF-8".to_string()),
            ("content-length", "0".to_string()),
        ],
        s3s::Body::empty(),
    )
}

/// PUT of a container: a backed table over the store's container of that name (201; 202 if
/// it was there). The gateway does not create containers in the store: 403 if it has none.
pub(crate) async fn put(gw: &Arc<Shared>, container: String) -> Resp {
    gw.ops.count("SwiftPutContainer");
    let g = gw.clone();
    match blocking(move || g.buckets.create(&container)).await {
        Ok(true) => empty(StatusCode::CREATED),
        Ok(false) => empty(StatusCode::ACCEPTED),
        Err(GwError::NoSuchBucket(_)) => error(
            StatusCode::FORBIDDEN,
            Some("the object store has no container of this name, and the FaaSCache gateway does not create containers in the store: create it there first"),
        ),
        Err(e) => gw_error(&e),
    }
}

/// DELETE of a container: 409 if it has objects (as Swift), else 403: the gateway does not
/// delete containers (nor the backed table) — delete it in the store.
pub(crate) async fn delete(gw: &Arc<Shared>, container: String) -> Resp {
    gw.ops.count("SwiftDeleteContainer");
    let g = gw.clone();
    let r = blocking(move || {
        g.buckets
            .with(&container, |b| objects::list(b, "", None, None, 1))
    })
    .await;
    match r {
        Ok(l) if !l.objects.is_empty() => error(StatusCode::CONFLICT, None),
        Ok(_) => error(
            StatusCode::FORBIDDEN,
            Some("the FaaSCache gateway does not delete containers: delete it in the store (and drop its backed table with the faascache CLI)"),
        ),
        Err(e) => gw_error(&e),
    }
}

/// POST of a container: 204 if it exists; container metadata and ACLs are not kept (501).
pub(crate) async fn post(gw: &Arc<Shared>, container: String, h: &HeaderMap) -> Resp {
    gw.ops.count("SwiftPostContainer");
    let sets_meta = h.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("x-container-")
            || k.starts_with("x-remove-container-")
            || k.starts_with("x-versions-")
            || k.starts_with("x-history-")
    });
    if sets_meta {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            Some("container metadata and ACLs are not kept by the FaaSCache gateway"),
        );
    }
    let g = gw.clone();
    match blocking(move || g.buckets.get(&container).map(|_| ())).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => gw_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(k: &str) -> Listed {
        Listed {
            key: k.into(),
            len: 1,
            etag: "e".into(),
            last_modified: None,
        }
    }

    #[test]
    fn pages_merge_in_name_order() {
        let m = merge(
            vec![listed("dir/a"), listed("dir/z")],
            vec!["dir/0/".into(), "dir/m/".into()],
        );
        let names: Vec<&str> = m.iter().map(Entry::name).collect();
        assert_eq!(names, ["dir/0/", "dir/a", "dir/m/", "dir/z"]);
        let m = merge(vec![listed("a"), listed("c")], vec!["b/".into()]);
        let names: Vec<&str> = m.iter().map(Entry::name).collect();
        assert_eq!(names, ["a", "b/", "c"]);
    }

    #[test]
    fn listing_parameters() {
        let h = HeaderMap::new();
        let q = |s: &str| super::super::util::query_pairs(Some(s));
        let (f, p) =
            list_params(&q("format=json&prefix=d/&delimiter=/&limit=2&marker=x"), &h).unwrap();
        assert_eq!(f, Format::Json);
        assert_eq!(p.prefix, "d/");
        assert_eq!(p.delimiter.as_deref(), Some("/"));
        assert_eq!(p.marker.as_deref(), Some("x"));
        assert_eq!(p.limit, 2);
        let (f, p) = list_params(&q(""), &h).unwrap();
        assert_eq!((f, p.limit), (Format::Plain, LISTING_LIMIT));
        assert!(list_params(&q("limit=10001"), &h).is_err());
        assert!(list_params(&q("limit=-1"), &h).is_err());
        assert!(list_params(&q("format=xml"), &h).is_err());
        let mut h = HeaderMap::new();
        h.insert("accept", http::HeaderValue::from_static("application/json"));
        assert_eq!(list_params(&q(""), &h).unwrap().0, Format::Json);
    }

    #[test]
    fn listing_bodies() {
        assert_eq!(
            listing_body(Format::Plain, vec![], vec![]).0,
            StatusCode::NO_CONTENT
        );
        let (s, _, b) = listing_body(Format::Json, vec![], vec![]);
        assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
        let (_, ct, b) = listing_body(Format::Plain, vec!["a".into(), "b/".into()], vec![]);
        assert_eq!(
            (ct.as_str(), b.as_str()),
            ("text/plain; charset=utf-8", "a\nb/\n")
        );
        let e = json_entry(&Entry::Object(listed("x.txt"), None));
        assert_eq!(e["content_type"], "text/plain");
        assert_eq!(e["last_modified"], "1970-01-01T00:00:00.000000");
        assert_eq!(json_entry(&Entry::Subdir("d/".into()))["subdir"], "d/");
    }
}
