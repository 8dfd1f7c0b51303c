//! The verbs FFI: safe types over libibverbs, through `rdma-mummy-sys` (the sys crate under
//! `sideway`, which loads libibverbs with `dlopen` at run time — a binary built with the `verbs`
//! feature starts on a machine without rdma-core and reports a clean error). The verbs transport's
//! `unsafe` is in this file, apart from the two `post_send` calls of `datapath.rs` (registered
//! memory that must outlive the send), argued where they are.
//!
//! Ownership mirrors libibverbs' rules: every object holds an `Arc` of what it was created from
//! (a QP holds its PD, CQs and SRQ; they hold the device context), so destruction happens in the
//! order libibverbs requires whatever order Rust drops things in.
//!
//! Threading: libibverbs objects may be used from any thread (the library locks internally).
//! The datapath calls here (`post_*`, `poll`) take `&self`; callers serialise where the verbs
//! semantics need it (one poller per CQ).
#![allow(unsafe_code)]

use super::addr::{LocalPath, Piece, QpAddress};
use std::ffi::CStr;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdma_mummy_sys as ib;

/// Why a verbs operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerbsError {
    /// A verbs or system call failed with an OS error; `hint` says what to check.
    #[error("{call} failed: {source}{hint}")]
    Os {
        /// The call, with its arguments where they help.
        call: String,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
        /// What to check (may be empty).
        hint: &'static str,
    },
    /// Any other failure of the verbs transport (device choice, work completion, handshake,
    /// protocol); the text names it and what to do.
    #[error("{0}")]
    Other(String),
}

/// Result of this module's operations.
pub(crate) type VResult<T> = Result<T, VerbsError>;

fn os_err(call: &str) -> VerbsError {
    let e = std::io::Error::last_os_error();
    let hint = match e.raw_os_error() {
        Some(libc::ENOMEM) => {
            " (memory registration limit? raise `ulimit -l` / the memlock limit of the service)"
        }
        Some(libc::EOPNOTSUPP) => {
            " (libibverbs could not be loaded: install rdma-core / libibverbs1 and ibverbs-providers)"
        }
        Some(libc::ENOSYS) => {
            " (the kernel offers no RDMA: no ib_uverbs module / no RDMA device driver loaded)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (permission denied on /dev/infiniband/uverbs*: run as a user allowed to use RDMA)"
        }
        _ => "",
    };
    VerbsError::Os {
        call: call.to_string(),
        source: Arc::new(e),
        hint,
    }
}

