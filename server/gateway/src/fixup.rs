//! What `s3s` answers differently from S3 (and Swift's s3api), put right on the way out:
//! error documents name the `<Key>` or `<BucketName>` they are about, and a presigned URL
//! whose signature is not even well-formed is `403 SignatureDoesNotMatch`, not `400`.

use bytes::Bytes;
use http::{Response, StatusCode};

/// Bucket and key of a path-style request path (`/bucket/key...`), percent-decoded.
fn bucket_and_key(path: &str) -> (String, String) {
    let p = path.strip_prefix('/').unwrap_or(path);
    let (b, k) = p.split_once('/').unwrap_or((p, ""));
    (decode(b), decode(k))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Errors documents are at most this large to be rewritten (s3s writes them in one piece).
const MAX_ERROR_DOC: usize = 16 * 1024;

/// Put an S3 client error right (see the module documentation).
pub fn s3_error(
    resp: Response<s3s::Body>,
    path: &str,
    query: &str,
    copy_source: Option<&str>,
) -> Response<s3s::Body> {
    let (mut parts, mut body) = resp.into_parts();
    let Some(doc) = body.take_bytes() else {
        return Response::from_parts(parts, body);
    };
    if doc.len() > MAX_ERROR_DOC {
        return Response::from_parts(parts, s3s::Body::from(doc));
    }
    let text = String::from_utf8_lossy(&doc).into_owned();
    let (bucket, mut key) = bucket_and_key(path);
    // A copy's missing object is its source.
    if let Some(src) = copy_source {
        key = bucket_and_key(&format!("/{}", src.trim_start_matches('/'))).1;
    }
    let upload_id = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("uploadId="))
        .map(decode);
    let presigned = query.contains("Signature=");
    let new = if parts.status == StatusCode::BAD_REQUEST
        && presigned
        && text.contains("<Code>InvalidRequest</Code>")
    {
        parts.status = StatusCode::FORBIDDEN;
        Some(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message></Error>".to_string(),
        )
    } else if let Some(id) = upload_id.filter(|_| {
        ["NoSuchUpload", "InvalidPart", "InvalidPartOrder"]
            .iter()
            .any(|c| text.contains(&format!("<Code>{c}</Code>")))
    }) {
        Some(insert(&text, "UploadId", &id))
    } else if text.contains("<Code>NoSuchKey</Code>") && !key.is_empty() {
        Some(insert(&text, "Key", &key))
    } else if text.contains("<Code>NoSuchBucket</Code>")
        || text.contains("<Code>InvalidBucketName</Code>")
        || text.contains("<Code>BucketAlreadyOwnedByYou</Code>")
    {
        Some(insert(&text, "BucketName", &bucket))
    } else {
        None
    };
    match new {
        Some(t) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, s3s::Body::from(Bytes::from(t)))
        }
        None => Response::from_parts(parts, s3s::Body::from(doc)),
    }
}

/// A method neither API has: 405 in S3's XML.
pub fn method_not_allowed(m: &http::Method) -> Response<s3s::Body> {
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>MethodNotAllowed</Code><Message>The specified method is not allowed against this resource.</Message><Method>{}</Method></Error>",
        xml_escape(m.as_str())
    );
    Response::builder()
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .header(http::header::ALLOW, "GET, HEAD, PUT, POST, DELETE")
        .body(s3s::Body::from(doc))
        .unwrap_or_default()
}

/// `text` with `<name>value</name>` after its `</Message>` (or before `</Error>`).
fn insert(text: &str, name: &str, value: &str) -> String {
    let el = format!("<{name}>{}</{name}>", xml_escape(value));
    if let Some(i) = text.find("</Message>") {
        let at = i + "</Message>".len();
        format!("{}{el}{}", &text[..at], &text[at..])
    } else if let Some(i) = text.find("</Error>") {
        format!("{}{el}{}", &text[..i], &text[i..])
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_decode() {
        assert_eq!(bucket_and_key("/b/a%20b/c"), ("b".into(), "a b/c".into()));
        assert_eq!(bucket_and_key("/b"), ("b".into(), String::new()));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn elements_are_inserted_escaped() {
        let t = "<Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        assert_eq!(
            insert(t, "Key", "a<b"),
            "<Error><Code>NoSuchKey</Code><Message>m</Message><Key>a&lt;b</Key></Error>"
        );
    }
}
