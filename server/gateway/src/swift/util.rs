//! Pure helpers of the Swift API: paths and queries, percent-decoding, content types guessed
//! from names, `Range` and conditional headers, dates, and the responses Swift sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};

use crate::error::GwError;

/// A response of the gateway.
pub(crate) type Resp = http::Response<s3s::Body>;

/// The longest container name Swift takes (bytes).
pub(crate) const MAX_CONTAINER_NAME: usize = 256;
/// The longest object name Swift takes (bytes).
pub(crate) const MAX_OBJECT_NAME: usize = 1024;

/// What a `/v1/...` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwiftPath {
    /// `AUTH_test`.
    pub account: String,
    /// The container, if any.
    pub container: Option<String>,
    /// The object (may contain `/`), if any.
    pub object: Option<String>,
}

/// Why a path was refused, with the status Swift answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathError {
    /// 400, 404 or 412.
    pub status: StatusCode,
    /// A short explanation.
    pub msg: &'static str,
}

fn path_err(status: StatusCode, msg: &'static str) -> PathError {
    PathError { status, msg }
}

/// Split and decode `/v1/ACCOUNT[/CONTAINER[/OBJECT]]` (the path as sent, percent-encoded).
/// A trailing `/` after the container names the container, as in Swift.
pub(crate) fn parse_path(raw: &str) -> Result<SwiftPath, PathError> {
    let rest = raw
        .strip_prefix("/v1/")
        .ok_or(path_err(StatusCode::NOT_FOUND, "not a /v1/ path"))?;
    let mut parts = rest.splitn(3, '/');
    let account = decode(parts.next().unwrap_or_default())?;
    if account.is_empty() {
        return Err(path_err(StatusCode::NOT_FOUND, "no account in the path"));
    }
    let container = match parts.next().map(decode).transpose()? {
        Some(c) if !c.is_empty() => Some(c),
        _ => None,
    };
    let object = match parts.next().map(decode).transpose()? {
        Some(o) if !o.is_empty() => Some(o),
        _ => None,
    };
    if container.is_none() && object.is_some() {
        return Err(path_err(
            StatusCode::BAD_REQUEST,
            "an object without a container",
        ));
    }
    if container
        .as_ref()
        .is_some_and(|c| c.len() > MAX_CONTAINER_NAME)
    {
        return Err(path_err(
            StatusCode::BAD_REQUEST,
            "Container name length of 257 or more is longer than 256",
        ));
    }
    if object.as_ref().is_some_and(|o| o.len() > MAX_OBJECT_NAME) {
        return Err(path_err(
            StatusCode::BAD_REQUEST,
            "Object name length of 1025 or more is longer than 1024",
        ));
    }
    Ok(SwiftPath {
        account,
        container,
        object,
    })
}

/// Percent-decode one path segment (`+` stays a `+`); invalid UTF-8 or a NUL is refused with
/// 412, as Swift does.
pub(crate) fn decode(s: &str) -> Result<String, PathError> {
    decode_with(s, false)
}

fn decode_with(s: &str, plus_is_space: bool) -> Result<String, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        // Two hex digits: at most 255.
                        out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|_| {
        path_err(
            StatusCode::PRECONDITION_FAILED,
            "Invalid UTF8 or contains NULL",
        )
    })?;
    if s.contains('\0') {
        return Err(path_err(
            StatusCode::PRECONDITION_FAILED,
            "Invalid UTF8 or contains NULL",
        ));
    }
    Ok(s)
}

/// The query's `name=value` pairs, decoded as a form (`+` is a space); undecodable pairs are
/// left out.
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode_with(k, true).ok()?, decode_with(v, true).ok()?))
        })
        .collect()
}

/// The first value of `name` in `pairs`.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-encode a name for a header (`X-Copied-From`), keeping `/` and unreserved bytes.
pub(crate) fn encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `/container/object` (a `Destination` or `X-Copy-From` header, percent-encoded) split and
/// decoded.
pub(crate) fn parse_copy_path(v: &str) -> Option<(String, String)> {
    let v = decode(v).ok()?;
    let (c, o) = v.strip_prefix('/').unwrap_or(&v).split_once('/')?;
    (!c.is_empty() && !o.is_empty() && c.len() <= MAX_CONTAINER_NAME && o.len() <= MAX_OBJECT_NAME)
        .then(|| (c.to_string(), o.to_string()))
}