/// The names of the RDMA devices present. `Err` if libibverbs cannot be loaded or lists nothing.
pub(crate) fn device_names() -> VResult<Vec<String>> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a valid out-pointer; the returned list is freed below before returning.
    let list = unsafe { ib::ibv_get_device_list(&mut n) };
    if list.is_null() {
        return Err(os_err("ibv_get_device_list"));
    }
    let mut names = Vec::new();
    for i in 0..n.max(0) as usize {
        // SAFETY: the list holds `n` valid device pointers until it is freed.
        let dev = unsafe { *list.add(i) };
        if dev.is_null() {
            break;
        }
        // SAFETY: `dev` is a valid device; the name is a NUL-terminated string owned by it.
        let name = unsafe { ib::ibv_get_device_name(dev) };
        if !name.is_null() {
            // SAFETY: non-null, NUL-terminated, valid while the list lives.
            names.push(
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once.
    unsafe { ib::ibv_free_device_list(list) };
    Ok(names)
}

/// An open device (`ibv_context`).
pub(crate) struct Context {
    ctx: NonNull<ib::ibv_context>,
    name: String,
}

// SAFETY: libibverbs contexts may be used from any thread.
unsafe impl Send for Context {}
// SAFETY: as above; all calls through `&Context` are thread-safe in libibverbs.
unsafe impl Sync for Context {}

/// What the transport needs of a port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortInfo {
    pub(crate) active: bool,
    /// `ibv_mtu` enum value (1 = 256 .. 5 = 4096).
    pub(crate) active_mtu: u32,
    pub(crate) lid: u16,
    pub(crate) ethernet: bool,
    pub(crate) gid_table_len: u32,
}

impl Context {
    /// Open the device called `name`.
    pub(crate) fn open(name: &str) -> VResult<Arc<Context>> {
        let mut n: libc::c_int = 0;
        // SAFETY: as in `device_names`.
        let list = unsafe { ib::ibv_get_device_list(&mut n) };
        if list.is_null() {
            return Err(os_err("ibv_get_device_list"));
        }
        let mut ctx = ptr::null_mut();
        let mut found = false;
        for i in 0..n.max(0) as usize {
            // SAFETY: the list holds `n` valid device pointers until it is freed.
            let dev = unsafe { *list.add(i) };
            if dev.is_null() {
                break;
            }
            // SAFETY: valid device, NUL-terminated name owned by it.
            let dn = unsafe { CStr::from_ptr(ib::ibv_get_device_name(dev)) };
            if dn.to_bytes() == name.as_bytes() {
                found = true;
                // SAFETY: `dev` is valid; the context outlives the list (libibverbs allows
                // freeing the list once the device is opened).
                ctx = unsafe { ib::ibv_open_device(dev) };
                break;
            }
        }
        let err = if ctx.is_null() && found {
            Some(os_err("ibv_open_device"))
        } else {
            None
        };
        // SAFETY: freed once.
        unsafe { ib::ibv_free_device_list(list) };
        match NonNull::new(ctx) {
            Some(ctx) => Ok(Arc::new(Context {
                ctx,
                name: name.to_string(),
            })),
            None => {
                Err(err
                    .unwrap_or_else(|| VerbsError::Other(format!("no RDMA device named {name:?}"))))
            }
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn query_port(&self, port: u8) -> VResult<PortInfo> {
        // SAFETY: ibv_port_attr is plain old data; zeroed is a valid value.
        let mut a: ib::ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: valid context and out-pointer.
        let r = unsafe { ib::ibv_query_port(self.ctx.as_ptr(), port, &mut a) };
        if r != 0 {
            return Err(VerbsError::Other(format!(
                "ibv_query_port({}, port {port}) failed: {}",
                self.name,
                std::io::Error::from_raw_os_error(r.abs())
            )));
        }
        Ok(PortInfo {
            active: a.state == ib::ibv_port_state::IBV_PORT_ACTIVE,
            active_mtu: a.active_mtu,
            lid: a.lid,
            ethernet: a.link_layer == ib::IBV_LINK_LAYER_ETHERNET,
            gid_table_len: a.gid_tbl_len.max(0) as u32,
        })
    }

    pub(crate) fn query_gid(&self, port: u8, index: u32) -> VResult<[u8; 16]> {
        // SAFETY: ibv_gid is a 16-byte union of plain data.
        let mut g: ib::ibv_gid = unsafe { std::mem::zeroed() };
        // SAFETY: valid context and out-pointer.
        let r = unsafe { ib::ibv_query_gid(self.ctx.as_ptr(), port, index as libc::c_int, &mut g) };
        if r != 0 {
            return Err(os_err(&format!(
                "ibv_query_gid({}, {port}, {index})",
                self.name
            )));
        }
        // SAFETY: every bit pattern of the union is a valid [u8; 16].
        Ok(unsafe { g.raw })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: opened by ibv_open_device, closed once; every child object holds an Arc of this
        // context, so none is alive any more.
        unsafe { ib::ibv_close_device(self.ctx.as_ptr()) };
    }
}

/// A protection domain.
pub(crate) struct Pd {
    pd: NonNull<ib::ibv_pd>,
    _ctx: Arc<Context>,
}
// SAFETY: libibverbs objects are thread-safe.
unsafe impl Send for Pd {}
// SAFETY: as above.
unsafe impl Sync for Pd {}

impl Pd {
    pub(crate) fn new(ctx: &Arc<Context>) -> VResult<Arc<Pd>> {
        // SAFETY: valid context.
        let pd = unsafe { ib::ibv_alloc_pd(ctx.ctx.as_ptr()) };
        NonNull::new(pd)
            .map(|pd| {
                Arc::new(Pd {
                    pd,
                    _ctx: ctx.clone(),
                })
            })
            .ok_or_else(|| os_err("ibv_alloc_pd"))
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: allocated once, freed once; every MR/QP/SRQ of it holds an Arc of this PD.
        unsafe { ib::ibv_dealloc_pd(self.pd.as_ptr()) };
    }
}

/// Page-aligned memory owned by this type and registered with a PD: the receive buffers and the
/// send slots. The NIC reads and writes it by DMA; the datapath code decides which parts the
/// program may touch (a receive slot only between its completion and its repost, a send slot
/// only while it is not posted) — see `datapath.rs`.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
    mr: NonNull<ib::ibv_mr>,
    _pd: Arc<Pd>,
}
// SAFETY: the region is plain memory plus a thread-safe MR handle.
unsafe impl Send for Region {}
// SAFETY: shared access only hands out copies or slices chosen by the (locked) datapath.
unsafe impl Sync for Region {}

impl Region {
    /// Allocate `len` zeroed bytes (page aligned) and register them for local write (receive
    /// buffers need it; send-only memory is harmless with it).
    pub(crate) fn new(pd: &Arc<Pd>, len: usize) -> VResult<Region> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096)
            .map_err(|e| VerbsError::Other(format!("bad region size {len}: {e}")))?;
        // SAFETY: layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| {
            VerbsError::Other(format!("cannot allocate {len} bytes for RDMA buffers"))
        })?;
        // SAFETY: `ptr` is a live allocation of `len` bytes that outlives the MR (deregistered in
        // Drop before the memory is freed).
        let mr = unsafe {
            ib::ibv_reg_mr(
                pd.pd.as_ptr(),
                ptr.as_ptr().cast(),
                len,
                ib::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 as libc::c_int,
            )
        };
        match NonNull::new(mr) {
            Some(mr) => Ok(Region {
                ptr,
                layout,
                mr,
                _pd: pd.clone(),
            }),
            None => {
                let e = os_err(&format!("ibv_reg_mr({len} bytes)"));
                // SAFETY: allocated above with this layout, not registered.
                unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
                Err(e)
            }
        }
    }

    pub(crate) fn lkey(&self) -> u32 {
        // SAFETY: the MR is valid while self lives.
        unsafe { self.mr.as_ref().lkey }
    }

    /// Address of byte `off` (for a scatter/gather entry).
    pub(crate) fn addr(&self, off: usize) -> u64 {
        assert!(off <= self.layout.size(), "region offset out of range");
        self.ptr.as_ptr() as u64 + off as u64
    }

    /// A view (no copy) of `len` bytes at `off`.
    ///
    /// Callers (the datapath) only view a receive slot after its completion and before reposting
    /// it, so the NIC does not write these bytes meanwhile.
    pub(crate) fn slice(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off.checked_add(len)
                .is_some_and(|e| e <= self.layout.size()),
            "region range out of bounds"
        );
        // SAFETY: in bounds (checked); the bytes are initialised (zeroed at allocation); the NIC
        // does not write them while the datapath views them (see above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    /// Write `parts` one after another at `off`. The datapath only writes a send slot that is
    /// not posted (the NIC does not read it meanwhile).
    pub(crate) fn write(&self, off: usize, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            off.checked_add(total)
                .is_some_and(|e| e <= self.layout.size()),
            "region write out of bounds"
        );
        let mut at = off;
        for p in parts {
            // SAFETY: in bounds (checked); source and destination do not overlap (the source is
            // caller memory outside this region or another slot); no reference into these bytes
            // exists while they are written (slot not posted and not viewed).
            unsafe { ptr::copy_nonoverlapping(p.as_ptr(), self.ptr.as_ptr().add(at), p.len()) };
            at += p.len();
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: registered once; the QPs that could use it are gone or about to be destroyed
        // (a later DMA to a deregistered MR fails with a protection error, it does not touch the
        // freed memory).
        unsafe { ib::ibv_dereg_mr(self.mr.as_ptr()) };
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Memory the caller owns, registered for the NIC to *read* (zero-copy sends of large values).
/// The borrow keeps the bytes alive and unchanged while registered; dropping deregisters, after
/// which the NIC cannot touch them (a send still posted then fails with a protection error).
pub(crate) struct SendReg<'a> {
    mr: NonNull<ib::ibv_mr>,
    base: u64,
    len: usize,
    _pd: Arc<Pd>,
    _mem: std::marker::PhantomData<&'a [u8]>,
}
// SAFETY: an MR handle is thread-safe; the borrowed bytes are only read.
unsafe impl Send for SendReg<'_> {}
// SAFETY: as above.
unsafe impl Sync for SendReg<'_> {}

