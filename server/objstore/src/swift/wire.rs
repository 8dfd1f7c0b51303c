//! Swift's bytes on the wire: percent-encoding of names, object metadata from headers, JSON
//! listings and their timestamps.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::Response;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::types::{ETag, ListEntry, ListPage, ObjectMeta};

/// Percent-encode `s` for a URL path (`keep_slash`: object names keep their `/`) or a query
/// value: everything but RFC 3986's unreserved characters.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object's metadata from the headers of a GET or HEAD answer.
pub(crate) fn meta_from_headers(h: &HeaderMap, store: &str) -> Result<ObjectMeta> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let missing = |n: &str| Error::Protocol {
        store: store.into(),
        detail: format!("an object answer without a valid {n} header"),
    };
    let etag = get("etag").map(ETag::new).ok_or_else(|| missing("ETag"))?;
    let len = get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| missing("Content-Length"))?;
    let mut user_meta = BTreeMap::new();
    for (name, value) in h {
        if let Some(k) = name.as_str().strip_prefix("x-object-meta-") {
            if let Ok(v) = value.to_str() {
                user_meta.insert(k.to_ascii_lowercase(), v.to_string());
            }
        }
    }
    Ok(ObjectMeta {
        etag,
        len,
        content_type: get("content-type").map(str::to_string),
        last_modified: get("last-modified").and_then(|v| httpdate::parse_http_date(v).ok()),
        user_meta,
    })
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    last_modified: Option<String>,
}

/// A JSON container listing as a page (keys without the store prefix of `strip` bytes);
/// `next` is left for the caller.
pub(crate) fn parse_listing(text: &str, strip: usize, store: &str) -> Result<ListPage> {
    if text.trim().is_empty() {
        return Ok(ListPage::default());
    }
    let items: Vec<Listed> = serde_json::from_str(text).map_err(|e| Error::Protocol {
        store: store.into(),
        detail: format!("a container listing that is not JSON: {e}"),
    })?;
    let entries = items
        .into_iter()
        // Entries without `name` are `subdir`s of delimiter listings, which we never ask for.
        .filter_map(|i| {
            let name = i.name?;
            Some(ListEntry {
                key: name.get(strip..).unwrap_or("").to_string(),
                len: i.bytes,
                etag: ETag::new(&i.hash),
                last_modified: i.last_modified.as_deref().and_then(parse_iso),
            })
        })
        .collect();
    Ok(ListPage {
        entries,
        next: None,
    })
}

/// Swift's listing timestamps: `2026-12-06T14:54:50.123456` (UTC, no zone).
pub(crate) fn parse_iso(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    let days = days_from_civil(y, m, day);
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A transport error (no answer) as a store error.
pub(crate) fn http_error(store: &str, what: &str, e: &reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            store: store.into(),
            op: "request",
            after: std::time::Duration::ZERO,
        };
    }
    let why = if e.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    // reqwest's Display names the URL, never headers (where the token and key travel).
    Error::Unavailable {
        store: store.into(),
        detail: format!("{what}: {why}: {e}"),
        retryable: true,
    }
}

/// Read a small body (error pages, listings, token answers) up to `limit` bytes.
pub(crate) async fn read_small(mut r: Response, limit: usize, store: &str) -> Result<String> {
    let mut v = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| http_error(store, "reading an answer", &e))?
    {
        if v.len() + chunk.len() > limit {
            return Err(Error::Protocol {
                store: store.into(),
                detail: format!(
                    "an answer longer than {limit} bytes where a short one was expected"
                ),
            });
        }
        v.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded() {
        assert_eq!(encode("a b/c%d", true), "a%20b/c%25d");
        assert_eq!(encode("a/b", false), "a%2Fb");
        assert_eq!(encode("é", true), "%C3%A9");
    }

    #[test]
    fn listing_timestamps_parse() {
        let t = parse_iso("2026-12-06T14:54:50.250000").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_796_568_890);
        assert_eq!(d.subsec_millis(), 250);
        assert_eq!(
            parse_iso("1970-01-01T00:00:00"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_iso("garbage"), None);
        assert_eq!(parse_iso("2026-13-01T00:00:00"), None);
    }

    #[test]
    fn listings_parse_and_lose_the_prefix() {
        let text = r#"[{"name": "pre/a", "bytes": 3, "hash": "abc", "last_modified": "2026-01-01T00:00:00.000000", "content_type": "x"},
                      {"subdir": "pre/d/"}]"#;
        let p = parse_listing(text, 4, "s").unwrap();
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.entries[0].key, "a");
        assert_eq!(p.entries[0].etag.as_str(), "abc");
        assert!(parse_listing("", 0, "s").unwrap().entries.is_empty());
        assert!(matches!(
            parse_listing("<html>", 0, "s"),
            Err(Error::Protocol { .. })
        ));
    }
}
