//! OpenStack Swift's native API: a small client of our own on `reqwest` (async, on the
//! store's private runtime). No maintained Rust crate fits: `openstack` is unmaintained and
//! Keystone-only, `openstack_sdk` is a large generated SDK without auth v1 (tempauth), which is
//! what most Swift test and small deployments use.
//!
//! Requests: `GET/PUT/HEAD/DELETE STORAGE_URL/CONTAINER/OBJECT` with `X-Auth-Token`;
//! listings `GET STORAGE_URL/CONTAINER?format=json&prefix=&marker=&limit=`. A 401 means the
//! token expired: log in again once and repeat the request.

mod auth;
mod put;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use reqwest::{Method, RequestBuilder, Response};

use crate::config::{ClientOptions, StoreUrl, SwiftSettings};
use crate::error::{from_status, Error, Result};
use crate::runtime::{collect, install_tls, BlockingStream, Rt};
use crate::store::{check_limit, ObjectStore};
use crate::types::{
    validate_key, ETag, GetResult, GetStream, ListPage, ObjectMeta, ObjectReader, Payload, PutMeta,
    PutResult,
};
use auth::{Auth, Token};
use wire::{encode, http_error, meta_from_headers, parse_listing, read_small};

/// A Swift container (and prefix); see the module documentation.
#[derive(Debug)]
pub struct SwiftStore {
    url: StoreUrl,
    auth: Auth,
    client: reqwest::Client,
    rt: Arc<Rt>,
    token: Mutex<Option<Token>>,
}

/// What a failed request's answer said, short.
async fn detail(r: Response, store: &str) -> String {
    let status = r.status();
    let text = read_small(r, 64 << 10, store).await.unwrap_or_default();
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{status} {}", text.chars().take(200).collect::<String>())
}

impl SwiftStore {
    /// A client for `url` (scheme `swift`); the first request logs in.
    pub fn new(url: StoreUrl, s: &SwiftSettings, options: &ClientOptions) -> Result<SwiftStore> {
        install_tls();
        let auth = Auth::from_settings(s, &url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(options.worker_threads.max(1) * 8)
            .build()
            .map_err(|e| Error::Config(format!("{url}: cannot build the HTTP client: {e}")))?;
        let desc = format!("{url} at {}", auth.url());
        let rt = Rt::new(desc, options.worker_threads, options.timeout)?;
        Ok(SwiftStore {
            url,
            auth,
            client,
            rt,
            token: Mutex::new(None),
        })
    }

    fn store(&self) -> &str {
        &self.rt.store
    }

    /// The object's path under the storage URL.
    fn object_path(&self, key: &str) -> Result<String> {
        validate_key(key, self.url.prefix_len())?;
        Ok(format!(
            "{}/{}",
            encode(&self.url.bucket, false),
            encode(&self.url.full_key(key), true)
        ))
    }

    async fn token(&self, fresh: bool) -> Result<Token> {
        if !fresh {
            if let Some(t) = self.token.lock().clone() {
                return Ok(t);
            }
        }
        let t = self.auth.login(&self.client, self.store()).await?;
        *self.token.lock() = Some(t.clone());
        Ok(t)
    }

    /// Send `method` to `path` (under the storage URL), built by `build`; log in again once
    /// on 401.
    async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut fresh = false;
        loop {
            let t = self.token(fresh).await?;
            let url = format!("{}/{path}", t.storage_url.trim_end_matches('/'));
            let req = build(
                self.client
                    .request(method.clone(), url)
                    .header("X-Auth-Token", t.token.expose()),
            );
            let r = req
                .send()
                .await
                .map_err(|e| http_error(self.store(), method.as_str(), &e))?;
            if r.status().as_u16() == 401 && !fresh {
                fresh = true;
                continue;
            }
            return Ok(r);
        }
    }

    async fn fail<T>(&self, key: &str, r: Response) -> Result<T> {
        let status = r.status().as_u16();
        let d = detail(r, self.store()).await;
        Err(from_status(self.store(), key, status, d))
    }

    fn no_container(&self) -> Error {
        Error::NoSuchBucket {
            store: self.store().into(),
            bucket: self.url.bucket.clone(),
        }
    }

    /// GET with `If-None-Match`: the answer when it is 200, else what it means.
    async fn get_response(
        &self,
        key: &str,
        inm: Option<&ETag>,
    ) -> Result<Result<(Response, ObjectMeta), GetResult>> {
        let path = self.object_path(key)?;
        let r = self
            .send(Method::GET, &path, |b| match inm {
                Some(e) => b.header("If-None-Match", e.quoted()),
                None => b,
            })
            .await?;
        match r.status().as_u16() {
            200 => {
                let meta = meta_from_headers(r.headers(), self.store())?;
                Ok(Ok((r, meta)))
            }
            304 => Ok(Err(GetResult::NotModified)),
            404 => Ok(Err(GetResult::NotFound)),
            _ => self.fail(key, r).await,
        }
    }
}

fn body_error(store: &str, text: String) -> Error {
    Error::Unavailable {
        store: store.into(),
        detail: format!("the body broke off: {text}"),
        retryable: true,
    }
}

impl ObjectStore for SwiftStore {
    fn describe(&self) -> String {
        self.rt.store.clone()
    }