impl<'a> SendReg<'a> {
    pub(crate) fn new(pd: &Arc<Pd>, mem: &'a [u8]) -> VResult<SendReg<'a>> {
        // SAFETY: `mem` is valid for `mem.len()` bytes for 'a, which outlives the registration
        // (deregistered in Drop). Access flags 0: the NIC may only read (local read is implied),
        // so casting the pointer to *mut for the C signature grants no write.
        let mr = unsafe {
            ib::ibv_reg_mr(
                pd.pd.as_ptr(),
                mem.as_ptr() as *mut libc::c_void,
                mem.len(),
                0,
            )
        };
        let mr = NonNull::new(mr)
            .ok_or_else(|| os_err(&format!("ibv_reg_mr({} bytes, send)", mem.len())))?;
        Ok(SendReg {
            mr,
            base: mem.as_ptr() as u64,
            len: mem.len(),
            _pd: pd.clone(),
            _mem: std::marker::PhantomData,
        })
    }

    /// The registered bytes `off..off + len`, as a send piece.
    pub(crate) fn piece(&self, off: usize, len: usize) -> Piece {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "registered range out of bounds"
        );
        Piece {
            addr: self.base + off as u64,
            len: len as u32,
            // SAFETY: the MR is valid while self lives.
            lkey: unsafe { self.mr.as_ref().lkey },
        }
    }
}

