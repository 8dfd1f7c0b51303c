//! Stream framing shared by the TCP client and server: parse whole messages out of a byte
//! stream, and write header + payload with vectored writes.
//!
//! Reading: bytes go into a fixed [`STREAM_READ_BUFFER`]; every complete frame in it is handed
//! out *in place* (no copy). A frame too large for the buffer gets an exactly sized buffer, but
//! only after its header — and so its length — has passed [`Header::decode`], which enforces
//! [`crate::limits::MAX_PAYLOAD`]. Nothing is ever allocated from an unchecked length.

use std::io::{self, IoSlice, Read, Write};

use crate::limits::STREAM_READ_BUFFER;
use crate::wire::{DecodeError, Header, HEADER_LEN};

/// A frame's payload: borrowed from the read buffer, or an owned buffer for a large frame.
pub(crate) enum Payload<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Borrowed(b) => b.to_vec(),
            Payload::Owned(v) => v,
        }
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadStop {
    /// No more bytes for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The consumer asked to stop.
    Stopped,
}

/// Framing failure.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    /// Bad header. `reply_to` is `(opcode, request id)` when the header was intact enough (magic
    /// and checksum right) to address an error reply.
    Decode {
        err: DecodeError,
        reply_to: Option<(u16, u64)>,
    },
}

pub(crate) struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    big: Option<(Header, Vec<u8>, usize)>,
    stop_on_short_read: bool,
}

