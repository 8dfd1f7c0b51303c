//! TCP client channel. One connection per session; a writer lock keeps frames whole, the
//! session's poller reads. See `session.rs` for caller-driven progress.

use std::net::TcpStream;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, LinkError, Result};
use crate::frame::{write_frame, FrameError, FrameReader, ReadStop};
use crate::locator::Locator;
use crate::session::{ClientChannel, ClientConfig, Delivery, Session};
use crate::sys::poll_fd;
use crate::wire::{Header, Status, HEADER_LEN};
use std::io::Write;

struct TcpClient {
    stream: TcpStream,
    reader: Mutex<FrameReader>,
    /// Writer lock (keeps frames whole) and a scratch buffer that batches small frames into
    /// one `write`.
    writer: Mutex<Vec<u8>>,
    /// A large reply buffer given back by the caller ([`Session::recycle`]), handed to the
    /// reader on its next progress (its own lock: the poller holds the reader's while it waits).
    spare: Mutex<Option<Vec<u8>>>,
}

/// Batches at most this many bytes are copied into one buffer and written with one `write`;
/// larger frames go out with `writev` straight from the caller's payload.
const COALESCE_MAX: usize = 256 * 1024;

pub(crate) fn connect(loc: &Locator, cfg: &ClientConfig) -> Result<Session> {
    let mut last = String::new();
    for addr in super::resolve(loc)? {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => {
                let setup = s.set_nodelay(true).and_then(|_| s.set_nonblocking(true));
                if let Err(e) = setup {
                    last = e.to_string();
                    continue;
                }
                let chan = TcpClient {
                    stream: s,
                    reader: Mutex::new(FrameReader::new()),
                    writer: Mutex::new(Vec::new()),
                    spare: Mutex::new(None),
                };
                return Ok(Session::new(Box::new(chan), loc.clone(), cfg.poll));
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(Error::Connect {
        locator: loc.to_string(),
        reason: last,
    })
}

impl ClientChannel for TcpClient {
    fn send_request(
        &self,
        header: &Header,
        payload: &[u8],
        stalled: &mut dyn FnMut(),
    ) -> Result<(), LinkError> {
        let hdr = header.encode();
        let total = HEADER_LEN + payload.len();
        let _w = self.writer.lock();
        let mut pos = 0;
        loop {
            pos = write_frame(&mut &self.stream, &hdr, payload, pos)
                .map_err(|e| LinkError::io("write", e))?;
            if pos == total {
                return Ok(());
            }
            // Socket buffer full: keep reading replies (the server may be blocked writing to us),
            // then wait for room.
            stalled();
            poll_fd(&self.stream, false, true, Some(Duration::from_millis(1)))
                .map_err(|e| LinkError::io("poll", e))?;
        }
    }

    fn send_requests(
        &self,
        reqs: &[(Header, &[u8])],
        stalled: &mut dyn FnMut(),
    ) -> Result<(), LinkError> {
        let total: usize = reqs.iter().map(|(_, p)| HEADER_LEN + p.len()).sum();
        if reqs.len() <= 1 || total > COALESCE_MAX {
            for (h, p) in reqs {
                self.send_request(h, p, stalled)?;
            }
            return Ok(());
        }
        let mut buf = self.writer.lock();
        buf.clear();
        for (h, p) in reqs {
            buf.extend_from_slice(&h.encode());
            buf.extend_from_slice(p);
        }
        let mut pos = 0;
        while pos < buf.len() {
            match (&self.stream).write(&buf[pos..]) {
                Ok(0) => return Err(LinkError::Closed("write failed: connection closed")),
                Ok(n) => pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    stalled();
                    poll_fd(&self.stream, false, true, Some(Duration::from_millis(1)))
                        .map_err(|e| LinkError::io("poll", e))?;
                }
                Err(e) => return Err(LinkError::io("write", e)),
            }
        }
        Ok(())
    }

    fn progress(&self, wait: Option<Duration>, out: &mut Vec<Delivery>) -> Result<(), LinkError> {
        let mut reader = self.reader.lock();
        if let Some(v) = self.spare.lock().take() {
            reader.give_spare(v);
        }
        let mut violation = None;
        let mut read =
            |reader: &mut FrameReader, out: &mut Vec<Delivery>| -> Result<(), LinkError> {
                let r = reader.read_frames(&mut &self.stream, &mut |h, p| {
                    if !h.flags.is_response() {
                        violation = Some(LinkError::RequestFromServer(h.opcode));
                        return false;
                    }
                    out.push((h.request_id, Status(h.status), p.into_vec()));
                    true
                });
                match r {
                    // A client reader has no budget: it never runs out of one.
                    Ok(ReadStop::WouldBlock | ReadStop::NoBudget) => Ok(()),
                    Ok(ReadStop::Eof) => Err(LinkError::Closed("connection closed by the server")),
                    Ok(ReadStop::Stopped) => Err(violation.take().unwrap_or(LinkError::Closed(
                        "the frame reader stopped without a reason",
                    ))),
                    Err(FrameError::Io(e)) => Err(LinkError::io("read", e)),
                    Err(FrameError::Decode { err, .. }) => Err(LinkError::Protocol(err)),
                }
            };
        read(&mut reader, out)?;
        if out.is_empty() {
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                if poll_fd(&self.stream, true, false, Some(w))
                    .map_err(|e| LinkError::io("poll", e))?
                {
                    read(&mut reader, out)?;
                }
            }
        }
        Ok(())
    }

    fn recycle(&self, buf: Vec<u8>) {
        *self.spare.lock() = Some(buf);
    }

    fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