impl Drop for SendReg<'_> {
    fn drop(&mut self) {
        // SAFETY: registered once, deregistered once.
        unsafe { ib::ibv_dereg_mr(self.mr.as_ptr()) };
    }
}

/// An owned buffer registered for sending: a `Vec` whose heap bytes do not move while the
/// registration lives (the `Vec` is never touched mutably here).
pub(crate) struct RegisteredVec {
    // Declared first: deregistered before the bytes are freed.
    reg: SendReg<'static>,
    data: Vec<u8>,
}

impl RegisteredVec {
    pub(crate) fn new(pd: &Arc<Pd>, data: Vec<u8>) -> Result<RegisteredVec, (VerbsError, Vec<u8>)> {
        // SAFETY: the slice points into `data`'s heap buffer, which is stored in the returned
        // struct beside the registration, never mutated or reallocated, and freed only after the
        // registration is dropped (field order). The 'static lifetime never escapes: `reg` is
        // private and only used through `piece`.
        let mem: &'static [u8] = unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) };
        match SendReg::new(pd, mem) {
            Ok(reg) => Ok(RegisteredVec { reg, data }),
            Err(e) => Err((e, data)),
        }
    }
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }
    pub(crate) fn piece(&self, off: usize, len: usize) -> Piece {
        self.reg.piece(off, len)
    }
}

/// A completion channel: a file descriptor that becomes readable when an armed CQ of it gets a
/// completion (blocking mode of the pollers).
pub(crate) struct CompChannel {
    ch: NonNull<ib::ibv_comp_channel>,
    _ctx: Arc<Context>,
}
// SAFETY: libibverbs objects are thread-safe.
unsafe impl Send for CompChannel {}
// SAFETY: as above.
unsafe impl Sync for CompChannel {}

impl CompChannel {
    pub(crate) fn new(ctx: &Arc<Context>) -> VResult<Arc<CompChannel>> {
        // SAFETY: valid context.
        let ch = NonNull::new(unsafe { ib::ibv_create_comp_channel(ctx.ctx.as_ptr()) })
            .ok_or_else(|| os_err("ibv_create_comp_channel"))?;
        let c = CompChannel {
            ch,
            _ctx: ctx.clone(),
        };
        let fd = c.fd();
        // SAFETY: fcntl on a descriptor owned by the channel.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
            return Err(os_err("fcntl(O_NONBLOCK) on the completion channel"));
        }
        Ok(Arc::new(c))
    }

    pub(crate) fn fd(&self) -> RawFd {
        // SAFETY: valid channel.
        unsafe { self.ch.as_ref().fd }
    }

    /// Consume every pending completion event (non-blocking) and acknowledge it.
    pub(crate) fn drain_events(&self) {
        loop {
            let mut cq = ptr::null_mut();
            let mut cq_ctx = ptr::null_mut();
            // SAFETY: valid channel (non-blocking fd) and out-pointers.
            let r = unsafe { ib::ibv_get_cq_event(self.ch.as_ptr(), &mut cq, &mut cq_ctx) };
            if r != 0 || cq.is_null() {
                return;
            }
            // SAFETY: `cq` was returned by ibv_get_cq_event and is alive (a CQ holds an Arc of
            // this channel, and a CQ is only destroyed after its events are acknowledged here or
            // by nobody — ibv_destroy_cq waits for acks, so every event is acked right away).
            unsafe { ib::ibv_ack_cq_events(cq, 1) };
        }
    }
}

impl Drop for CompChannel {
    fn drop(&mut self) {
        // SAFETY: created once; every CQ using it holds an Arc of it, so none is alive.
        unsafe { ib::ibv_destroy_comp_channel(self.ch.as_ptr()) };
    }
}

