//! The streaming write of [`SwiftStore`] (see [`crate::upload`]): one PUT with a chunked
//! body fed through a channel of two pieces. Aborting breaks the body off before its end, so
//! Swift stores nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{detail, SwiftStore};
use crate::error::{from_status, Error, Result};
use crate::runtime::Rt;
use crate::types::{ETag, PutMeta, PutResult};
use crate::upload::PutStream;

type Piece = std::result::Result<Bytes, std::io::Error>;

/// A streamed Swift write; see the module documentation.
pub(crate) struct SwiftPut {
    rt: Arc<Rt>,
    tx: Option<mpsc::Sender<Piece>>,
    task: Option<JoinHandle<Result<PutResult>>>,
    /// Set by an abort, read by the body stream before each piece and at its end.
    aborted: Arc<AtomicBool>,
}

impl SwiftStore {
    /// Start the PUT of `path` (the object's, under the storage URL) for `key`.
    pub(crate) fn start_put(&self, key: &str, path: &str, meta: &PutMeta) -> Result<SwiftPut> {
        let t = self.rt.run("log in", self.token(false))?;
        let url = format!("{}/{path}", t.storage_url.trim_end_matches('/'));
        let (tx, rx) = mpsc::channel::<Piece>(2);
        let aborted = Arc::new(AtomicBool::new(false));
        let body = futures_util::stream::unfold(
            (rx, aborted.clone(), false),
            |(mut rx, aborted, done)| async move {
                if done {
                    return None;
                }
                // An abort ends the body with an error — never with its end — even when pieces
                // are still queued or the sender is gone: the request then fails (no terminating
                // chunk is sent) and Swift stores nothing.
                let broken = || std::io::Error::other("upload aborted");
                if aborted.load(Ordering::Acquire) {
                    return Some((Err(broken()), (rx, aborted, true)));
                }
                match rx.recv().await {
                    Some(_) | None if aborted.load(Ordering::Acquire) => {
                        Some((Err(broken()), (rx, aborted, true)))
                    }
                    Some(piece) => Some((piece, (rx, aborted, false))),
                    None => None,
                }
            },
        );
        let mut b = self
            .client
            .request(Method::PUT, url)
            .header("X-Auth-Token", t.token.expose());
        if let Some(ct) = &meta.content_type {
            b = b.header("Content-Type", ct);
        }
        for (k, v) in &meta.user_meta {
            b = b.header(format!("X-Object-Meta-{}", k.to_ascii_lowercase()), v);
        }
        let req = b.body(reqwest::Body::wrap_stream(body));
        let (store, key, bucket) = (
            self.store().to_string(),
            key.to_string(),
            self.url.bucket.clone(),
        );
        let task = self.rt.spawn(async move {
            let r = req
                .send()
                .await
                .map_err(|e| super::wire::http_error(&store, "PUT", &e))?;
            match r.status().as_u16() {
                200..=299 => {
                    let etag = r.headers().get("etag").and_then(|v| v.to_str().ok());
                    etag.map(|e| PutResult { etag: ETag::new(e) })
                        .ok_or_else(|| Error::Protocol {
                            store: store.clone(),
                            detail: "a PUT answered without an ETag".into(),
                        })
                }
                404 => Err(Error::NoSuchBucket { store, bucket }),
                status => {
                    let d = detail(r, &store).await;
                    Err(from_status(&store, &key, status, d))
                }
            }
        });
        Ok(SwiftPut {
            rt: self.rt.clone(),
            tx: Some(tx),
            task: Some(task),
            aborted,
        })
    }
}

impl SwiftPut {
    /// The request's own outcome (after the body ended or the request failed).
    fn outcome(&mut self) -> Result<PutResult> {
        let Some(task) = self.task.take() else {
            return Err(Error::Protocol {
                store: self.rt.store.clone(),
                detail: "the PUT was already finished".into(),
            });
        };
        let store = self.rt.store.clone();
        self.rt.run("PUT", async move {
            task.await.map_err(|e| Error::Unavailable {
                store,
                detail: format!("the PUT stopped: {e}"),
                retryable: true,
            })?
        })
    }

    fn abort_now(&mut self) {
        if self.task.is_none() {
            return; // finished (or already aborted): nothing to break off
        }
        // Break the body off: the stream fails at its next poll whatever is queued, the request
        // fails, Swift keeps nothing. (Aborting the task alone would not do: the connection's
        // own task goes on sending the body to its end.)
        self.aborted.store(true, Ordering::Release);
        self.tx = None;
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl PutStream for SwiftPut {
    fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.tx.clone() else {
            return Err(Error::Protocol {
                store: self.rt.store.clone(),
                detail: "a write after the PUT ended".into(),
            });
        };
        // Without a trip to the runtime while the channel has room.
        let sent = match tx.try_send(Ok(data)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(piece)) => self
                .rt
                .run("PUT body", async move { Ok(tx.send(piece).await.is_ok()) })?,
        };
        if sent {
            return Ok(());
        }
        // The request ended before its body did: its answer says why.
        self.tx = None;
        match self.outcome() {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Protocol {
                store: self.rt.store.clone(),
                detail: "Swift answered the PUT before its body ended".into(),
            }),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<PutResult> {
        self.tx = None;
        self.outcome()
    }

    fn abort(mut self: Box<Self>) {
        self.abort_now();
    }
}

impl Drop for SwiftPut {
    fn drop(&mut self) {
        self.abort_now();
    }
}
