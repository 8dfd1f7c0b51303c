//! Client sockets with an explicit polling mode: busy-poll (non-blocking socket, spin) or
//! blocking (the thread sleeps in the kernel until data arrives).

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::thread::{sched_setaffinity, CpuSet};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How a thread waits for replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Non-blocking socket, spin on `read` until data arrives (costs a full core).
    Busy,
    /// Sleep in the kernel (`ppoll`) until the socket is readable.
    Block,
}

impl PollMode {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Busy => "busy",
            PollMode::Block => "block",
        }
    }
}

/// Waits until `fd` is readable or `deadline` passes. Returns whether it is readable.
pub fn wait_readable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A buffered TCP connection for request/response protocols.
#[derive(Debug)]
pub struct BufStream {
    sock: TcpStream,
    mode: PollMode,
    /// bytes received and not yet consumed: `rbuf[rpos..]`
    rbuf: Vec<u8>,
    rpos: usize,
    /// bytes queued to send
    pub wbuf: Vec<u8>,
}

impl BufStream {
    /// Connects (with TCP_NODELAY) and sets the socket non-blocking.
    pub fn connect(addr: &str, mode: PollMode, timeout: Duration) -> io::Result<Self> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(sock) => {
                    sock.set_nodelay(true)?;
                    sock.set_nonblocking(true)?;
                    return Ok(Self {
                        sock,
                        mode,
                        rbuf: Vec::with_capacity(64 * 1024),
                        rpos: 0,
                        wbuf: Vec::with_capacity(64 * 1024),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
    }

    /// Polling mode.
    pub fn mode(&self) -> PollMode {
        self.mode
    }

    /// Writes all queued bytes (spinning or waiting for writability as needed).
    pub fn flush(&mut self) -> io::Result<()> {
        let mut off = 0;
        while off < self.wbuf.len() {
            match self.sock.write(&self.wbuf[off..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "connection closed",
                    ))
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: the server is slow to read; drain replies is the
                    // caller's job, so read what is there to avoid a deadlock on large pipelines.
                    self.read_some()?;
                    if self.mode == PollMode::Block {
                        wait_writable(&self.sock, Duration::from_millis(1))?;
                    } else {
                        std::hint::spin_loop();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Unconsumed received bytes.
    pub fn data(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Marks `n` received bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Non-blocking read of whatever is available. Returns bytes read (0 if none).
    fn read_some(&mut self) -> io::Result<usize> {
        if self.rpos > 0 && self.rpos * 2 >= self.rbuf.len() {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let len = self.rbuf.len();
        if self.rbuf.capacity() - len < 16 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let cap = self.rbuf.capacity();
        self.rbuf.resize(cap, 0);
        let r = self.sock.read(&mut self.rbuf[len..]);
        match r {
            Ok(0) => {
                self.rbuf.truncate(len);
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ))
            }
            Ok(n) => {
                self.rbuf.truncate(len + n);
                Ok(n)
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                self.rbuf.truncate(len);
                Ok(0)
            }
            Err(e) => {
                self.rbuf.truncate(len);
                Err(e)
            }
        }
    }

    /// Receives more bytes, waiting per the polling mode until some arrive or `deadline` passes.
    /// Returns false on deadline.
    pub fn fill(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        loop {
            if self.read_some()? > 0 {
                return Ok(true);
            }
            match self.mode {
                PollMode::Busy => {
                    if let Some(d) = deadline {
                        if Instant::now() >= d {
                            return Ok(false);
                        }
                    }
                    std::hint::spin_loop();
                }
                PollMode::Block => {
                    if !wait_readable(&self.sock, deadline)? {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

fn wait_writable(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    let timeout = Timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why the calling thread could not be pinned to a core.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The core number does not fit the kernel's CPU set.
    #[error("cannot pin to core {core}: the CPU set holds cores 0..{max}; choose a smaller core")]
    NoSuchCore {
        /// Core asked for.
        core: usize,
        /// Size of the CPU set.
        max: usize,
    },
    /// `sched_setaffinity` refused (core offline, or outside this process's cpuset).
    #[error(
        "cannot pin to core {core}: {source} (is the core online and in this process's cpuset?)"
    )]
    Refused {
        /// Core asked for.
        core: usize,
        /// The kernel's answer.
        source: io::Error,
    },
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> Result<(), PinError> {
    if core >= CpuSet::MAX_CPU {
        return Err(PinError::NoSuchCore {
            core,
            max: CpuSet::MAX_CPU,
        });
    }
    let mut set = CpuSet::new();
    set.set(core);
    sched_setaffinity(None, &set).map_err(|e| PinError::Refused {
        core,
        source: e.into(),
    })
}
