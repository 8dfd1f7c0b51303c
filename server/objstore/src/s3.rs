//! S3 (and S3-compatible services) through the `object_store` crate.
//!
//! What `object_store` gives and how it is used: SigV4 signing, path-style or
//! virtual-hosted addressing, conditional GET (`GetOptions::if_none_match` → its
//! `NotModified` error, our [`GetResult::NotModified`]), content type and user metadata on
//! PUT (`Attributes`: `ContentType`, `Metadata(name)` → `x-amz-meta-name`) and back on GET/HEAD
//! (a HEAD is `get_opts` with `head: true`, since its plain `head` drops the attributes), and
//! string-prefix listings with `start-after` (`PaginatedListStore`; its `list` takes
//! directory prefixes only). Its retries are limited to `ClientOptions::s3_retries` so that
//! a failing store shows up to the caller's own retry policy quickly.

use std::sync::Arc;
use std::time::SystemTime;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::HttpErrorKind;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore as _, PutOptions, PutPayload,
};

use crate::config::{ClientOptions, S3Settings, StoreUrl};
use crate::error::{from_status, Error, Result};
use crate::runtime::{collect, BlockingStream, Rt};
use crate::store::{check_limit, ObjectStore};
use crate::types::{
    shorten, validate_key, ETag, GetResult, GetStream, ListEntry, ListPage, ObjectMeta,
    ObjectReader, Payload, PutMeta, PutResult,
};

/// An S3 bucket (and prefix); see the module documentation.
#[derive(Debug)]
pub struct S3Store {
    pub(crate) url: StoreUrl,
    pub(crate) rt: Arc<Rt>,
    pub(crate) s3: Arc<AmazonS3>,
}

/// The codes in S3 error bodies that mean the credentials themselves are wrong.
const BAD_CREDENTIAL_CODES: [&str; 5] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
];

fn xml_field<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find("</")?;
    Some(&text[start..start + len])
}

/// The HTTP status in an `object_store` error's text, if it carries one.
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// What an error said, short: the S3 error code and message if the body had them.
fn detail_of(text: &str) -> String {
    match (xml_field(text, "Code"), xml_field(text, "Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => text.chars().take(300).collect(),
    }
}

impl S3Store {
    /// A client for `url` (scheme `s3`). Needs an access key id and secret (from
    /// [`crate::Settings`]); without an endpoint it talks to AWS in the region.
    pub fn new(url: StoreUrl, s: &S3Settings, options: &ClientOptions) -> Result<S3Store> {
        crate::runtime::install_tls();
        let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) else {
            return Err(Error::Config(format!(
                "{url}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or access_key_id and secret_access_key under [s3] in the store config file)"
            )));
        };
        let region = s.region.clone().unwrap_or_else(|| "us-east-1".into());
        let endpoint = s
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{url}: the S3 endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        let client = object_store::ClientOptions::new()
            .with_timeout(options.timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_allow_http(endpoint.starts_with("http://"));
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: options.s3_retries,
            retry_timeout: options.timeout,
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(&region)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(s.virtual_hosted.unwrap_or(false))
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose())
            .with_client_options(client)
            .with_retry(retry);
        if let Some(t) = &s.session_token {
            b = b.with_token(t.expose());
        }
        let s3 = b
            .build()
            .map_err(|e| Error::Config(format!("{url}: cannot configure the S3 client: {e}")))?;
        let desc = format!("{url} at {endpoint}");
        let rt = Rt::new(desc, options.worker_threads, options.timeout)?;
        Ok(S3Store {
            url,
            rt,
            s3: Arc::new(s3),
        })
    }

    fn path(&self, key: &str) -> Result<Path> {
        validate_key(key, self.url.prefix_len())?;
        Path::parse(self.url.full_key(key)).map_err(|e| Error::InvalidKey {
            key: shorten(key),
            why: e.to_string(),
        })
    }

    /// An `object_store` error as ours (`NotFound`/`NotModified` are handled by callers).
    fn error(&self, key: &str, e: &object_store::Error) -> Error {
        map_error(&self.rt.store, &self.url.bucket, key, e, self.rt.timeout)
    }

    /// The metadata of a GET/HEAD answer.
    fn meta_of(r: &object_store::GetResult) -> ObjectMeta {
        let mut user_meta = std::collections::BTreeMap::new();
        let mut content_type = None;
        for (k, v) in &r.attributes {
            match k {
                Attribute::ContentType => content_type = Some(v.as_ref().to_string()),
                Attribute::Metadata(name) => {
                    user_meta.insert(name.to_ascii_lowercase(), v.as_ref().to_string());
                }
                _ => {}
            }
        }
        ObjectMeta {
            etag: ETag::new(r.meta.e_tag.as_deref().unwrap_or("")),
            len: r.meta.size,
            content_type,
            last_modified: Some(SystemTime::from(r.meta.last_modified)),
            user_meta,
        }
    }

    /// GET (or HEAD) with `If-None-Match`.
    fn get_opts(&self, key: &str, inm: Option<&ETag>, head: bool) -> Result<Fetched> {
        let path = self.path(key)?;
        let opts = GetOptions {
            if_none_match: inm.map(ETag::quoted),
            head,
            ..Default::default()
        };
        let s3 = self.s3.clone();
        let r = self.rt.run(if head { "HEAD" } else { "GET" }, async move {
            Ok(s3.get_opts(&path, opts).await)
        })?;
        match r {
            Ok(r) => Ok(Fetched::Found(Box::new(r))),
            Err(object_store::Error::NotModified { .. }) => Ok(Fetched::NotModified),
            Err(e @ object_store::Error::NotFound { .. }) => {
                let text = e.to_string();
                if text.contains("NoSuchBucket") {
                    return Err(self.error(key, &e));
                }
                Ok(Fetched::NotFound)
            }
            Err(e) => Err(self.error(key, &e)),
        }
    }
}

