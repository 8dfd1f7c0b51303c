//! `sendmmsg` / `recvmmsg` for the kernel UDP driver: one system call per burst instead of one
//! per datagram. All `unsafe` of the UDP driver is here, behind two safe functions.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Send `pkts` (destination, bytes) with one `sendmmsg`. Returns how many the kernel took
/// (0 if the socket buffer is full).
pub(crate) fn send_batch(fd: RawFd, pkts: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    if pkts.is_empty() {
        return Ok(0);
    }
    let addrs: Vec<SockAddr> = pkts.iter().map(|(a, _)| SockAddr::from(*a)).collect();
    let mut iovs: Vec<libc::iovec> = pkts
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(pkts.len());
    for (i, a) in addrs.iter().enumerate() {
        // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) value.
        let mut m: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        m.msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
        m.msg_hdr.msg_namelen = a.len();
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        msgs.push(m);
    }
    loop {
        // SAFETY: `msgs` holds `msgs.len()` initialised headers whose name and iovec pointers
        // point into `addrs`, `iovs` and the caller's `pkts`, all alive and unmoved for the call;
        // the kernel only reads the data buffers.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// Receive buffers and addresses for [`recv_batch`], allocated once per driver.
pub(crate) struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs`/`msgs` only ever point into this struct's own heap
// buffers (re-pointed before every use), so moving the struct to another thread is sound.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.bufs.len())
            .finish()
    }
}

impl RecvBatch {
    /// `slots` datagrams of at most `buf_len` bytes each per call.
    pub(crate) fn new(slots: usize, buf_len: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..slots)
                .map(|_| vec![0u8; buf_len].into_boxed_slice())
                .collect(),
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            addrs: (0..slots)
                .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
                .collect(),
            iovs: Vec::with_capacity(slots),
            msgs: Vec::with_capacity(slots),
        }
    }
}

/// Receive up to `max` datagrams with one `recvmmsg`; call `each(from, bytes)` for each.
/// Truncated datagrams (larger than a buffer) are dropped. Returns how many datagrams were
/// consumed (including dropped ones); 0 means none was waiting.
pub(crate) fn recv_batch(
    fd: RawFd,
    rb: &mut RecvBatch,
    max: usize,
    each: &mut dyn FnMut(SocketAddr, &[u8]),
) -> io::Result<usize> {
    let n = max.min(rb.bufs.len());
    if n == 0 {
        return Ok(0);
    }
    rb.iovs.clear();
    rb.msgs.clear();
    for b in rb.bufs.iter_mut().take(n) {
        rb.iovs.push(libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
    }
    for i in 0..n {
        // SAFETY: mmsghdr is plain old data; all-zero is valid.
        let mut m: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        m.msg_hdr.msg_name = &mut rb.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &mut rb.iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        rb.msgs.push(m);
    }
    let r = loop {
        // SAFETY: `msgs` holds `n` headers pointing at `n` distinct, live buffers of the stated
        // lengths and at `n` sockaddr_storage slots; none is touched elsewhere during the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                rb.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            io::ErrorKind::ConnectionRefused => return Ok(0), // ICMP from an earlier send
            _ => return Err(e),
        }
    };
    for i in 0..r {
        let m = &rb.msgs[i];
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        // SAFETY: the kernel wrote a valid address of `msg_namelen` bytes into `addrs[i]`.
        let addr = unsafe { SockAddr::new(rb.addrs[i], m.msg_hdr.msg_namelen) };
        let Some(from) = addr.as_socket() else {
            continue;
        };
        let len = (m.msg_len as usize).min(rb.bufs[i].len());
        each(from, &rb.bufs[i][..len]);
    }
    Ok(r)
}

/// Send `segs` (all `seg_size` bytes except possibly the last, which may be shorter) to `to` as
/// one UDP GSO super-datagram (`UDP_SEGMENT`): the kernel cuts it into one datagram per segment,
/// so the receiver sees exactly what separate sends would give it. Returns `Ok(false)` if the
/// socket buffer is full (nothing sent). An error means GSO is unusable here (old kernel, a
/// device without support): the caller falls back to `send_batch`.
pub(crate) fn send_gso(
    fd: RawFd,
    to: SocketAddr,
    segs: &[&[u8]],
    seg_size: u16,
) -> io::Result<bool> {
    debug_assert!(segs.len() >= 2 && segs.iter().all(|s| s.len() <= seg_size as usize));
    let addr = SockAddr::from(to);
    let mut iovs: Vec<libc::iovec> = segs
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // Control buffer for one cmsg carrying a u16, 8-byte aligned as cmsghdr requires.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = iovs.len();
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `control`, large enough for one cmsg of a u16 (checked
    // above); CMSG_FIRSTHDR returns a pointer into it, non-null since msg_controllen >= the
    // header size; CMSG_DATA points inside the same buffer, where we write 2 bytes unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg_size);
    }
    loop {
        // SAFETY: every pointer in `msg` refers to `addr`, `iovs`, `control` or the caller's
        // `segs`, all alive and unmoved for the duration of the call; the kernel only reads them.
        let r = unsafe { libc::sendmsg(fd, &msg, 0) };
        if r >= 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
}