/// One work completion, copied out of `ibv_wc`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wc {
    pub(crate) wr_id: u64,
    pub(crate) status: u32,
    pub(crate) byte_len: u32,
    pub(crate) qp_num: u32,
}

impl Wc {
    pub(crate) fn ok(&self) -> bool {
        self.status == ib::ibv_wc_status::IBV_WC_SUCCESS
    }
    /// libibverbs' text for the status ("transport retry counter exceeded", ...).
    pub(crate) fn status_str(&self) -> String {
        // SAFETY: returns a pointer to a static string (or "unknown").
        let s = unsafe { ib::ibv_wc_status_str(self.status) };
        if s.is_null() {
            return format!("status {}", self.status);
        }
        // SAFETY: static NUL-terminated string.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// A completion queue.
pub(crate) struct Cq {
    cq: NonNull<ib::ibv_cq>,
    _ch: Option<Arc<CompChannel>>,
    _ctx: Arc<Context>,
}
// SAFETY: libibverbs objects are thread-safe.
unsafe impl Send for Cq {}
// SAFETY: as above.
unsafe impl Sync for Cq {}

/// Completions read per `ibv_poll_cq`.
pub(crate) const POLL_BATCH: usize = 32;

impl Cq {
    pub(crate) fn new(
        ctx: &Arc<Context>,
        entries: usize,
        ch: Option<&Arc<CompChannel>>,
    ) -> VResult<Arc<Cq>> {
        let chp = ch.map_or(ptr::null_mut(), |c| c.ch.as_ptr());
        // SAFETY: valid context; the channel (if any) outlives the CQ (held below).
        let cq = unsafe {
            ib::ibv_create_cq(
                ctx.ctx.as_ptr(),
                entries.min(i32::MAX as usize) as libc::c_int,
                ptr::null_mut(),
                chp,
                0,
            )
        };
        NonNull::new(cq)
            .map(|cq| {
                Arc::new(Cq {
                    cq,
                    _ch: ch.cloned(),
                    _ctx: ctx.clone(),
                })
            })
            .ok_or_else(|| os_err(&format!("ibv_create_cq({entries} entries)")))
    }

    /// Read up to `out.len()` (≤ [`POLL_BATCH`]) completions. One thread at a time per CQ.
    pub(crate) fn poll(&self, out: &mut [Wc]) -> VResult<usize> {
        // SAFETY: ibv_wc is plain old data; zeroed is valid.
        let mut wcs: [ib::ibv_wc; POLL_BATCH] = unsafe { std::mem::zeroed() };
        let n = out.len().min(POLL_BATCH);
        // SAFETY: valid CQ; `wcs` has room for `n` entries.
        let r = unsafe { ib::ibv_poll_cq(self.cq.as_ptr(), n as i32, wcs.as_mut_ptr()) };
        if r < 0 {
            return Err(VerbsError::Other(format!("ibv_poll_cq failed ({r})")));
        }
        for (o, w) in out.iter_mut().zip(&wcs[..r as usize]) {
            *o = Wc {
                wr_id: w.wr_id,
                status: w.status,
                byte_len: w.byte_len,
                qp_num: w.qp_num,
            };
        }
        Ok(r as usize)
    }

    /// Ask for an event on the completion channel at the next completion.
    pub(crate) fn arm(&self) -> VResult<()> {
        // SAFETY: valid CQ.
        let r = unsafe { ib::ibv_req_notify_cq(self.cq.as_ptr(), 0) };
        if r != 0 {
            return Err(VerbsError::Other(format!("ibv_req_notify_cq failed ({r})")));
        }
        Ok(())
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: created once; QPs and SRQs using it hold an Arc of it, so none is alive.
        unsafe { ib::ibv_destroy_cq(self.cq.as_ptr()) };
    }
}

/// A shared receive queue.
pub(crate) struct Srq {
    srq: NonNull<ib::ibv_srq>,
    _pd: Arc<Pd>,
}
// SAFETY: libibverbs objects are thread-safe.
unsafe impl Send for Srq {}
// SAFETY: as above.
unsafe impl Sync for Srq {}

impl Srq {
    pub(crate) fn new(pd: &Arc<Pd>, max_wr: usize) -> VResult<Arc<Srq>> {
        // SAFETY: plain old data.
        let mut a: ib::ibv_srq_init_attr = unsafe { std::mem::zeroed() };
        a.attr.max_wr = max_wr as u32;
        a.attr.max_sge = 1;
        // SAFETY: valid PD and attribute struct.
        let srq = unsafe { ib::ibv_create_srq(pd.pd.as_ptr(), &mut a) };
        NonNull::new(srq)
            .map(|srq| {
                Arc::new(Srq {
                    srq,
                    _pd: pd.clone(),
                })
            })
            .ok_or_else(|| os_err(&format!("ibv_create_srq({max_wr} entries)")))
    }

    /// Post one receive of `len` bytes at `region[off..]`, tagged `wr_id`.
    pub(crate) fn post_recv(
        &self,
        wr_id: u64,
        region: &Region,
        off: usize,
        len: usize,
    ) -> VResult<()> {
        let mut sge = ib::ibv_sge {
            addr: region.addr(off),
            length: len as u32,
            lkey: region.lkey(),
        };
        let mut wr = ib::ibv_recv_wr {
            wr_id,
            next: ptr::null_mut(),
            sg_list: &mut sge,
            num_sge: 1,
        };
        let mut bad = ptr::null_mut();
        // SAFETY: valid SRQ; `wr` and `sge` live across the call (the provider copies them); the
        // buffer is inside a registered region that outlives the SRQ's use of it (the datapath
        // owns both and drops the QPs/SRQ first).
        let r = unsafe { ib::ibv_post_srq_recv(self.srq.as_ptr(), &mut wr, &mut bad) };
        if r != 0 {
            return Err(VerbsError::Other(format!(
                "ibv_post_srq_recv failed: {}",
                std::io::Error::from_raw_os_error(r.abs())
            )));
        }
        Ok(())
    }
}

impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: created once; QPs attached to it hold an Arc of it, so none is alive.
        unsafe { ib::ibv_destroy_srq(self.srq.as_ptr()) };
    }
}

