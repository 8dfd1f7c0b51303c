//! Stream framing shared by the TCP client and server: parse whole messages out of a byte
//! stream, and write header + payload with vectored writes.
//!
//! Reading: bytes go into a read buffer that starts at [`STREAM_READ_BUFFER_INITIAL`] on the
//! first read and doubles, up to [`STREAM_READ_BUFFER`], only when bytes fill it; every complete
//! frame in it is handed out *in place* (no copy). A frame too large for it gets a buffer of its
//! own, but only after its header — and so its length — has passed [`Header::decode`], which
//! enforces [`crate::limits::MAX_PAYLOAD`]; that buffer grows as the bytes arrive. Nothing is
//! ever allocated from an unchecked length.
//!
//! A server's readers draw from a shared [`ByteBudget`]: growing a read buffer past its first
//! size takes the growth from it, a large frame takes its whole length when its header arrives.
//! When the budget is spent the reader stops with [`ReadStop::NoBudget`] (its bytes wait in the
//! kernel) and the caller tries again later. Everything taken is given back when the frame is
//! handed out, the buffer shrinks, or the reader is dropped.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use crate::conn_limits::ByteBudget;
use crate::limits::{
    MAX_PAYLOAD, STREAM_BIG_GROW_MIN, STREAM_READ_BUFFER, STREAM_READ_BUFFER_INITIAL,
};
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
    /// The byte budget cannot hold what comes next; try again when others have given back.
    NoBudget,
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

/// A frame larger than the read buffer, being received into its own buffer.
struct Big {
    header: Header,
    /// Grows towards `header.payload_len` as bytes arrive.
    buf: Vec<u8>,
    filled: usize,
}

pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    big: Option<Big>,
    stop_on_short_read: bool,
    /// The server's shared budget (`None`: unlimited, for clients).
    budget: Option<Arc<ByteBudget>>,
    /// Bytes this reader holds of the budget.
    charged: usize,
    /// Bytes read so far (to tell whether a read made progress).
    bytes_read: u64,
    /// A large payload buffer the consumer gave back ([`FrameReader::give_spare`]): the next
    /// large frame that fits is received into it, without a fresh allocation (and its page
    /// faults) or regrowth.
    spare: Option<Vec<u8>>,
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