/// The content type Swift gives an object written without one: Python's `mimetypes` guess
/// from the name's extension for common types, else `application/octet-stream`.
pub(crate) fn guess_content_type(name: &str) -> &'static str {
    let base = name.rsplit('/').next().unwrap_or(name);
    let Some((_, ext)) = base.rsplit_once('.') else {
        return crate::objects::DEFAULT_CONTENT_TYPE;
    };
    match ext.to_ascii_lowercase().as_str() {
        "txt" | "text" | "log" | "conf" | "ini" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "xml" => "text/xml",
        "js" | "mjs" => "text/javascript",
        "py" => "text/x-python",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        "sh" => "application/x-sh",
        "wasm" => "application/wasm",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "ico" => "image/vnd.microsoft.icon",
        "tif" | "tiff" => "image/tiff",
        "bmp" => "image/bmp",
        "mp3" => "audio/mpeg",
        "wav" => "audio/x-wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => crate::objects::DEFAULT_CONTENT_TYPE,
    }
}

/// Why `X-Object-Meta-*` headers were refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MetaError {
    /// `X-Object-Meta-: v`.
    #[error("Metadata name cannot be empty")]
    EmptyName,
    /// A value that is not UTF-8.
    #[error("Metadata {0}: the value is not UTF-8")]
    NotUtf8(String),
}

/// The `X-Object-Meta-*` headers of a request as user metadata: names lower-cased without the
/// prefix, sorted; `Err` for an empty name or a value that is not UTF-8.
pub(crate) fn user_meta(h: &HeaderMap) -> Result<Vec<(String, String)>, MetaError> {
    let mut out = Vec::new();
    for (k, v) in h {
        let Some(name) = k.as_str().strip_prefix("x-object-meta-") else {
            continue;
        };
        if name.is_empty() {
            return Err(MetaError::EmptyName);
        }
        let value =
            std::str::from_utf8(v.as_bytes()).map_err(|_| MetaError::NotUtf8(name.to_string()))?;
        out.push((name.to_string(), value.trim().to_string()));
    }
    out.sort();
    Ok(out)
}

/// A metadata name as Swift writes it back: `color` → `X-Object-Meta-Color`.
pub(crate) fn meta_header(name: &str) -> String {
    let mut out = String::from("X-Object-Meta-");
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-' || c == '_';
    }
    out
}

/// A header as text (`None` if absent or not visible ASCII).
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The byte span `[start, end)` a single-range `Range` header asks of an object of `len`
/// bytes: `None` when there is no usable range (absent, malformed or several ranges: the
/// whole object is sent, as RFC 9110 allows), `Some(Err(()))` when it is unsatisfiable.
pub(crate) fn parse_range(v: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = v?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len)));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse::<u64>().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    if start >= len {
        return Some(Err(()));
    }
    let end = end.map_or(len, |e| e.saturating_add(1).min(len));
    Some(Ok((start, end)))
}

/// The conditional headers of a GET or HEAD.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// `If-Match` ETags (`*` matches any).
    pub if_match: Option<Vec<String>>,
    /// `If-None-Match` ETags.
    pub if_none_match: Option<Vec<String>>,
    /// `If-Modified-Since`, Unix seconds.
    pub if_modified_since: Option<u64>,
    /// `If-Unmodified-Since`, Unix seconds.
    pub if_unmodified_since: Option<u64>,
}

fn etag_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|t| {
            t.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn http_secs(v: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(v).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

impl Conditions {
    /// Read them from a request's headers (unparsable dates are ignored, as Swift does).
    pub(crate) fn from_headers(h: &HeaderMap) -> Conditions {
        Conditions {
            if_match: header(h, "if-match").map(etag_list),
            if_none_match: header(h, "if-none-match").map(etag_list),
            if_modified_since: header(h, "if-modified-since").and_then(http_secs),
            if_unmodified_since: header(h, "if-unmodified-since").and_then(http_secs),
        }
    }

    /// Evaluate them against an object (RFC 9110 order: If-Match, else If-Unmodified-Since;
    /// then If-None-Match, else If-Modified-Since); `modified` is its `Last-Modified` second.
    pub(crate) fn check(&self, etag: &str, modified: u64) -> Result<(), GwError> {
        let hit = |l: &Vec<String>| l.iter().any(|t| t == "*" || t == etag);
        match (&self.if_match, self.if_unmodified_since) {
            (Some(l), _) if !hit(l) => return Err(GwError::PreconditionFailed),
            (None, Some(t)) if modified > t => return Err(GwError::PreconditionFailed),
            _ => {}
        }
        match (&self.if_none_match, self.if_modified_since) {
            (Some(l), _) if hit(l) => Err(GwError::NotModified),
            (None, Some(t)) if modified <= t => Err(GwError::NotModified),
            _ => Ok(()),
        }
    }
}

/// The `Last-Modified` second of a time: rounded up, as Swift does.
pub(crate) fn ceil_secs(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An HTTP date (`Last-Modified`) of a time, rounded up to the second.
pub(crate) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(ceil_secs(t)))
}

/// `X-Timestamp`: seconds with 5 decimals.
pub(crate) fn x_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:05}", d.as_secs(), d.subsec_micros() / 10)
}