enum Fetched {
    Found(Box<object_store::GetResult>),
    NotModified,
    NotFound,
}

/// The transport failure under an `object_store` error, if that is what it is, and the
/// deepest cause's text (reqwest's own message stops at "error sending request").
fn transport_failure(e: &object_store::Error) -> Option<(HttpErrorKind, String)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut kind = None;
    let mut root = String::new();
    while let Some(x) = cur {
        if let Some(h) = x.downcast_ref::<object_store::client::HttpError>() {
            kind = Some(h.kind());
        }
        root = x.to_string();
        cur = x.source();
    }
    kind.map(|k| (k, root))
}

pub(crate) fn map_error(
    store: &str,
    bucket: &str,
    key: &str,
    e: &object_store::Error,
    timeout: std::time::Duration,
) -> Error {
    let text = &e.to_string();
    let detail = detail_of(text);
    match transport_failure(e) {
        Some((HttpErrorKind::Timeout, _)) => {
            return Error::Timeout {
                store: store.into(),
                op: "request",
                after: timeout,
            }
        }
        Some((HttpErrorKind::Decode | HttpErrorKind::Unknown, _)) | None => {}
        Some((_, root)) => {
            return Error::Unavailable {
                store: store.into(),
                detail: format!("{detail} ({root})"),
                retryable: true,
            }
        }
    }
    if text.contains("NoSuchBucket") {
        return Error::NoSuchBucket {
            store: store.into(),
            bucket: bucket.into(),
        };
    }
    if BAD_CREDENTIAL_CODES.iter().any(|c| text.contains(c)) {
        return Error::BadCredentials {
            store: store.into(),
            detail,
        };
    }
    match e {
        object_store::Error::InvalidPath { .. } => Error::InvalidKey {
            key: shorten(key),
            why: text.to_string(),
        },
        object_store::Error::Unauthenticated { .. } => Error::BadCredentials {
            store: store.into(),
            detail,
        },
        object_store::Error::PermissionDenied { .. } => Error::AccessDenied {
            store: store.into(),
            key: shorten(key),
            detail,
        },
        _ => match status_in(text) {
            Some(status) => from_status(store, key, status, detail),
            None if text.contains("timed out") => Error::Timeout {
                store: store.into(),
                op: "request",
                after: timeout,
            },
            None => Error::Unavailable {
                store: store.into(),
                detail,
                retryable: true,
            },
        },
    }
}

/// Content type and user metadata as `object_store` attributes.
fn attributes_of(meta: &PutMeta) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(ct) = &meta.content_type {
        attributes.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
    }
    for (k, v) in &meta.user_meta {
        attributes.insert(
            Attribute::Metadata(k.to_ascii_lowercase().into()),
            AttributeValue::from(v.clone()),
        );
    }
    attributes
}