/// A reliable-connected queue pair whose receives come from an SRQ.
pub(crate) struct Qp {
    qp: NonNull<ib::ibv_qp>,
    max_inline: usize,
    _send_cq: Arc<Cq>,
    _recv_cq: Arc<Cq>,
    _srq: Arc<Srq>,
    _pd: Arc<Pd>,
}
// SAFETY: libibverbs objects are thread-safe.
unsafe impl Send for Qp {}
// SAFETY: as above (posting from several threads is serialised by the callers' locks anyway).
unsafe impl Sync for Qp {}

impl Qp {
    pub(crate) fn new_rc(
        pd: &Arc<Pd>,
        send_cq: &Arc<Cq>,
        recv_cq: &Arc<Cq>,
        srq: &Arc<Srq>,
        max_send_wr: usize,
        max_inline: usize,
    ) -> VResult<Qp> {
        // SAFETY: plain old data.
        let mut a: ib::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        a.send_cq = send_cq.cq.as_ptr();
        a.recv_cq = recv_cq.cq.as_ptr();
        a.srq = srq.srq.as_ptr();
        a.cap.max_send_wr = max_send_wr as u32;
        a.cap.max_send_sge = 2;
        a.cap.max_inline_data = max_inline as u32;
        a.qp_type = ib::ibv_qp_type::IBV_QPT_RC;
        a.sq_sig_all = 0;
        // SAFETY: valid PD, CQs, SRQ (kept alive by the Arcs stored below).
        let mut qp = unsafe { ib::ibv_create_qp(pd.pd.as_ptr(), &mut a) };
        if qp.is_null() && max_inline > 0 {
            // Some providers refuse inline data: go without.
            a.cap.max_inline_data = 0;
            // SAFETY: as above.
            qp = unsafe { ib::ibv_create_qp(pd.pd.as_ptr(), &mut a) };
        }
        let qp = NonNull::new(qp).ok_or_else(|| os_err("ibv_create_qp(RC)"))?;
        Ok(Qp {
            qp,
            max_inline: a.cap.max_inline_data as usize,
            _send_cq: send_cq.clone(),
            _recv_cq: recv_cq.clone(),
            _srq: srq.clone(),
            _pd: pd.clone(),
        })
    }

    pub(crate) fn qpn(&self) -> u32 {
        // SAFETY: valid QP.
        unsafe { self.qp.as_ref().qp_num }
    }

    /// Largest send the provider copies inline (no registered memory needed).
    pub(crate) fn max_inline(&self) -> usize {
        self.max_inline
    }

