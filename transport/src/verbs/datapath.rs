//! Data path shared by the client and the server: an [`Endpoint`] (device, PD, completion
//! channel, receive and send CQs, shared receive queue), its receive buffers ([`Rx`]), its send
//! slots ([`Tx`]) and one [`Link`] per queue pair (fragment size, reassembly, sends in flight).
//!
//! Buffers: the receive region is `n` MTU-sized buffers, all posted to the SRQ; a completion
//! names its buffer (`wr_id` = index), the fragment is read in place, and the buffer is reposted
//! right after. A fragment to send is posted *inline* when it fits the queue pair's inline limit
//! (the provider copies it at post time); otherwise it is copied into a free send slot, and the
//! slot returns to the free list at the send's completion (`wr_id` = slot index, or
//! [`INLINE_WR`]). Every send is signaled; a link counts its sends in flight so it never
//! overfills its send queue, and [`Tx`] counts all of them so the send CQ never overflows.
//!
//! Threading: an `Endpoint` is shared (`Arc`; the server's acceptor creates queue pairs on it);
//! `Rx` and `Tx` belong to one thread at a time (the dispatch thread, or the client's poller and
//! sender under their locks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::addr::Piece;
use super::handshake::{mtu_bytes, Selected};
use super::sys::{CompChannel, Cq, Pd, Qp, Region, Srq, VResult, Wc, POLL_BATCH};
use crate::limits::{VERBS_MAX_INLINE, VERBS_SQ_DEPTH};
use crate::wire::HEADER_LEN;

/// `wr_id` of an inline send (it holds no slot).
pub(crate) const INLINE_WR: u64 = u64::MAX;

/// `wr_id` bit of a zero-copy send (from registered caller memory; the low bits name the
/// registration). Never set in slot indices.
pub(crate) const ZC_WR: u64 = 1 << 62;

/// Fragments posted zero-copy by this process (all endpoints): observability and tests.
pub(crate) static ZERO_COPY_SENDS: AtomicU64 = AtomicU64::new(0);

/// Kind of a completed send, from its `wr_id`.
pub(crate) fn zero_copy_id(wr_id: u64) -> Option<u64> {
    (wr_id != INLINE_WR && wr_id & ZC_WR != 0).then_some(wr_id & !ZC_WR)
}

/// Where a message's payload may be sent from without copying.
pub(crate) struct ZeroCopy<'r> {
    /// `wr_id` for its sends (`ZC_WR | id`).
    pub(crate) wr_id: u64,
    /// The registered payload: `piece(off, len)` of payload bytes.
    pub(crate) piece: &'r dyn Fn(usize, usize) -> Piece,
    /// Sends posted from it (the caller waits for as many completions before unregistering).
    pub(crate) posted: usize,
}

/// Device resources of one poller (a server dispatch thread or a client session).
pub(crate) struct Endpoint {
    pub(crate) sel: Selected,
    pub(crate) pd: Arc<Pd>,
    pub(crate) channel: Arc<CompChannel>,
    pub(crate) recv_cq: Arc<Cq>,
    pub(crate) send_cq: Arc<Cq>,
    pub(crate) srq: Arc<Srq>,
    /// Size of each receive buffer: the largest fragment this endpoint accepts.
    pub(crate) buf_size: usize,
}

impl Endpoint {
    pub(crate) fn new(sel: Selected, recv_bufs: usize, send_cq: usize) -> VResult<Endpoint> {
        let pd = Pd::new(&sel.ctx)?;
        let channel = CompChannel::new(&sel.ctx)?;
        let recv_cq = Cq::new(&sel.ctx, recv_bufs, Some(&channel))?;
        let send_cq = Cq::new(&sel.ctx, send_cq, Some(&channel))?;
        let srq = Srq::new(&pd, recv_bufs)?;
        let buf_size = mtu_bytes(sel.port.active_mtu);
        Ok(Endpoint {
            sel,
            pd,
            channel,
            recv_cq,
            send_cq,
            srq,
            buf_size,
        })
    }

    /// A new RC queue pair on this endpoint's CQs and SRQ.
    pub(crate) fn new_qp(&self) -> VResult<Qp> {
        Qp::new_rc(
            &self.pd,
            &self.send_cq,
            &self.recv_cq,
            &self.srq,
            VERBS_SQ_DEPTH,
            VERBS_MAX_INLINE,
        )
    }
}

/// The receive buffers of an endpoint.
pub(crate) struct Rx {
    region: Region,
    buf_size: usize,
    wcs: [Wc; POLL_BATCH],
}

impl Rx {
    /// Allocate, register and post `n` buffers of the endpoint's size.
    pub(crate) fn new(ep: &Endpoint, n: usize) -> VResult<Rx> {
        let region = Region::new(&ep.pd, n * ep.buf_size)?;
        for i in 0..n {
            ep.srq
                .post_recv(i as u64, &region, i * ep.buf_size, ep.buf_size)?;
        }
        Ok(Rx {
            region,
            buf_size: ep.buf_size,
            wcs: [Wc::default(); POLL_BATCH],
        })
    }

    /// Poll the receive CQ; `f` sees each completion and its fragment (valid completions only
    /// have bytes), then the buffer is reposted. Returns how many completions there were.
    pub(crate) fn poll(&mut self, ep: &Endpoint, f: &mut dyn FnMut(&Wc, &[u8])) -> VResult<usize> {
        let n = ep.recv_cq.poll(&mut self.wcs)?;
        for i in 0..n {
            let wc = self.wcs[i];
            let slot = wc.wr_id as usize;
            let off = slot * self.buf_size;
            let len = if wc.ok() {
                (wc.byte_len as usize).min(self.buf_size)
            } else {
                0
            };
            f(&wc, self.region.slice(off, len));
            ep.srq
                .post_recv(wc.wr_id, &self.region, off, self.buf_size)?;
        }
        Ok(n)
    }
}

