//! Verbs client channel: one RC queue pair per session, on the session's own endpoint (CQs,
//! SRQ, buffers). A sender lock keeps a message's fragments contiguous on the queue pair (and
//! owns the send slots); the session's poller reads the receive CQ under the receiver lock. See
//! `session.rs` for caller-driven progress.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::addr::QpAddress;
use super::datapath::{zero_copy_id, Cursor, Endpoint, Link, Rx, Tx, ZeroCopy, ZC_WR};
use super::handshake::{random_psn, read_hello, select, write_hello, Hello, Options};
use super::reassembly::{Piece, Reassembler};
use super::sys::{poll_readable, SendReg, VerbsError};
use crate::error::{Error, LinkError, Result};
use crate::limits::{
    VERBS_CLIENT_RECV_BUFFERS, VERBS_CLIENT_SEND_SLOTS, VERBS_HANDSHAKE_TIMEOUT, VERBS_SQ_DEPTH,
    VERBS_ZERO_COPY_MIN,
};
use crate::locator::Locator;
use crate::session::{ClientChannel, ClientConfig, Delivery, Session};
use crate::wire::{Header, Status};

struct Sender {
    link: Link,
    tx: Tx,
}

struct Receiver {
    rx: Rx,
    reasm: Reassembler,
    /// Empty non-blocking polls since the side channel was last checked.
    idle: u32,
    ready: Vec<bool>,
}

struct VerbsClient {
    sender: Mutex<Sender>,
    receiver: Mutex<Receiver>,
    /// The TCP side channel: end of stream = the server is gone.
    tcp: TcpStream,
    ep: Arc<Endpoint>,
}

/// Non-blocking polls between two checks of the side channel while spinning.
const SIDE_CHANNEL_CHECK_EVERY: u32 = 1024;

pub(crate) fn connect(loc: &Locator, cfg: &ClientConfig) -> Result<Session> {
    let fail = |reason: String| Error::Connect {
        locator: loc.to_string(),
        reason,
    };
    let device = |reason: VerbsError| Error::Device {
        locator: loc.to_string(),
        reason: reason.to_string(),
    };
    let opts = Options::from_env().map_err(device)?;
    let sel = select(&opts).map_err(device)?;
    let ep =
        Arc::new(Endpoint::new(sel, VERBS_CLIENT_RECV_BUFFERS, VERBS_SQ_DEPTH).map_err(device)?);
    let rx = Rx::new(&ep, VERBS_CLIENT_RECV_BUFFERS).map_err(device)?;
    let tx = Tx::new(&ep, VERBS_CLIENT_SEND_SLOTS, VERBS_SQ_DEPTH).map_err(device)?;
    let qp = ep.new_qp().map_err(device)?;

    let mut last = String::from("no address");
    let mut stream = None;
    for addr in crate::tcp::resolve(loc)? {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("side channel {addr}: {e}"),
        }
    }
    let mut s = stream.ok_or_else(|| fail(last))?;
    let setup = s
        .set_nodelay(true)
        .and_then(|_| s.set_read_timeout(Some(VERBS_HANDSHAKE_TIMEOUT)))
        .and_then(|_| s.set_write_timeout(Some(VERBS_HANDSHAKE_TIMEOUT)));
    setup.map_err(|e| fail(format!("side channel setup: {e}")))?;

    let psn = random_psn();
    let ours = Hello {
        qp: QpAddress {
            qpn: qp.qpn(),
            psn,
            lid: ep.sel.port.lid,
            gid: ep.sel.gid,
            mtu: ep.sel.port.active_mtu,
        },
        recv_buf: ep.buf_size as u32,
    };
    write_hello(&mut s, &ours)
        .map_err(|e| fail(format!("sending the queue-pair description: {e}")))?;
    let peer = read_hello(&mut s).map_err(|e| fail(e.to_string()))?;
    let mtu = ep.sel.port.active_mtu.min(peer.qp.mtu);
    qp.connect(&ep.sel.path, psn, mtu, &peer.qp)
        .map_err(|e| fail(format!("{e} (on RoCE check gid=/FAASCACHE_VERBS_GID: both sides need GIDs of the same type on one network)")))?;
    s.set_read_timeout(None)
        .map_err(|e| fail(format!("side channel setup: {e}")))?;
    let frag = ep.buf_size.min(peer.recv_buf as usize);
    tracing::debug!(
        dev = ep.sel.ctx.name(),
        qpn = qp.qpn(),
        peer_qpn = peer.qp.qpn,
        frag,
        "verbs queue pair connected"
    );
    let chan = VerbsClient {
        sender: Mutex::new(Sender {
            link: Link::new(qp, frag),
            tx,
        }),
        receiver: Mutex::new(Receiver {
            rx,
            reasm: Reassembler::new(frag),
            idle: 0,
            ready: Vec::new(),
        }),
        tcp: s,
        ep,
    };
    Ok(Session::new(Box::new(chan), loc.clone(), cfg.poll))
}