fn body_error(store: &str, text: String) -> Error {
    Error::Unavailable {
        store: store.into(),
        detail: format!("the body broke off: {text}"),
        retryable: true,
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.rt.store.clone()
    }

    fn check(&self) -> Result<()> {
        let prefix = self.url.full_key("");
        let s3 = self.s3.clone();
        let r = self.rt.run("LIST", async move {
            let opts = PaginatedListOptions {
                max_keys: Some(1),
                ..Default::default()
            };
            Ok(s3.list_paginated(Some(&prefix), opts).await)
        })?;
        r.map(|_| ()).map_err(|e| self.error("", &e))
    }

    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        match self.get_opts(key, if_none_match, false)? {
            Fetched::NotFound => Ok(GetResult::NotFound),
            Fetched::NotModified => Ok(GetResult::NotModified),
            Fetched::Found(r) => {
                let meta = Self::meta_of(&r);
                let store = self.rt.store.clone();
                let stream = r.into_stream();
                let len = meta.len;
                let body = self.rt.run("GET body", async move {
                    collect(stream, len, |e| body_error(&store, e.to_string())).await
                })?;
                Ok(GetResult::Found { body, meta })
            }
        }
    }

    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream> {
        match self.get_opts(key, if_none_match, false)? {
            Fetched::NotFound => Ok(GetStream::NotFound),
            Fetched::NotModified => Ok(GetStream::NotModified),
            Fetched::Found(r) => {
                let meta = Self::meta_of(&r);
                let stream = BlockingStream::new(self.rt.clone(), r.into_stream(), body_error);
                Ok(GetStream::Found(ObjectReader::new(meta, Box::new(stream))))
            }
        }
    }

    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult> {
        let path = self.path(key)?;
        meta.validate()?;
        let attributes = attributes_of(meta);
        let payload: PutPayload = body.into_chunks().into_iter().collect();
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        let s3 = self.s3.clone();
        let r = self.rt.run(
            "PUT",
            async move { Ok(s3.put_opts(&path, payload, opts).await) },
        )?;
        match r {
            Ok(r) => Ok(PutResult {
                etag: ETag::new(r.e_tag.as_deref().unwrap_or("")),
            }),
            // A PUT has nothing to find but the bucket.
            Err(object_store::Error::NotFound { .. }) => Err(Error::NoSuchBucket {
                store: self.describe(),
                bucket: self.url.bucket.clone(),
            }),
            Err(e) => Err(self.error(key, &e)),
        }
    }

    fn put_stream(&self, key: &str, meta: &PutMeta) -> Result<Box<dyn crate::PutStream + '_>> {
        let path = self.path(key)?;
        meta.validate()?;
        Ok(Box::new(self.start_put(key, path, attributes_of(meta))))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.get_opts(key, None, true)? {
            Fetched::Found(r) => Ok(Some(Self::meta_of(&r))),
            Fetched::NotFound => Ok(None),
            Fetched::NotModified => Err(Error::Protocol {
                store: self.describe(),
                detail: "304 to an unconditional HEAD".into(),
            }),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let s3 = self.s3.clone();
        let r = self.rt.run("DELETE", async move {
            use object_store::ObjectStoreExt as _;
            Ok(s3.delete(&path).await)
        })?;
        match r {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. })
                if !e.to_string().contains("NoSuchBucket") =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(key, &e)),
        }
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        check_limit(limit)?;
        let full_prefix = format!("{}{prefix}", self.url.full_key(""));
        let strip = self.url.prefix_len();
        let opts = PaginatedListOptions {
            offset: start_after.map(|s| self.url.full_key(s)),
            max_keys: Some(limit),
            ..Default::default()
        };
        let s3 = self.s3.clone();
        let r = self.rt.run("LIST", async move {
            Ok(s3.list_paginated(Some(&full_prefix), opts).await)
        })?;
        let r = r.map_err(|e| self.error(prefix, &e))?;
        let mut entries: Vec<ListEntry> = r
            .result
            .objects
            .into_iter()
            .map(|o| ListEntry {
                key: o.location.as_ref().get(strip..).unwrap_or("").to_string(),
                len: o.size,
                etag: ETag::new(o.e_tag.as_deref().unwrap_or("")),
                last_modified: Some(SystemTime::from(o.last_modified)),
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let next = if r.page_token.is_some() || entries.len() >= limit {
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        assert_eq!(status_in(body), Some(403));
        assert_eq!(
            detail_of(body),
            "SignatureDoesNotMatch: The request signature we calculated does not match"
        );
        assert_eq!(status_in("error sending request"), None);
    }

    #[test]
    fn missing_credentials_are_a_config_error() {
        let url: StoreUrl = "s3://bucket".parse().unwrap();
        let e = S3Store::new(url, &S3Settings::default(), &ClientOptions::default()).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
