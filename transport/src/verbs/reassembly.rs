//! Message framing over a reliable-connected queue pair (sans-I/O).
//!
//! Receive buffers are MTU-sized, not RPC-sized: a message (32-byte header + payload up to
//! `MAX_PAYLOAD`) travels as a sequence of SENDs of at most `frag` bytes each (`frag` = the
//! receiver's buffer size, learnt in the handshake). RC delivers the SENDs of one queue pair
//! reliably and in order, so fragments carry no header of their own:
//!
//! - the first fragment of a message starts with its RPC header, whose payload length gives the
//!   message's total size;
//! - every fragment but the last of a message is exactly `frag` bytes; the last is what remains
//!   (1..=`frag` bytes); no fragment carries bytes of two messages.
//!
//! [`Reassembler`] (one per queue pair) checks those rules and rebuilds messages; the header is
//! decoded — and so its length checked against `MAX_PAYLOAD` — before any buffer is sized from
//! it. A message that fits one fragment is handed out in place (no copy). [`fragments`] is the
//! sending side.

use crate::wire::{DecodeError, Header, HEADER_LEN};

/// Byte ranges of a `total`-byte message, one per fragment of at most `frag` bytes (what
/// `datapath::Link::pump` posts; the tests use it as the sender).
#[cfg(test)]
pub(crate) fn fragments(total: usize, frag: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    assert!(frag >= HEADER_LEN, "fragment size must hold a header");
    (0..total)
        .step_by(frag)
        .map(move |start| start..(start + frag).min(total))
}

/// A broken framing rule (the queue pair is then unusable: close it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The first fragment's header does not decode.
    #[error("bad message header: {err}")]
    Header {
        /// The decoder's reason.
        err: DecodeError,
        /// `(opcode, request id)` if the header was intact enough to address an error reply.
        reply_to: Option<(u16, u64)>,
    },
    /// A fragment is longer than the rest of its message.
    #[error("fragment of {len} bytes overruns its message ({left} bytes left)")]
    Overrun {
        /// Fragment length.
        len: usize,
        /// Bytes the message still needed.
        left: usize,
    },
    /// A fragment other than a message's last is shorter than the fragment size.
    #[error("short fragment of {len} bytes in the middle of a message (fragment size {frag})")]
    Short {
        /// Fragment length.
        len: usize,
        /// Agreed fragment size.
        frag: usize,
    },
    /// A fragment larger than the agreed size.
    #[error("fragment of {len} bytes exceeds the agreed fragment size {frag}")]
    TooLong {
        /// Fragment length.
        len: usize,
        /// Agreed fragment size.
        frag: usize,
    },
}

/// What one fragment completed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A whole message in one fragment: its payload, borrowed from the fragment.
    Whole(Header, &'a [u8]),
    /// The last fragment of a multi-fragment message: the reassembled payload.
    Done(Header, Vec<u8>),
    /// A fragment of a message still incomplete.
    More,
}

/// Rebuilds messages from the fragments of one queue pair.
#[derive(Debug)]
pub(crate) struct Reassembler {
    frag: usize,
    partial: Option<(Header, Vec<u8>)>,
}

/// For a header that failed to decode: can an error reply still be addressed? (As for streams:
/// only for well-formed-but-refused headers.)
fn reply_target(b: &[u8], err: &DecodeError) -> Option<(u16, u64)> {
    match err {
        DecodeError::BadVersion { .. }
        | DecodeError::TooLarge { .. }
        | DecodeError::Reserved { .. } => {
            let op = u16::from_le_bytes([b[6], b[7]]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[8..16]);
            Some((op, u64::from_le_bytes(id)))
        }
        _ => None,
    }
}

impl Reassembler {
    /// Fragments of at most `frag` bytes (this side's receive buffer size).
    pub(crate) fn new(frag: usize) -> Self {
        assert!(frag >= HEADER_LEN, "fragment size must hold a header");
        Reassembler {
            frag,
            partial: None,
        }
    }

