//! The blocking face of the network backends: each store owns one small tokio runtime
//! (`ClientOptions::worker_threads` threads, named `objstore-*`) and runs each operation on
//! it with `block_on`, bounded by the store's timeout.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};

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

    /// Start `fut` on this runtime (it runs while the caller does other things).
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(fut)
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
    /// The stream said it ended (it is not asked again).
    ended: bool,
}

impl<S> BlockingStream<S> {
    pub(crate) fn new(rt: Arc<Rt>, stream: S, map: fn(&str, String) -> Error) -> Self {
        BlockingStream {
            rt,
            stream,
            current: Bytes::new(),
            map,
            ended: false,
        }
    }
}

impl<S, E> Read for BlockingStream<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    /// One trip to the runtime per call: it waits for the next piece, then also takes every
    /// piece already there, up to `buf.len()` (a body arriving in 16 KiB frames is not one
    /// thread hand-off per frame).
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || (self.ended && self.current.is_empty()) {
            return Ok(0);
        }
        if !self.current.is_empty() {
            let n = buf.len().min(self.current.len());
            buf[..n].copy_from_slice(&self.current[..n]);
            bytes::Buf::advance(&mut self.current, n);
            return Ok(n);
        }
        let (stream, current, map) = (&mut self.stream, &mut self.current, self.map);
        let ended = &mut self.ended;
        let store = &self.rt.store;
        let filled = self.rt.run("reading a body", async move {
            let mut n = 0;
            loop {
                let next = if n == 0 {
                    stream.next().await
                } else {
                    // Only what is ready now: never wait with bytes in hand.
                    match stream.next().now_or_never() {
                        Some(next) => next,
                        None => return Ok(n),
                    }
                };
                let mut b = match next {
                    None => {
                        *ended = true;
                        return Ok(n);
                    }
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return Err(map(store, e.to_string())),
                };
                let k = (buf.len() - n).min(b.len());
                buf[n..n + k].copy_from_slice(&b[..k]);
                bytes::Buf::advance(&mut b, k);
                n += k;
                if !b.is_empty() || n == buf.len() {
                    *current = b;
                    return Ok(n);
                }
            }
        });
        filled.map_err(crate::error_to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize, size: usize) -> Vec<std::result::Result<Bytes, String>> {
        (0..n)
            .map(|i| Ok(Bytes::from(vec![i as u8; size])))
            .collect()
    }

    fn rt() -> Arc<Rt> {
        Rt::new("test".into(), 1, Duration::from_secs(5)).unwrap()
    }

    fn err(store: &str, e: String) -> Error {
        Error::Config(format!("{store}: {e}"))
    }

    #[test]
    fn a_read_takes_every_ready_frame_and_keeps_the_rest() {
        let s = futures_util::stream::iter(frames(100, 1000));
        let mut r = BlockingStream::new(rt(), s, err);
        let mut buf = vec![0u8; 10_500];
        // All frames are ready: one read fills the buffer, across 11 frames.
        assert_eq!(r.read(&mut buf).unwrap(), 10_500);
        assert!(buf[..1000].iter().all(|&b| b == 0) && buf[10_000..].iter().all(|&b| b == 10));
        // The rest of frame 10 was kept.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), 100_000 - 10_500);
        assert!(rest[..500].iter().all(|&b| b == 10) && rest[500..1500].iter().all(|&b| b == 11));
        // Ended: it stays ended.
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn an_error_in_the_body_is_an_io_error() {
        let mut items = frames(3, 10);
        items.push(Err("connection reset".into()));
        let mut r = BlockingStream::new(rt(), futures_util::stream::iter(items), err);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
    }
}