    fn modify(
        &self,
        a: &mut ib::ibv_qp_attr,
        mask: ib::ibv_qp_attr_mask,
        what: &str,
    ) -> VResult<()> {
        // SAFETY: valid QP and attribute struct.
        let r = unsafe { ib::ibv_modify_qp(self.qp.as_ptr(), a, mask.0 as libc::c_int) };
        if r != 0 {
            return Err(VerbsError::Other(format!(
                "ibv_modify_qp(to {what}) failed: {}",
                std::io::Error::from_raw_os_error(r.abs())
            )));
        }
        Ok(())
    }

    /// RESET → INIT → RTR → RTS, connected to `remote`.
    pub(crate) fn connect(
        &self,
        path: &LocalPath,
        local_psn: u32,
        mtu: u32,
        remote: &QpAddress,
    ) -> VResult<()> {
        use ib::ibv_qp_attr_mask as m;
        // SAFETY: plain old data.
        let mut a: ib::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ib::ibv_qp_state::IBV_QPS_INIT;
        a.pkey_index = path.pkey_index;
        a.port_num = path.port;
        a.qp_access_flags = 0;
        self.modify(
            &mut a,
            m::IBV_QP_STATE | m::IBV_QP_PKEY_INDEX | m::IBV_QP_PORT | m::IBV_QP_ACCESS_FLAGS,
            "INIT",
        )?;

        // SAFETY: plain old data.
        let mut a: ib::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ib::ibv_qp_state::IBV_QPS_RTR;
        a.path_mtu = mtu;
        a.dest_qp_num = remote.qpn;
        a.rq_psn = remote.psn;
        a.max_dest_rd_atomic = 1;
        a.min_rnr_timer = RNR_TIMER;
        a.ah_attr.dlid = remote.lid;
        a.ah_attr.sl = 0;
        a.ah_attr.src_path_bits = 0;
        a.ah_attr.port_num = path.port;
        if path.global {
            a.ah_attr.is_global = 1;
            a.ah_attr.grh.dgid.raw = remote.gid;
            a.ah_attr.grh.sgid_index = path.gid_index;
            a.ah_attr.grh.hop_limit = 64;
            a.ah_attr.grh.traffic_class = 0;
            a.ah_attr.grh.flow_label = 0;
        }
        self.modify(
            &mut a,
            m::IBV_QP_STATE
                | m::IBV_QP_AV
                | m::IBV_QP_PATH_MTU
                | m::IBV_QP_DEST_QPN
                | m::IBV_QP_RQ_PSN
                | m::IBV_QP_MAX_DEST_RD_ATOMIC
                | m::IBV_QP_MIN_RNR_TIMER,
            "RTR",
        )?;

        // SAFETY: plain old data.
        let mut a: ib::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ib::ibv_qp_state::IBV_QPS_RTS;
        a.sq_psn = local_psn;
        a.timeout = ACK_TIMEOUT;
        a.retry_cnt = 7;
        a.rnr_retry = 7; // 7 = retry forever: receiver-not-ready is our flow control
        a.max_rd_atomic = 1;
        self.modify(
            &mut a,
            m::IBV_QP_STATE
                | m::IBV_QP_SQ_PSN
                | m::IBV_QP_TIMEOUT
                | m::IBV_QP_RETRY_CNT
                | m::IBV_QP_RNR_RETRY
                | m::IBV_QP_MAX_QP_RD_ATOMIC,
            "RTS",
        )
    }

    /// Move to the error state: every posted send completes with a flush error, so the
    /// resources they hold can be reclaimed before the queue pair is destroyed.
    pub(crate) fn set_error(&self) -> VResult<()> {
        // SAFETY: plain old data.
        let mut a: ib::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ib::ibv_qp_state::IBV_QPS_ERR;
        self.modify(&mut a, ib::ibv_qp_attr_mask::IBV_QP_STATE, "ERR")
    }

    /// Post one inline SEND of `bufs` (at most 2, total ≤ [`Qp::max_inline`]), signaled, tagged
    /// `wr_id`. The provider copies the bytes during the call, so any memory will do and
    /// nothing needs to outlive the call.
    pub(crate) fn post_send_inline(&self, wr_id: u64, bufs: &[&[u8]]) -> VResult<()> {
        assert!(bufs.len() <= 2, "at most two pieces per send");
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total > self.max_inline {
            return Err(VerbsError::Other(format!(
                "inline send of {total} bytes exceeds the queue pair's inline limit of {} bytes",
                self.max_inline
            )));
        }
        let mut pieces = [Piece {
            addr: 0,
            len: 0,
            lkey: 0,
        }; 2];
        for (p, b) in pieces.iter_mut().zip(bufs) {
            *p = Piece {
                addr: b.as_ptr() as u64,
                len: b.len() as u32,
                lkey: 0,
            };
        }
        // SAFETY: an inline send: the provider copies the bytes of `bufs` (alive across the call)
        // before `ibv_post_send` returns; no registration or later lifetime is needed.
        unsafe { self.post(wr_id, &pieces[..bufs.len()], true) }
    }