    fn check(&self) -> Result<()> {
        let path = encode(&self.url.bucket, false);
        self.rt.run("HEAD container", async {
            let r = self.send(Method::HEAD, &path, |b| b).await?;
            match r.status().as_u16() {
                200..=299 => Ok(()),
                404 => Err(self.no_container()),
                _ => self.fail("", r).await,
            }
        })
    }

    fn create_bucket(&self) -> Result<bool> {
        let path = encode(&self.url.bucket, false);
        self.rt.run("PUT container", async {
            let r = self.send(Method::PUT, &path, |b| b).await?;
            match r.status().as_u16() {
                201 => Ok(true),
                200..=299 => Ok(false),
                _ => self.fail("", r).await,
            }
        })
    }

    fn get(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetResult> {
        self.rt.run("GET", async {
            match self.get_response(key, if_none_match).await? {
                Err(answer) => Ok(answer),
                Ok((r, meta)) => {
                    let store = self.store().to_string();
                    let body = collect(r.bytes_stream(), meta.len, |e| {
                        body_error(&store, e.to_string())
                    })
                    .await?;
                    Ok(GetResult::Found { body, meta })
                }
            }
        })
    }

    fn get_stream(&self, key: &str, if_none_match: Option<&ETag>) -> Result<GetStream> {
        let r = self
            .rt
            .run("GET", async { self.get_response(key, if_none_match).await })?;
        Ok(match r {
            Err(GetResult::NotModified) => GetStream::NotModified,
            Err(_) => GetStream::NotFound,
            Ok((r, meta)) => {
                let stream =
                    BlockingStream::new(self.rt.clone(), Box::pin(r.bytes_stream()), body_error);
                GetStream::Found(ObjectReader::new(meta, Box::new(stream)))
            }
        })
    }

    fn put(&self, key: &str, body: Payload, meta: &PutMeta) -> Result<PutResult> {
        let path = self.object_path(key)?;
        meta.validate()?;
        let len = body.len();
        let chunks = body.into_chunks();
        self.rt.run("PUT", async {
            let r = self
                .send(Method::PUT, &path, |mut b| {
                    b = b.header("Content-Length", len);
                    if let Some(ct) = &meta.content_type {
                        b = b.header("Content-Type", ct);
                    }
                    for (k, v) in &meta.user_meta {
                        b = b.header(format!("X-Object-Meta-{}", k.to_ascii_lowercase()), v);
                    }
                    let body = match chunks.as_slice() {
                        [] => reqwest::Body::from(Bytes::new()),
                        [one] => reqwest::Body::from(one.clone()),
                        many => {
                            let pieces: Vec<std::result::Result<Bytes, std::io::Error>> =
                                many.iter().cloned().map(Ok).collect();
                            reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
                        }
                    };
                    b.body(body)
                })
                .await?;
            match r.status().as_u16() {
                200..=299 => {
                    let etag = r
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(ETag::new);
                    etag.map(|etag| PutResult { etag })
                        .ok_or_else(|| Error::Protocol {
                            store: self.store().into(),
                            detail: "a PUT answered without an ETag".into(),
                        })
                }
                // Nothing to find for a PUT but the container.
                404 => Err(self.no_container()),
                _ => self.fail(key, r).await,
            }
        })
    }

    fn put_stream(&self, key: &str, meta: &PutMeta) -> Result<Box<dyn crate::PutStream + '_>> {
        let path = self.object_path(key)?;
        meta.validate()?;
        Ok(Box::new(self.start_put(key, &path, meta)?))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.object_path(key)?;
        self.rt.run("HEAD", async {
            let r = self.send(Method::HEAD, &path, |b| b).await?;
            match r.status().as_u16() {
                200..=299 => Ok(Some(meta_from_headers(r.headers(), self.store())?)),
                404 => Ok(None),
                _ => self.fail(key, r).await,
            }
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.object_path(key)?;
        self.rt.run("DELETE", async {
            let r = self.send(Method::DELETE, &path, |b| b).await?;
            match r.status().as_u16() {
                200..=299 | 404 => Ok(()),
                _ => self.fail(key, r).await,
            }
        })
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        check_limit(limit)?;
        let full_prefix = format!("{}{prefix}", self.url.full_key(""));
        let mut path = format!(
            "{}?format=json&limit={limit}&prefix={}",
            encode(&self.url.bucket, false),
            encode(&full_prefix, false)
        );
        if let Some(s) = start_after {
            path.push_str("&marker=");
            path.push_str(&encode(&self.url.full_key(s), false));
        }
        self.rt.run("LIST", async {
            let r = self.send(Method::GET, &path, |b| b).await?;
            match r.status().as_u16() {
                200..=299 => {
                    // A page of 1000 entries with 1 KiB names is about 1.2 MiB.
                    let text = read_small(r, 8 << 20, self.store()).await?;
                    let mut page = parse_listing(&text, self.url.prefix_len(), self.store())?;
                    if page.entries.len() >= limit {
                        page.next = page.entries.last().map(|e| e.key.clone());
                    }
                    Ok(page)
                }
                404 => Err(self.no_container()),
                _ => self.fail(prefix, r).await,
            }
        })
    }
}
