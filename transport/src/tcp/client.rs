//! TCP client channel. One connection per session; a writer lock keeps frames whole, the
//! session's poller reads. See `session.rs` for caller-driven progress.

use std::net::TcpStream;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::frame::{write_frame, FrameError, FrameReader, ReadStop};
use crate::locator::Locator;
use crate::session::{ClientChannel, ClientConfig, Delivery, Session};
use crate::sys::poll_fd;
use crate::wire::{Header, Status, HEADER_LEN};
use std::os::fd::AsRawFd;

struct TcpClient {
    stream: TcpStream,
    reader: Mutex<FrameReader>,
    writer: Mutex<()>,
}

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
                    writer: Mutex::new(()),
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
    ) -> Result<(), String> {
        let hdr = header.encode();
        let total = HEADER_LEN + payload.len();
        let _w = self.writer.lock();
        let mut pos = 0;
        loop {
            pos = write_frame(&mut &self.stream, &hdr, payload, pos)
                .map_err(|e| format!("write failed: {e}"))?;
            if pos == total {
                return Ok(());
            }
            // Socket buffer full: keep reading replies (the server may be blocked writing to us),
            // then wait for room.
            stalled();
            poll_fd(
                self.stream.as_raw_fd(),
                false,
                true,
                Some(Duration::from_millis(1)),
            )
            .map_err(|e| format!("poll failed: {e}"))?;
        }
    }

    fn progress(&self, wait: Option<Duration>, out: &mut Vec<Delivery>) -> Result<(), String> {
        let mut reader = self.reader.lock();
        let mut violation = None;
        let mut read = |reader: &mut FrameReader, out: &mut Vec<Delivery>| -> Result<(), String> {
            let r = reader.read_frames(&mut &self.stream, &mut |h, p| {
                if !h.flags.is_response() {
                    violation = Some(format!("server sent a request frame (opcode {})", h.opcode));
                    return false;
                }
                out.push((h.request_id, Status(h.status), p.into_vec()));
                true
            });
            match r {
                Ok(ReadStop::WouldBlock) => Ok(()),
                Ok(ReadStop::Eof) => Err("connection closed by the server".into()),
                Ok(ReadStop::Stopped) => Err(violation.take().unwrap_or_default()),
                Err(FrameError::Io(e)) => Err(format!("read failed: {e}")),
                Err(FrameError::Decode { err, .. }) => {
                    Err(format!("protocol violation from server: {err}"))
                }
            }
        };
        read(&mut reader, out)?;
        if out.is_empty() {
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                if poll_fd(self.stream.as_raw_fd(), true, false, Some(w))
                    .map_err(|e| e.to_string())?
                {
                    read(&mut reader, out)?;
                }
            }
        }
        Ok(())
    }

    fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