/// For a header that failed to decode: can we still address a reply? Only if the magic is ours
/// (the stream is in sync) and the failure is one of the "well-formed but refused" kinds.
fn reply_target(buf: &[u8], err: &DecodeError) -> Option<(u16, u64)> {
    match err {
        DecodeError::BadVersion { .. }
        | DecodeError::TooLarge { .. }
        | DecodeError::Reserved { .. } => {
            let op = u16::from_le_bytes([buf[6], buf[7]]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&buf[8..16]);
            Some((op, u64::from_le_bytes(id)))
        }
        _ => None,
    }
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader {
            buf: vec![0u8; STREAM_READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            big: None,
            stop_on_short_read: true,
        }
    }

    /// Keep reading until the source says `WouldBlock` even after a short read (for sources
    /// that deliver in arbitrary chunks, e.g. tests). Sockets stop after a short read.
    #[cfg(test)]
    pub(crate) fn exhaustive(mut self) -> Self {
        self.stop_on_short_read = false;
        self
    }

    /// Hand out every complete frame already buffered. `Ok(false)`: the consumer asked to stop.
    fn deliver_buffered(
        &mut self,
        on_frame: &mut dyn FnMut(Header, Payload<'_>) -> bool,
    ) -> Result<bool, FrameError> {
        while self.big.is_none() && self.end - self.start >= HEADER_LEN {
            let avail = &self.buf[self.start..self.end];
            let h = Header::decode(avail).map_err(|err| FrameError::Decode {
                reply_to: reply_target(avail, &err),
                err,
            })?;
            let total = HEADER_LEN + h.payload_len as usize;
            if avail.len() >= total {
                let p = &self.buf[self.start + HEADER_LEN..self.start + total];
                self.start += total;
                if !on_frame(h, Payload::Borrowed(p)) {
                    return Ok(false);
                }
            } else if total > self.buf.len() {
                // Length already checked against MAX_PAYLOAD by decode.
                let mut v = vec![0u8; h.payload_len as usize];
                let have = avail.len() - HEADER_LEN;
                v[..have].copy_from_slice(&avail[HEADER_LEN..]);
                self.start = 0;
                self.end = 0;
                self.big = Some((h, v, have));
            } else {
                break;
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(true)
    }

    /// Read and hand out frames until the source would block (or a read came back short: the
    /// socket is drained), ends, or `on_frame` returns false.
    pub(crate) fn read_frames<R: Read>(
        &mut self,
        src: &mut R,
        on_frame: &mut dyn FnMut(Header, Payload<'_>) -> bool,
    ) -> Result<ReadStop, FrameError> {
        loop {
            // 1. Hand out every complete frame already buffered.
            if !self.deliver_buffered(on_frame)? {
                return Ok(ReadStop::Stopped);
            }
            // 2. Read more.
            let asked;
            let r = if let Some((_, v, filled)) = &mut self.big {
                asked = v.len() - *filled;
                src.read(&mut v[*filled..])
            } else {
                if self.start > 0 && self.buf.len() - self.end < HEADER_LEN.max(self.buf.len() / 4)
                {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                asked = self.buf.len() - self.end;
                src.read(&mut self.buf[self.end..])
            };
            match r {
                Ok(0) => return Ok(ReadStop::Eof),
                Ok(n) => {
                    if let Some((_, v, filled)) = &mut self.big {
                        *filled += n;
                        if *filled == v.len() {
                            let (h, v, _) = self.big.take().expect("checked above");
                            if !on_frame(h, Payload::Owned(v)) {
                                return Ok(ReadStop::Stopped);
                            }
                        }
                    } else {
                        self.end += n;
                    }
                    // A short read drained the socket: hand out what arrived and return without
                    // another `read` that would only say EAGAIN (saves a syscall per message).
                    // Safe with edge-triggered epoll: bytes arriving later raise a new edge, and
                    // client pollers simply read again.
                    if n < asked && self.stop_on_short_read {
                        if !self.deliver_buffered(on_frame)? {
                            return Ok(ReadStop::Stopped);
                        }
                        return Ok(ReadStop::WouldBlock);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadStop::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

/// Write as much as possible of `hdr ++ payload` starting at byte `pos`, with vectored writes.
/// Returns the new position (== 32 + payload.len() when done); stops at `WouldBlock`.
pub(crate) fn write_frame<W: Write>(
    dst: &mut W,
    hdr: &[u8; HEADER_LEN],
    payload: &[u8],
    mut pos: usize,
) -> io::Result<usize> {
    let total = HEADER_LEN + payload.len();
    while pos < total {
        let r = if pos < HEADER_LEN {
            dst.write_vectored(&[IoSlice::new(&hdr[pos..]), IoSlice::new(payload)])
        } else {
            dst.write(&payload[pos - HEADER_LEN..])
        };
        match r {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "connection closed while writing",
                ))
            }
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(pos),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields its bytes in chunks of `step`, then WouldBlock.
    struct Chunks {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }
    impl Read for Chunks {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(b.len()).min(self.data.len() - self.pos);
            b[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn reassembles_small_and_big_frames_from_any_chunking() {
        let sizes = [0usize, 1, 100, 70_000, 5, 200_000, 3];
        let mut data = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let p: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            data.extend_from_slice(&Header::request(2, i as u64, n as u32).encode_message(&p));
        }
        for step in [1, 7, 32, 1000, 65_536, usize::MAX] {
            let mut src = Chunks {
                data: data.clone(),
                pos: 0,
                step,
            };
            let mut r = FrameReader::new().exhaustive();
            let mut got = Vec::new();
            let r = r.read_frames(&mut src, &mut |h, p| {
                got.push((h.request_id, p.into_vec()));
                true
            });
            assert!(matches!(r, Ok(ReadStop::WouldBlock)), "{r:?}");
            assert_eq!(got.len(), sizes.len(), "step {step}");
            for (i, (id, p)) in got.iter().enumerate() {
                assert_eq!(*id, i as u64);
                assert_eq!(p.len(), sizes[i]);
                assert!(p.iter().enumerate().all(|(j, &b)| b == (i + j) as u8));
            }
        }
    }

    #[test]
    fn oversize_header_is_refused_with_reply_target() {
        let h = Header::request(2, 77, u32::MAX).encode();
        let mut src = Chunks {
            data: h.to_vec(),
            pos: 0,
            step: 100,
        };
        let mut r = FrameReader::new();
        match r.read_frames(&mut src, &mut |_, _| true) {
            Err(FrameError::Decode {
                err: DecodeError::TooLarge { .. },
                reply_to: Some((2, 77)),
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