/// Has the peer closed the side channel? (It never sends on it after the handshake.)
pub(super) fn side_channel_closed(s: &TcpStream) -> bool {
    match crate::sys::poll_fd(s, true, false, Some(Duration::ZERO)) {
        Ok(false) => false,
        Ok(true) => {
            let mut b = [0u8; 1];
            // Readable: end of stream, an error, or bytes the protocol does not allow. Any of
            // them ends the connection.
            !matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        Err(_) => true,
    }
}

impl VerbsClient {
    /// Reap send completions; an error completion breaks the session. Returns how many
    /// zero-copy sends completed.
    fn reap(&self, s: &mut Sender) -> Result<usize, VerbsError> {
        let mut err = None;
        let mut zc_done = 0;
        let link = &mut s.link;
        s.tx.reap(&self.ep, &mut |wc| {
            link.in_flight = link.in_flight.saturating_sub(1);
            if zero_copy_id(wc.wr_id).is_some() {
                zc_done += 1;
            }
            if !wc.ok() && err.is_none() {
                err = Some(VerbsError::Other(format!(
                    "send failed: {}",
                    wc.status_str()
                )));
            }
        })?;
        err.map_or(Ok(zc_done), Err)
    }

    /// Between two attempts to post: let replies be read, notice a dead server.
    fn wait_for_room(&self, stalled: &mut dyn FnMut()) -> Result<(), VerbsError> {
        stalled();
        if side_channel_closed(&self.tcp) {
            return Err(VerbsError::Other("connection closed by the server".into()));
        }
        std::thread::yield_now();
        Ok(())
    }

    fn poll_rx(&self, r: &mut Receiver, out: &mut Vec<Delivery>) -> Result<usize, VerbsError> {
        let mut err = None;
        let reasm = &mut r.reasm;
        let n = r.rx.poll(&self.ep, &mut |wc, frag| {
            if err.is_some() {
                return;
            }
            if !wc.ok() {
                err = Some(VerbsError::Other(format!(
                    "receive failed: {}",
                    wc.status_str()
                )));
                return;
            }
            let (h, payload): (Header, Vec<u8>) = match reasm.push(frag) {
                Ok(Piece::More) => return,
                Ok(Piece::Whole(h, p)) => (h, p.to_vec()),
                Ok(Piece::Done(h, p)) => (h, p),
                Err(e) => {
                    err = Some(VerbsError::Other(format!(
                        "protocol violation from server: {e}"
                    )));
                    return;
                }
            };
            if !h.flags.is_response() {
                err = Some(VerbsError::Other(format!(
                    "server sent a request frame (opcode {})",
                    h.opcode
                )));
                return;
            }
            out.push((h.request_id, Status(h.status), payload));
        })?;
        err.map_or(Ok(n), Err)
    }
}

impl ClientChannel for VerbsClient {
    fn send_request(
        &self,
        header: &Header,
        payload: &[u8],
        stalled: &mut dyn FnMut(),
    ) -> Result<(), LinkError> {
        self.send_one(header, payload, stalled)
            .map_err(LinkError::Verbs)
    }

    fn progress(&self, wait: Option<Duration>, out: &mut Vec<Delivery>) -> Result<(), LinkError> {
        self.progress_inner(wait, out).map_err(LinkError::Verbs)
    }

    fn close(&self) {
        self.close_inner()
    }
}

impl VerbsClient {
    fn send_one(
        &self,
        header: &Header,
        payload: &[u8],
        stalled: &mut dyn FnMut(),
    ) -> Result<(), VerbsError> {
        let hdr = header.encode();
        // Held for the whole message: its fragments must be contiguous on the queue pair.
        let mut guard = self.sender.lock();
        let s = &mut *guard;
        let mut cur = Cursor::default();
        // A large payload is registered and sent from where it is; the registration ends (and
        // this call returns) only when all its sends have completed, so the borrow suffices.
        let reg = if payload.len() >= VERBS_ZERO_COPY_MIN {
            SendReg::new(&self.ep.pd, payload)
                .inspect_err(|e| tracing::debug!("zero-copy send not possible, copying: {e}"))
                .ok()
        } else {
            None
        };
        let piece = |off: usize, len: usize| match &reg {
            Some(r) => r.piece(off, len),
            None => unreachable!("zero-copy pieces are asked for only with a registration"),
        };
        let mut zc = reg.as_ref().map(|_| ZeroCopy {
            wr_id: ZC_WR,
            piece: &piece,
            posted: 0,
        });
        let mut zc_done = 0;
        loop {
            zc_done += self.reap(s)?;
            // Out of send slots or queue entries: keep reading replies (the server may wait for
            // us to take them), then retry once completions have freed something.
            if s.link
                .pump(&mut s.tx, &hdr, payload, &mut cur, zc.as_mut())?
            {
                break;
            }
            self.wait_for_room(stalled)?;
        }
        let posted = zc.map_or(0, |z| z.posted);
        while zc_done < posted {
            self.wait_for_room(stalled)?;
            zc_done += self.reap(s)?;
        }
        Ok(())
    }

    fn progress_inner(
        &self,
        wait: Option<Duration>,
        out: &mut Vec<Delivery>,
    ) -> Result<(), VerbsError> {
        let mut guard = self.receiver.lock();
        let r = &mut *guard;
        if self.poll_rx(r, out)? > 0 {
            r.idle = 0;
            return Ok(());
        }
        match wait.filter(|w| !w.is_zero()) {
            None => {
                r.idle += 1;
                if r.idle.is_multiple_of(SIDE_CHANNEL_CHECK_EVERY) && side_channel_closed(&self.tcp)
                {
                    return Err(VerbsError::Other("connection closed by the server".into()));
                }
            }
            Some(w) => {
                // Arm, then look again (a completion may have landed before the arm), then sleep
                // on the completion channel and the side channel.
                self.ep.recv_cq.arm()?;
                if self.poll_rx(r, out)? > 0 {
                    return Ok(());
                }
                let fds = [self.ep.channel.fd(), self.tcp.as_raw_fd()];
                poll_readable(&fds, w, &mut r.ready)
                    .map_err(|e| VerbsError::Other(format!("poll failed: {e}")))?;
                if r.ready.first() == Some(&true) {
                    self.ep.channel.drain_events();
                }
                if r.ready.get(1) == Some(&true) && side_channel_closed(&self.tcp) {
                    // Deliver what already arrived before reporting the failure.
                    self.poll_rx(r, out)?;
                    return Err(VerbsError::Other("connection closed by the server".into()));
                }
                self.poll_rx(r, out)?;
            }
        }
        Ok(())
    }

    fn close_inner(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