    /// Post one SEND of registered memory `pieces` (at most 2), signaled, tagged `wr_id`; the
    /// adapter reads the bytes after this returns, until the completion of `wr_id`.
    ///
    /// # Safety
    ///
    /// Every piece must name memory registered with this queue pair's protection domain under
    /// its `lkey` (from [`SendReg::piece`], [`RegisteredVec::piece`] or the region of a `Tx`),
    /// and that memory and its registration must stay alive and unmodified until the
    /// completion of `wr_id` has been polled (or the queue pair has been moved to the error
    /// state and its flushed completions reaped): the adapter reads it by DMA meanwhile.
    pub(crate) unsafe fn post_send(&self, wr_id: u64, pieces: &[Piece]) -> VResult<()> {
        // SAFETY: forwarded to the caller (this function's contract).
        unsafe { self.post(wr_id, pieces, false) }
    }

    /// # Safety
    ///
    /// As [`Qp::post_send`] when `inline` is false; for inline sends, the pieces must be
    /// readable for the duration of the call.
    unsafe fn post(&self, wr_id: u64, pieces: &[Piece], inline: bool) -> VResult<()> {
        assert!(pieces.len() <= 2, "at most two pieces per send");
        let mut sges = [ib::ibv_sge {
            addr: 0,
            length: 0,
            lkey: 0,
        }; 2];
        let mut n = 0;
        for p in pieces.iter().filter(|p| p.len > 0) {
            sges[n] = ib::ibv_sge {
                addr: p.addr,
                length: p.len,
                lkey: p.lkey,
            };
            n += 1;
        }
        let mut flags = ib::ibv_send_flags::IBV_SEND_SIGNALED;
        if inline {
            flags |= ib::ibv_send_flags::IBV_SEND_INLINE;
        }
        // SAFETY: ibv_send_wr is plain old data (raw pointers and unions of integers).
        let mut wr: ib::ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        wr.next = ptr::null_mut();
        wr.sg_list = sges.as_mut_ptr();
        wr.num_sge = n as libc::c_int;
        wr.opcode = ib::ibv_wr_opcode::IBV_WR_SEND;
        wr.send_flags = flags.0;
        let mut bad = ptr::null_mut();
        // SAFETY: valid QP; `wr` and `sges` live across the call. For an inline send the provider
        // copies the bytes during the call; otherwise the caller guarantees the memory stays
        // registered and unchanged until the completion (this function's contract).
        let r = unsafe { ib::ibv_post_send(self.qp.as_ptr(), &mut wr, &mut bad) };
        if r != 0 {
            return Err(VerbsError::Other(format!(
                "ibv_post_send failed: {}",
                std::io::Error::from_raw_os_error(r.abs())
            )));
        }
        Ok(())
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once; the CQs/SRQ/PD it uses are kept alive by the Arcs
        // in this struct, which drop after this.
        unsafe { ib::ibv_destroy_qp(self.qp.as_ptr()) };
    }
}

/// Receiver-not-ready NAK delay asked of senders: 1 = 0.01 ms (IB encoding), the shortest; a
/// receiver that ran out of buffers reposts them within microseconds.
const RNR_TIMER: u8 = 1;

/// Local ACK timeout: 4.096 µs × 2^14 ≈ 67 ms before a retransmission (7 retries ≈ 0.5 s before a
/// dead peer fails the QP).
const ACK_TIMEOUT: u8 = 14;

/// Wait until one of `fds` is readable or `timeout` passes; returns which were readable.
pub(crate) fn poll_readable(
    fds: &[RawFd],
    timeout: std::time::Duration,
    ready: &mut Vec<bool>,
) -> std::io::Result<()> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is a valid array of `p.len()` initialised pollfds that lives across the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    ready.clear();
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            ready.resize(fds.len(), false);
            return Ok(());
        }
        return Err(e);
    }
    ready.extend(p.iter().map(|x| x.revents != 0));
    Ok(())
}