/// What handing out the buffered frames ended with.
enum Handed {
    /// Need more bytes.
    More,
    /// Stop reading and return this.
    Stop(ReadStop),
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.give(self.charged);
    }
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            big: None,
            stop_on_short_read: true,
            budget: None,
            charged: 0,
            bytes_read: 0,
            spare: None,
        }
    }

    /// Keep `buf` (a large frame's payload the consumer is done with) for the next large
    /// frame. Only buffers larger than the read buffer and at most [`MAX_PAYLOAD`] are kept,
    /// one at a time; a server's reader keeps one only while the budget stays at most half
    /// used with it (it is charged while kept, and given back when used, replaced or released
    /// as idle).
    pub(crate) fn give_spare(&mut self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap <= STREAM_READ_BUFFER || cap > MAX_PAYLOAD {
            return;
        }
        self.drop_spare();
        if self.budget.as_ref().is_none_or(|b| b.try_take_spare(cap)) {
            self.charged += cap;
            self.spare = Some(buf);
        }
    }

    /// Drop the spare buffer, giving back its charge.
    fn drop_spare(&mut self) {
        if let Some(old) = self.spare.take() {
            self.give(old.capacity());
        }
    }

    /// A reader whose buffers beyond the first [`STREAM_READ_BUFFER_INITIAL`] bytes come from
    /// `budget`.
    pub(crate) fn with_budget(budget: Arc<ByteBudget>) -> Self {
        let mut r = FrameReader::new();
        r.budget = Some(budget);
        r
    }

    /// Keep reading until the source says `WouldBlock` even after a short read (for sources
    /// that deliver in arbitrary chunks, e.g. tests). Sockets stop after a short read.
    #[cfg(test)]
    pub(crate) fn exhaustive(mut self) -> Self {
        self.stop_on_short_read = false;
        self
    }

    /// Bytes read from the source so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Whether part of a frame (header or body) is buffered.
    pub(crate) fn has_partial(&self) -> bool {
        self.big.is_some() || self.end > self.start
    }

    /// Bytes of the budget this reader holds.
    #[cfg(test)]
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// Give the read buffer back (to be allocated again on the next read) if it holds nothing:
    /// for connections gone quiet.
    pub(crate) fn release_idle_buffer(&mut self) {
        self.drop_spare();
        if self.big.is_none() && self.start == self.end && !self.buf.is_empty() {
            let extra = self.buf.len().saturating_sub(STREAM_READ_BUFFER_INITIAL);
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            self.give(extra);
        }
    }

    fn take(&mut self, n: usize) -> bool {
        let ok = self.budget.as_ref().is_none_or(|b| b.try_take(n));
        if ok {
            self.charged += n;
        }
        ok
    }

    fn give(&mut self, n: usize) {
        if let Some(b) = &self.budget {
            b.give(n);
        }
        self.charged -= n;
    }

    /// Hand out every complete frame already buffered.
    fn deliver_buffered(
        &mut self,
        on_frame: &mut dyn FnMut(Header, Payload<'_>) -> bool,
    ) -> Result<Handed, FrameError> {
        while self.big.is_none() && self.end - self.start >= HEADER_LEN {
            let avail = &self.buf[self.start..self.end];
            let h = Header::decode(avail).map_err(|err| FrameError::Decode {
                reply_to: reply_target(avail, &err),
                err,
            })?;
            let len = h.payload_len as usize;
            let total = HEADER_LEN + len;
            if avail.len() >= total {
                let p = &self.buf[self.start + HEADER_LEN..self.start + total];
                self.start += total;
                if !on_frame(h, Payload::Borrowed(p)) {
                    return Ok(Handed::Stop(ReadStop::Stopped));
                }
            } else if total > STREAM_READ_BUFFER {
                // Length already checked against MAX_PAYLOAD by decode. The whole length is
                // reserved now, so a message that started is never starved half-way.
                if !self.take(len) {
                    return Ok(Handed::Stop(ReadStop::NoBudget));
                }
                let have = self.end - self.start - HEADER_LEN;
                let mut v = match self.spare.take() {
                    // Memory already held: take the whole length at once (the frame's own
                    // charge, taken above, now covers it).
                    Some(mut v) if v.capacity() >= len => {
                        self.give(v.capacity());
                        v.clear();
                        v.resize(len, 0);
                        v
                    }
                    other => {
                        if let Some(small) = other {
                            self.give(small.capacity());
                        }
                        // A client (no budget) trusts its server's length (at most
                        // MAX_PAYLOAD, checked by decode): the whole length at once. A
                        // server reserves the whole length (charged above) but fills — and so
                        // faults in — only what arrives: the buffer never moves as it grows,
                        // so stalled senders cannot fragment the heap into more memory than
                        // the budget allows.
                        let first = if self.budget.is_none() {
                            len
                        } else {
                            len.min(have.max(STREAM_BIG_GROW_MIN))
                        };
                        let mut v = Vec::with_capacity(len);
                        v.resize(first, 0);
                        v
                    }
                };
                v[..have].copy_from_slice(&self.buf[self.start + HEADER_LEN..self.end]);
                self.start = 0;
                self.end = 0;
                self.big = Some(Big {
                    header: h,
                    buf: v,
                    filled: have,
                });
            } else {
                break;
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Handed::More)
    }

    /// Make room in the read buffer for the next read: allocate it, compact it, or grow it
    /// (from the budget). `false`: the budget cannot hold the growth.
    fn make_room(&mut self) -> bool {
        if self.buf.is_empty() {
            self.buf = vec![0u8; STREAM_READ_BUFFER_INITIAL];
        }
        let len = self.buf.len();
        if self.start > 0 && len - self.end < HEADER_LEN.max(len / 4) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == len && len < STREAM_READ_BUFFER {
            let grown = (len * 2).min(STREAM_READ_BUFFER);
            if !self.take(grown - len) {
                return false;
            }
            self.buf.resize(grown, 0);
        }
        true
    }

    /// Read and hand out frames until the source would block (or a read came back short: the
    /// socket is drained), ends, `on_frame` returns false, or the budget is spent.
    pub(crate) fn read_frames<R: Read>(
        &mut self,
        src: &mut R,
        on_frame: &mut dyn FnMut(Header, Payload<'_>) -> bool,
    ) -> Result<ReadStop, FrameError> {
        loop {
            // 1. Hand out every complete frame already buffered.
            if let Handed::Stop(s) = self.deliver_buffered(on_frame)? {
                return Ok(s);
            }
            // 2. Read more.
            let asked;
            let r = if let Some(b) = &mut self.big {
                let want = b.header.payload_len as usize;
                if b.filled == b.buf.len() {
                    // Grow as the bytes arrive (the budget was taken for the whole length).
                    let grown = want.min(b.buf.len().saturating_mul(2).max(STREAM_BIG_GROW_MIN));
                    b.buf.resize(grown, 0);
                }
                asked = b.buf.len() - b.filled;
                src.read(&mut b.buf[b.filled..])
            } else {
                if !self.make_room() {
                    return Ok(ReadStop::NoBudget);
                }
                asked = self.buf.len() - self.end;
                src.read(&mut self.buf[self.end..])
            };
            match r {
                Ok(0) => return Ok(ReadStop::Eof),
                Ok(n) => {
                    self.bytes_read += n as u64;
                    if let Some(b) = &mut self.big {
                        b.filled += n;
                        if b.filled == b.header.payload_len as usize {
                            let Big { header, buf, .. } = self.big.take().expect("checked above");
                            self.give(buf.len());
                            if !on_frame(header, Payload::Owned(buf)) {
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
                        if let Handed::Stop(s) = self.deliver_buffered(on_frame)? {
                            return Ok(s);
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
    fn a_spare_buffer_receives_the_next_big_frame_that_fits() {
        let frame = |id: u64, n: usize| {
            let p: Vec<u8> = (0..n).map(|j| (j as u8) ^ (id as u8)).collect();
            Header::request(2, id, n as u32).encode_message(&p)
        };
        let mut data = frame(1, 300_000);
        data.extend_from_slice(&frame(2, 900_000));
        data.extend_from_slice(&frame(3, 200_000));
        let mut src = Chunks {
            data,
            pos: 0,
            step: 50_000,
        };
        let mut r = FrameReader::new().exhaustive();
        // A spare that fits the first big frame (300 KB) is used; the next ones get their own.
        r.give_spare(Vec::with_capacity(400_000));
        let spare = vec![0xAAu8; 1 << 20];
        let spare_ptr = spare.as_ptr();
        let mut got = Vec::new();
        let stop = r.read_frames(&mut src, &mut |h, p| {
            got.push((h.request_id, p.into_vec()));
            true
        });
        assert!(matches!(stop, Ok(ReadStop::WouldBlock)), "{stop:?}");
        assert_eq!(got.len(), 3);
        for (id, v) in &got {
            let n = [300_000, 900_000, 200_000][*id as usize - 1];
            assert_eq!(v.len(), n);
            assert!(v
                .iter()
                .enumerate()
                .all(|(j, &b)| b == (j as u8) ^ (*id as u8)));
        }
        // Frame 1 (300 KB) went into the 400 KB spare.
        assert!(got[0].1.capacity() >= 400_000);
        // Again, with the 1 MiB spare given: the 900 KB frame lands in it.
        let mut src = Chunks {
            data: frame(4, 900_000),
            pos: 0,
            step: 50_000,
        };
        r.give_spare(spare);
        let mut out = None;
        let _ = r.read_frames(&mut src, &mut |_, p| {
            out = Some(p.into_vec());
            true
        });
        let v = out.expect("frame 4");
        assert_eq!(v.as_ptr(), spare_ptr, "received into the spare");
        assert!(v.len() == 900_000 && v.iter().enumerate().all(|(j, &b)| b == (j as u8) ^ 4));
        // Buffers the reader would not keep: too small, or larger than a payload can be.
        r.give_spare(Vec::with_capacity(1000));
        assert!(r.spare.is_none());
        r.give_spare(Vec::with_capacity(crate::limits::MAX_PAYLOAD + 1));
        assert!(r.spare.is_none());
    }

    #[test]
    fn a_servers_spare_buffer_is_charged_to_the_budget_and_given_back() {
        let budget = Arc::new(ByteBudget::new(3 << 20));
        let mut r = FrameReader::with_budget(budget.clone()).exhaustive();
        let base = budget.used();
        r.give_spare(vec![0u8; 1 << 20]);
        assert_eq!(budget.used(), base + (1 << 20), "a kept spare is charged");
        // A frame received into it: while it arrives the frame's length is charged, not both.
        let p = vec![5u8; 800_000];
        let mut src = Chunks {
            data: Header::request(2, 1, p.len() as u32).encode_message(&p),
            pos: 0,
            step: 100_000,
        };
        let mut got = None;
        let _ = r.read_frames(&mut src, &mut |_, p| {
            got = Some(p.into_vec());
            true
        });
        assert!(got.is_some_and(|v| v == p));
        assert!(
            budget.used() <= base + STREAM_READ_BUFFER,
            "all given back once handed out"
        );
        // Kept again, then released when the connection goes quiet.
        r.give_spare(vec![0u8; 1 << 20]);
        assert!(budget.used() >= base + (1 << 20));
        r.release_idle_buffer();
        assert_eq!(budget.used(), 0);
        // A budget that would be over half used with it: not kept.
        let tight = Arc::new(ByteBudget::new((2 << 20) - 1));
        let mut r = FrameReader::with_budget(tight.clone());
        r.give_spare(vec![0u8; 1 << 20]);
        assert!(r.spare.is_none() && tight.used() == 0);
    }

    /// A maximum-size header and part of its body: the reader holds what arrived (not the
    /// announced length), takes the whole length from the budget, and gives it back on drop.
    #[test]
    fn stalled_big_frame_holds_what_arrived_and_its_budget_share() {
        let len = crate::limits::MAX_PAYLOAD;
        let mut data = Header::request(2, 1, len as u32).encode().to_vec();
        data.extend(std::iter::repeat_n(7u8, 1_000_000));
        let budget = Arc::new(ByteBudget::new(2 * len));
        let mut r = FrameReader::with_budget(budget.clone()).exhaustive();
        let mut src = Chunks {
            data,
            pos: 0,
            step: 65_536,
        };
        let stop = r.read_frames(&mut src, &mut |_, _| panic!("incomplete frame delivered"));
        assert!(matches!(stop, Ok(ReadStop::WouldBlock)), "{stop:?}");
        assert!(r.has_partial());
        let held = r.big.as_ref().map(|b| b.buf.len()).unwrap();
        assert!(
            held < 2 * 1_000_000 + STREAM_BIG_GROW_MIN,
            "holds {held} bytes"
        );
        assert_eq!(r.charged(), len, "the whole announced length is reserved");
        assert_eq!(budget.used(), len);
        // A second such frame does not fit what is left: it waits, unread.
        let mut r2 = FrameReader::with_budget(budget.clone());
        let mut src2 = Chunks {
            data: Header::request(2, 2, len as u32).encode().to_vec(),
            pos: 0,
            step: 100,
        };
        assert!(budget.try_take(len / 2));
        let stop = r2.read_frames(&mut src2, &mut |_, _| true);
        assert!(matches!(stop, Ok(ReadStop::NoBudget)), "{stop:?}");
        budget.give(len / 2);
        drop(r);
        drop(r2);
        assert_eq!(budget.used(), 0, "everything given back");
    }

    /// Small frames grow the read buffer from its initial size, from the budget; an idle
    /// reader gives it back.
    #[test]
    fn read_buffer_grows_on_demand_and_is_released_when_idle() {
        let budget = Arc::new(ByteBudget::new(1 << 20));
        let mut r = FrameReader::with_budget(budget.clone()).exhaustive();
        let p = vec![1u8; 30_000];
        let mut src = Chunks {
            data: Header::request(2, 1, p.len() as u32).encode_message(&p),
            pos: 0,
            step: 1000,
        };
        let mut n = 0;
        let stop = r.read_frames(&mut src, &mut |_, p| {
            n += p.as_slice().len();
            true
        });
        assert!(matches!(stop, Ok(ReadStop::WouldBlock)), "{stop:?}");
        assert_eq!(n, 30_000);
        assert!(r.buf.len() >= 30_032 && r.buf.len() <= STREAM_READ_BUFFER);
        assert_eq!(budget.used(), r.buf.len() - STREAM_READ_BUFFER_INITIAL);
        r.release_idle_buffer();
        assert!(r.buf.is_empty());
        assert_eq!(budget.used(), 0);
        // With no budget at all, a frame larger than the initial buffer waits.
        let none = Arc::new(ByteBudget::new(0));
        let mut r = FrameReader::with_budget(none).exhaustive();
        let mut src = Chunks {
            data: Header::request(2, 1, p.len() as u32).encode_message(&p),
            pos: 0,
            step: 1000,
        };
        let stop = r.read_frames(&mut src, &mut |_, _| true);
        assert!(matches!(stop, Ok(ReadStop::NoBudget)), "{stop:?}");
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