/// The send slots of an endpoint.
pub(crate) struct Tx {
    region: Region,
    slot_size: usize,
    free: Vec<u32>,
    /// Sends posted and not completed, over all links (≤ `cq_cap`).
    outstanding: usize,
    cq_cap: usize,
    wcs: [Wc; POLL_BATCH],
}

impl Tx {
    pub(crate) fn new(ep: &Endpoint, slots: usize, cq_cap: usize) -> VResult<Tx> {
        Ok(Tx {
            region: Region::new(&ep.pd, slots * ep.buf_size)?,
            slot_size: ep.buf_size,
            free: (0..slots as u32).rev().collect(),
            outstanding: 0,
            cq_cap,
            wcs: [Wc::default(); POLL_BATCH],
        })
    }

    /// Reap send completions; `f` gets each (to find its link). Returns how many.
    pub(crate) fn reap(&mut self, ep: &Endpoint, f: &mut dyn FnMut(&Wc)) -> VResult<usize> {
        let n = ep.send_cq.poll(&mut self.wcs)?;
        for i in 0..n {
            let wc = self.wcs[i];
            if wc.wr_id != INLINE_WR && wc.wr_id & ZC_WR == 0 {
                self.free.push(wc.wr_id as u32);
            }
            self.outstanding = self.outstanding.saturating_sub(1);
            f(&wc);
        }
        Ok(n)
    }
}

/// The sending side of one queue pair (its receiving side is a `Reassembler` kept by whoever
/// polls the receive CQ).
pub(crate) struct Link {
    pub(crate) qp: Qp,
    /// Fragment size agreed with the peer (both directions).
    pub(crate) frag: usize,
    /// Sends posted on this queue pair and not completed.
    pub(crate) in_flight: usize,
}

/// Progress of one outgoing message: bytes (of header + payload) already posted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cursor {
    pub(crate) sent: usize,
}

impl Link {
    pub(crate) fn new(qp: Qp, frag: usize) -> Link {
        Link {
            qp,
            frag,
            in_flight: 0,
        }
    }

    /// Post as many fragments of the message `hdr ++ payload` as resources allow, from
    /// `cur.sent` on (the fragments `reassembly::fragments` describes). Returns whether the whole message is now posted.
    ///
    /// With `zc`, fragments that lie wholly in the payload and are too large to go inline are
    /// sent straight from the registered payload (no slot, no copy).
    pub(crate) fn pump(
        &mut self,
        tx: &mut Tx,
        hdr: &[u8; HEADER_LEN],
        payload: &[u8],
        cur: &mut Cursor,
        mut zc: Option<&mut ZeroCopy<'_>>,
    ) -> VResult<bool> {
        let total = HEADER_LEN + payload.len();
        debug_assert!(self.frag <= tx.slot_size);
        while cur.sent < total {
            let r = cur.sent..(cur.sent + self.frag).min(total);
            if self.in_flight >= VERBS_SQ_DEPTH || tx.outstanding >= tx.cq_cap {
                return Ok(false);
            }
            // The fragment as (header part, payload part).
            let h = &hdr[r.start.min(HEADER_LEN)..r.end.min(HEADER_LEN)];
            let p = &payload[r.start.max(HEADER_LEN) - HEADER_LEN..r.end - HEADER_LEN];
            let len = r.len();
            if len <= self.qp.max_inline() {
                self.qp.post_send_inline(INLINE_WR, &[h, p])?;
            } else if let Some(z) = zc.as_deref_mut().filter(|_| h.is_empty()) {
                let piece = (z.piece)(r.start - HEADER_LEN, len);
                // SAFETY: `z.piece` hands out ranges of the message's registered payload
                // (`ZeroCopy`'s contract), which its owner keeps registered and unmodified until
                // all `z.posted` sends tagged `z.wr_id` have completed.
                #[allow(unsafe_code)]
                unsafe {
                    self.qp.post_send(z.wr_id, &[piece])?
                };
                z.posted += 1;
                ZERO_COPY_SENDS.fetch_add(1, Ordering::Relaxed);
            } else {
                let Some(slot) = tx.free.pop() else {
                    return Ok(false);
                };
                let off = slot as usize * tx.slot_size;
                tx.region.write(off, &[h, p]);
                let piece = Piece {
                    addr: tx.region.addr(off),
                    len: len as u32,
                    lkey: tx.region.lkey(),
                };
                // SAFETY: `piece` is slot `slot` of the Tx region, registered while the Tx lives;
                // its owners drop queue pairs before the Tx (field order of the server's
                // `Dispatcher` and the client's session). The slot left the free list above and
                // returns to it only when the completion tagged `slot` is reaped (or below, if
                // the post fails), so nobody rewrites it while the adapter reads it.
                #[allow(unsafe_code)]
                let posted = unsafe { self.qp.post_send(slot as u64, &[piece]) };
                if let Err(e) = posted {
                    tx.free.push(slot);
                    return Err(e);
                }
            }
            self.in_flight += 1;
            tx.outstanding += 1;
            cur.sent = r.end;
        }
        Ok(cur.sent == total)
    }
}