/// A listing's `last_modified`: `2026-12-07T07:49:32.123450` (UTC, microseconds).
pub(crate) fn iso_date(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        d.subsec_micros()
    )
}

/// The body Swift sends with an error status (its short HTML pages).
pub(crate) fn status_page(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>",
        400 => "<html><h1>Bad Request</h1><p>The server could not comply with the request since it is either malformed or otherwise incorrect.</p></html>",
        401 => "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>",
        403 => "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>",
        404 => "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>",
        405 => "<html><h1>Method Not Allowed</h1><p>The method is not allowed for this resource.</p></html>",
        409 => "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>",
        411 => "<html><h1>Length Required</h1><p>Length Required</p></html>",
        412 => "<html><h1>Precondition Failed</h1><p>A precondition for this request was not met.</p></html>",
        413 => "<html><h1>Request Entity Too Large</h1><p>The body of your request was too large for this server.</p></html>",
        416 => "<html><h1>Requested Range Not Satisfiable</h1><p>The Range requested is not available.</p></html>",
        422 => "<html><h1>Unprocessable Entity</h1><p>Unable to process the contained instructions</p></html>",
        501 => "<html><h1>Not Implemented</h1><p>The server does not implement this request.</p></html>",
        503 => "<html><h1>Service Unavailable</h1><p>The server is currently unavailable. Please try again at a later time.</p></html>",
        _ => "",
    }
}

/// A response with `headers` and `body`; a header that is not a valid value is left out.
pub(crate) fn respond<K: AsRef<str>>(
    status: StatusCode,
    headers: &[(K, String)],
    body: s3s::Body,
) -> Resp {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_ref().as_bytes()),
            http::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            h.append(k, v);
        }
    }
    r
}

/// Swift's page for `status` (HTML), or `msg` as plain text when the gateway has something
/// more specific to say.
pub(crate) fn error(status: StatusCode, msg: Option<&str>) -> Resp {
    let (ct, body) = match msg {
        Some(m) => ("text/plain; charset=UTF-8", format!("{m}\n")),
        None => ("text/html; charset=UTF-8", status_page(status).to_string()),
    };
    let len = body.len().to_string();
    respond(
        status,
        &[("content-type", ct.to_string()), ("content-length", len)],
        s3s::Body::from(body),
    )
}