    /// Is a message partly received?
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Take one fragment, in arrival order.
    pub(crate) fn push<'a>(&mut self, f: &'a [u8]) -> Result<Piece<'a>, FrameError> {
        if f.len() > self.frag {
            return Err(FrameError::TooLong {
                len: f.len(),
                frag: self.frag,
            });
        }
        match &mut self.partial {
            None => {
                let h = Header::decode(f).map_err(|err| FrameError::Header {
                    reply_to: if f.len() >= HEADER_LEN {
                        reply_target(f, &err)
                    } else {
                        None
                    },
                    err,
                })?;
                // `decode` checked payload_len <= MAX_PAYLOAD: safe to size a buffer from it.
                let total = HEADER_LEN + h.payload_len as usize;
                if f.len() > total {
                    return Err(FrameError::Overrun {
                        len: f.len(),
                        left: total,
                    });
                }
                if f.len() == total {
                    return Ok(Piece::Whole(h, &f[HEADER_LEN..]));
                }
                if f.len() < self.frag {
                    return Err(FrameError::Short {
                        len: f.len(),
                        frag: self.frag,
                    });
                }
                let mut buf = Vec::with_capacity(h.payload_len as usize);
                buf.extend_from_slice(&f[HEADER_LEN..]);
                self.partial = Some((h, buf));
                Ok(Piece::More)
            }
            Some((h, buf)) => {
                let left = h.payload_len as usize - buf.len();
                if f.len() > left {
                    return Err(FrameError::Overrun { len: f.len(), left });
                }
                if f.len() < left && f.len() < self.frag {
                    return Err(FrameError::Short {
                        len: f.len(),
                        frag: self.frag,
                    });
                }
                buf.extend_from_slice(f);
                if f.len() == left {
                    let (h, buf) = self.partial.take().expect("partial is Some here");
                    return Ok(Piece::Done(h, buf));
                }
                Ok(Piece::More)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_PAYLOAD;

    fn message(id: u64, len: usize) -> Vec<u8> {
        let h = Header::request(7, id, len as u32);
        let mut m = h.encode().to_vec();
        m.extend((0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(id as u8)));
        m
    }

    /// Split messages into fragments and feed them back: every message comes out whole, equal to
    /// what went in, in order; one-fragment messages are handed out in place.
    #[test]
    fn round_trip_over_fragment_sizes() {
        for frag in [32usize, 33, 64, 256, 1024, 4096] {
            let mut r = Reassembler::new(frag);
            let lens = [
                0usize,
                1,
                frag - HEADER_LEN,
                frag - HEADER_LEN + 1,
                frag,
                3 * frag + 5,
                70_000,
            ];
            for (id, &len) in lens.iter().enumerate() {
                let m = message(id as u64, len);
                let ranges: Vec<_> = fragments(m.len(), frag).collect();
                assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), m.len());
                assert!(ranges.iter().all(|r| !r.is_empty() && r.len() <= frag));
                let n = ranges.len();
                for (i, rg) in ranges.into_iter().enumerate() {
                    let got = r.push(&m[rg]).unwrap();
                    match got {
                        Piece::More => assert!(i + 1 < n, "message {id} did not complete"),
                        Piece::Whole(h, p) => {
                            assert_eq!(n, 1);
                            assert_eq!((h.request_id, p), (id as u64, &m[HEADER_LEN..]));
                        }
                        Piece::Done(h, p) => {
                            assert_eq!(i + 1, n);
                            assert!(n > 1);
                            assert_eq!(h.request_id, id as u64);
                            assert!(p == m[HEADER_LEN..], "payload of message {id} differs");
                        }
                    }
                }
                assert!(!r.in_progress());
            }
        }
    }

    #[test]
    fn largest_message_reassembles() {
        let frag = 4096;
        let m = message(1, MAX_PAYLOAD);
        let mut r = Reassembler::new(frag);
        let mut done = None;
        for rg in fragments(m.len(), frag) {
            if let Piece::Done(h, p) = r.push(&m[rg]).unwrap() {
                done = Some((h, p));
            }
        }
        let (h, p) = done.expect("completes");
        assert_eq!(h.payload_len as usize, MAX_PAYLOAD);
        assert!(p == m[HEADER_LEN..]);
    }

    #[test]
    fn broken_rules_are_errors() {
        let frag = 64;
        // A short fragment in the middle of a message.
        let m = message(1, 200);
        let mut r = Reassembler::new(frag);
        assert_eq!(r.push(&m[..64]).unwrap(), Piece::More);
        assert!(matches!(r.push(&m[64..100]), Err(FrameError::Short { .. })));
        // A first fragment shorter than the fragment size but not the whole message.
        let mut r = Reassembler::new(frag);
        assert!(matches!(r.push(&m[..40]), Err(FrameError::Short { .. })));
        // A fragment carrying bytes past its message (two messages in one fragment).
        let mut two = message(1, 4);
        two.extend(message(2, 4));
        let mut r = Reassembler::new(128);
        assert!(matches!(r.push(&two), Err(FrameError::Overrun { .. })));
        // Too long for the agreed size.
        let mut r = Reassembler::new(frag);
        assert!(matches!(r.push(&m[..65]), Err(FrameError::TooLong { .. })));
        // Overrun of the last fragment.
        let mut r = Reassembler::new(frag);
        let m = message(3, 40); // 72 bytes: 64 + 8
        assert_eq!(r.push(&m[..64]).unwrap(), Piece::More);
        let mut last = m[64..].to_vec();
        last.push(0);
        assert!(matches!(
            r.push(&last),
            Err(FrameError::Overrun { len: 9, left: 8 })
        ));
    }

    #[test]
    fn bad_headers_are_reported_before_allocating() {
        let mut r = Reassembler::new(64);
        // Garbage: bad magic, no reply possible.
        match r.push(&[0xEE; 64]) {
            Err(FrameError::Header { reply_to: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Truncated header.
        assert!(matches!(r.push(&[0; 10]), Err(FrameError::Header { .. })));
        // A length above MAX_PAYLOAD is refused from the header alone (no 4 GiB buffer), and the
        // error can be answered.
        let mut h = Header::request(9, 42, 0).encode();
        h[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        match r.push(&h) {
            Err(FrameError::Header {
                err: DecodeError::TooLarge { .. },
                reply_to: Some((9, 42)),
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fragments_cover_exactly() {
        assert_eq!(fragments(0, 64).count(), 0);
        assert_eq!(fragments(32, 64).collect::<Vec<_>>(), vec![0..32]);
        assert_eq!(
            fragments(130, 64).collect::<Vec<_>>(),
            vec![0..64, 64..128, 128..130]
        );
    }
}
