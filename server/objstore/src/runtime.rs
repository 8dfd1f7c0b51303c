//! The blocking face of the network backends: each store owns one small tokio runtime
//! (`ClientOptions::worker_threads` threads, named `objstore-*`) and runs each operation on
//! it with `block_on`, bounded by the store's timeout.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};

/// rustls has no bundled provider in this build (ring signs S3 requests, see the root
/// Cargo.toml): install ring's for HTTPS endpoints; an error means one is installed already.
/// (`ring::default_provider` is deprecated for lacking post-quantum key exchange; S3 and
/// Swift endpoints do not require it.)
#[allow(deprecated)]
pub(crate) fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A private runtime and the store it serves (for messages).
#[derive(Debug)]
pub(crate) struct Rt {
    rt: tokio::runtime::Runtime,
    pub(crate) store: String,
    pub(crate) timeout: Duration,
}

impl Rt {
    pub(crate) fn new(store: String, threads: usize, timeout: Duration) -> Result<Arc<Rt>> {
        let threads = threads.clamp(1, 16);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads)
            .thread_name("objstore")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the store client's threads: {e}")))?;
        Ok(Arc::new(Rt { rt, store, timeout }))
    }

    /// Run `fut` to completion on this runtime, or fail with [`Error::Timeout`].
    pub(crate) fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let timeout = self.timeout;
        self.rt.block_on(async {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    store: self.store.clone(),
                    op,
                    after: timeout,
                }),
            }
        })
    }
}

/// Collect a body stream into one buffer, preallocating at most [`crate::MAX_PREALLOC`].
pub(crate) async fn collect<E>(
    mut stream: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    expected: u64,
    map: impl Fn(E) -> Error,
) -> Result<Bytes> {
    let first = match stream.next().await {
        None => return Ok(Bytes::new()),
        Some(r) => r.map_err(&map)?,
    };
    // A body that arrives in one piece needs no copy at all.
    let Some(second) = stream.next().await else {
        return Ok(first);
    };
    let cap = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .min(crate::MAX_PREALLOC);
    let mut v = Vec::with_capacity(cap.max(first.len()));
    v.extend_from_slice(&first);
    v.extend_from_slice(&second.map_err(&map)?);
    while let Some(chunk) = stream.next().await {
        v.extend_from_slice(&chunk.map_err(&map)?);
    }
    Ok(v.into())
}

/// A body stream read through [`Read`]: each read waits (at most the timeout) for the next
/// piece on the store's runtime.
pub(crate) struct BlockingStream<S> {
    rt: Arc<Rt>,
    stream: S,
    current: Bytes,
    map: fn(&str, String) -> Error,
}

impl<S> BlockingStream<S> {
    pub(crate) fn new(rt: Arc<Rt>, stream: S, map: fn(&str, String) -> Error) -> Self {
        BlockingStream {
            rt,
            stream,
            current: Bytes::new(),
            map,
        }
    }
}

impl<S, E> Read for BlockingStream<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let stream = &mut self.stream;
            let map = self.map;
            let store = self.rt.store.clone();
            let next = self.rt.run("reading a body", async move {
                match stream.next().await {
                    None => Ok(None),
                    Some(Ok(b)) => Ok(Some(b)),
                    Some(Err(e)) => Err(map(&store, e.to_string())),
                }
            });
            match next {
                Ok(Some(b)) => self.current = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(crate::error_to_io(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}