/// A gateway error in Swift's terms.
pub(crate) fn gw_error(e: &GwError) -> Resp {
    use GwError as E;
    match e {
        E::NoSuchBucket(_) | E::NoSuchKey | E::NoSuchUpload(_) => {
            error(StatusCode::NOT_FOUND, None)
        }
        E::PreconditionFailed => error(StatusCode::PRECONDITION_FAILED, None),
        E::BadDigest(m) => error(StatusCode::UNPROCESSABLE_ENTITY, Some(m)),
        E::SignatureMismatch => error(StatusCode::UNAUTHORIZED, None),
        E::NotModified => respond::<&str>(StatusCode::NOT_MODIFIED, &[], s3s::Body::empty()),
        E::InvalidRange(_) => error(StatusCode::RANGE_NOT_SATISFIABLE, None),
        E::AccessDenied(m) => error(StatusCode::FORBIDDEN, Some(m)),
        E::StoreRejected(_) => error(StatusCode::FORBIDDEN, Some(&e.to_string())),
        E::InvalidArgument(m) | E::InvalidKey(m) | E::InvalidPart(m) | E::EntityTooSmall(m) => {
            error(StatusCode::BAD_REQUEST, Some(m))
        }
        E::InvalidPartOrder => error(StatusCode::BAD_REQUEST, Some(&e.to_string())),
        E::EntityTooLarge(m) => error(StatusCode::PAYLOAD_TOO_LARGE, Some(m)),
        E::SlowDown(m) | E::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, Some(m)),
        E::Internal(m) => {
            tracing::error!(error = %m, "gateway (Swift): internal error");
            error(StatusCode::INTERNAL_SERVER_ERROR, Some(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(account: &str, c: Option<&str>, o: Option<&str>) -> SwiftPath {
        SwiftPath {
            account: account.into(),
            container: c.map(Into::into),
            object: o.map(Into::into),
        }
    }

    #[test]
    fn paths_split_and_decode() {
        assert_eq!(parse_path("/v1/AUTH_t"), Ok(p("AUTH_t", None, None)));
        assert_eq!(parse_path("/v1/AUTH_t/"), Ok(p("AUTH_t", None, None)));
        assert_eq!(parse_path("/v1/AUTH_t/c"), Ok(p("AUTH_t", Some("c"), None)));
        assert_eq!(
            parse_path("/v1/AUTH_t/c/"),
            Ok(p("AUTH_t", Some("c"), None))
        );
        assert_eq!(
            parse_path("/v1/AUTH_t/c/dir/a%20b+c.txt"),
            Ok(p("AUTH_t", Some("c"), Some("dir/a b+c.txt")))
        );
        assert_eq!(
            parse_path("/v1/AUTH_t/c/a//b/"),
            Ok(p("AUTH_t", Some("c"), Some("a//b/")))
        );
        assert_eq!(
            parse_path("/v1/").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            parse_path("/v1/a/c/%ff").unwrap_err().status,
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            parse_path("/v1/a/c/x%00y").unwrap_err().status,
            StatusCode::PRECONDITION_FAILED
        );
        let long = format!("/v1/a/c/{}", "x".repeat(1025));
        assert_eq!(
            parse_path(&long).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // A stray % is kept.
        assert_eq!(decode("100%").as_deref(), Ok("100%"));
        assert_eq!(decode("%4"), Ok("%4".to_string()));
    }

    #[test]
    fn queries_and_copy_paths() {
        let q = query_pairs(Some("format=json&prefix=dir%2F&delimiter=/&x&marker=a+b"));
        assert_eq!(query_get(&q, "format"), Some("json"));
        assert_eq!(query_get(&q, "prefix"), Some("dir/"));
        assert_eq!(query_get(&q, "x"), Some(""));
        assert_eq!(query_get(&q, "marker"), Some("a b"));
        assert_eq!(query_get(&q, "limit"), None);
        assert_eq!(
            parse_copy_path("/c/dir/a%20b"),
            Some(("c".into(), "dir/a b".into()))
        );
        assert_eq!(parse_copy_path("c/o"), Some(("c".into(), "o".into())));
        assert_eq!(parse_copy_path("/c"), None);
        assert_eq!(parse_copy_path("/c/"), None);
        assert_eq!(encode("c/a b"), "c/a%20b");
    }

    #[test]
    fn content_types_and_meta_names() {
        assert_eq!(guess_content_type("dir/b.txt"), "text/plain");
        assert_eq!(guess_content_type("zz"), "application/octet-stream");
        assert_eq!(guess_content_type("two.bin"), "application/octet-stream");
        assert_eq!(guess_content_type("a.d/x"), "application/octet-stream");
        assert_eq!(guess_content_type("P.JPG"), "image/jpeg");
        assert_eq!(meta_header("color"), "X-Object-Meta-Color");
        assert_eq!(meta_header("my-tag_x"), "X-Object-Meta-My-Tag_X");
        let mut h = HeaderMap::new();
        h.insert(
            "x-object-meta-Color",
            http::HeaderValue::from_static(" blue "),
        );
        h.insert("content-type", http::HeaderValue::from_static("text/plain"));
        assert_eq!(user_meta(&h), Ok(vec![("color".into(), "blue".into())]));
        h.insert(
            "x-object-meta-bad",
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert!(user_meta(&h).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=5-10"), 1700), Some(Ok((5, 11))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Some(Ok((5, 10))));
        assert_eq!(parse_range(Some("bytes=5-5000"), 10), Some(Ok((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Some(Ok((7, 10))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Some(Ok((0, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Some(Err(())));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Some(Err(())));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), None);
        assert_eq!(parse_range(Some("bytes=a-2"), 10), None);
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), None);
        assert_eq!(parse_range(Some("items=1-2"), 10), None);
        assert_eq!(parse_range(None, 10), None);
    }

    #[test]
    fn conditions() {
        let mut h = HeaderMap::new();
        h.insert("if-match", http::HeaderValue::from_static("\"abc\", def"));
        let c = Conditions::from_headers(&h);
        assert!(c.check("abc", 10).is_ok());
        assert!(c.check("def", 10).is_ok());
        assert!(matches!(c.check("x", 10), Err(GwError::PreconditionFailed)));
        let c = Conditions {
            if_none_match: Some(vec!["*".into()]),
            ..Default::default()
        };
        assert!(matches!(c.check("x", 10), Err(GwError::NotModified)));
        let c = Conditions {
            if_modified_since: Some(10),
            if_unmodified_since: Some(20),
            ..Default::default()
        };
        assert!(matches!(c.check("x", 10), Err(GwError::NotModified)));
        assert!(c.check("x", 11).is_ok());
        assert!(matches!(c.check("x", 21), Err(GwError::PreconditionFailed)));
        let mut h = HeaderMap::new();
        h.insert(
            "if-modified-since",
            http::HeaderValue::from_static("garbage"),
        );
        assert_eq!(Conditions::from_headers(&h), Conditions::default());
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_765_093_772_123);
        assert_eq!(iso_date(t), "2025-12-07T07:49:32.123000");
        assert_eq!(x_timestamp(t), "1765093772.12300");
        assert_eq!(http_date(t), "Sun, 07 Dec 2025 07:49:33 GMT");
        assert_eq!(ceil_secs(UNIX_EPOCH + Duration::from_secs(5)), 5);
    }
}
