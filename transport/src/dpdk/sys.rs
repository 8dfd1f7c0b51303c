//! Every call into DPDK (through `faascache-dpdk-sys`): EAL initialisation, ports (vdev
//! hot-plug, configuration, start/stop/close) and the per-queue fast path (copying frames between
//! `Vec`s and mbufs). All `unsafe` of the DPDK transport is here, behind safe types:
//!
//! - [`eal_init`] runs `rte_eal_init` at most once per process (callers serialise it).
//! - A [`Port`] owns one started ethdev port and its mbuf pool; dropping it stops and closes the
//!   port (and removes the vdev it created). [`Queue`]s hold an `Arc<Port>`, so a port outlives
//!   every queue that uses it.
//! - A [`Queue`] is one RX/TX queue pair. DPDK queues are not thread-safe: a `Queue` is only
//!   used through `&mut`, and [`Port::queues`] hands out each queue index exactly once.
//!
//! **memif teardown hazard.** DPDK 22.11's memif PMD unmaps a port's shared memory from EAL's
//! interrupt thread when the *peer* disconnects, while the application may be inside
//! `rte_eth_rx_burst`/`tx_burst` on that port (a use-after-unmap crash). Within one process we
//! avoid it: rx/tx on memif ports hold [`MEMIF_QUIESCE`] for reading, and closing a memif port
//! holds it for writing until this process's peer port on the same socket has seen the
//! disconnect and a settling delay has passed. A peer *process* that goes away cannot be fenced
//! this way (documented in docs/transports.md).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

use faascache_dpdk_sys as ffi;
use parking_lot::{Mutex, RwLock};

/// See the module doc: memif data-path calls read-lock it, memif teardown write-locks it.
static MEMIF_QUIESCE: RwLock<()> = RwLock::new(());

/// Open memif ports of this process: port id and socket path (normalised: no `/./`).
static MEMIF_PORTS: Mutex<Vec<(u16, String)>> = Mutex::new(Vec::new());

/// After a peer's link went down, how long its interrupt thread may still be unmapping.
const MEMIF_SETTLE: std::time::Duration = std::time::Duration::from_millis(10);

/// `rte_strerror(e)` for a positive or negative errno.
/// Why a DPDK operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DpdkError {
    /// EAL initialisation failed (DPDK's description of `rte_errno`).
    #[error("{0}")]
    Eal(String),
    /// Any other failure of a DPDK call (port, queue, pool, device); the text names the call,
    /// the device and DPDK's error.
    #[error("{0}")]
    Other(String),
}

fn strerror(e: c_int) -> String {
    let e = e.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ffi::rte_strerror(e)) };
    format!("{} (errno {e})", s.to_string_lossy())
}

fn rte_errno() -> c_int {
    // SAFETY: reads DPDK's per-thread errno; no preconditions.
    unsafe { ffi::fc_errno() }
}

/// Run `rte_eal_init` with `args` (argv[0] included). Must be called at most once per process.
/// Restores the calling thread's CPU affinity afterwards (EAL pins it to its main lcore).
pub(crate) fn eal_init(args: &[String]) -> Result<(), DpdkError> {
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| {
            CString::new(a.as_str())
                .map_err(|_| DpdkError::Other(format!("EAL argument {a:?} contains NUL")))
        })
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*mut c_char> = cargs.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: cpu_set_t is plain old data; all-zero is a valid (empty) set.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `saved` is a valid cpu_set_t of the size passed; 0 = the calling thread.
    let have_saved =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) }
            == 0;
    // SAFETY: argv holds `args.len()` pointers to NUL-terminated strings in `cargs`, which are
    // never freed (see below), plus C's trailing NULL; EAL may permute argv, our own vector.
    let r = unsafe { ffi::rte_eal_init(args.len() as c_int, argv.as_mut_ptr()) };
    if have_saved {
        // SAFETY: restores the set read above for the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved) };
    }
    if r < 0 {
        return Err(DpdkError::Eal(strerror(rte_errno())));
    }
    // Once per process: keep the strings for good in case EAL kept pointers into argv.
    std::mem::forget(cargs);
    std::mem::forget(argv);
    Ok(())
}

/// What to open.
#[derive(Debug, Clone)]
pub(crate) enum PortSource {
    /// Hot-plug a virtual device: `rte_vdev_init(name, args)`; removed again when the port drops.
    Vdev { name: String, args: String },
    /// An existing port by ethdev name (PCI address, or a vdev given to EAL with `--vdev`).
    Name(String),
    /// An existing port by id.
    Id(u16),
}

/// Port configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortConfig {
    /// RX/TX queue pairs.
    pub queues: u16,
    /// Descriptors per RX and per TX queue (adjusted to the device's limits).
    pub descriptors: u16,
    /// Largest frame (Ethernet header included, FCS excluded) the port must carry.
    pub max_frame: usize,
}

/// One configured, started port and its mbuf pool.
#[derive(Debug)]
pub(crate) struct Port {
    id: u16,
    name: String,
    vdev: Option<CString>,
    pool: *mut ffi::rte_mempool,
    queues: u16,
    mac: [u8; 6],
    data_room: usize,
    next_queue: std::sync::atomic::AtomicU16,
    closed: std::sync::atomic::AtomicBool,
    /// memif socket (normalised), for the teardown fence.
    memif: Option<String>,
}

// SAFETY: the port id and pool pointer are process-global DPDK handles; ethdev control calls are
// made only from `open` and `drop` (single owner), the pool is thread-safe (ring mp/mc, no
// per-lcore cache), and each queue is used by one `Queue` (`&mut`) at a time.
unsafe impl Send for Port {}
// SAFETY: as above; the shared methods only read immutable fields or the link status.
unsafe impl Sync for Port {}

impl Port {
    /// Open (and for vdevs create) the port, configure `cfg.queues` queue pairs, start it.
    /// `memif_socket` names the socket of a memif port (for the teardown fence).
    pub(crate) fn open(
        src: &PortSource,
        cfg: PortConfig,
        memif_socket: Option<&str>,
    ) -> Result<Arc<Port>, DpdkError> {
        let (id, name, vdev) = match src {
            PortSource::Vdev { name, args } => {
                let cname = CString::new(name.as_str())
                    .map_err(|_| DpdkError::Other("NUL in vdev name".into()))?;
                let cargs = CString::new(args.as_str())
                    .map_err(|_| DpdkError::Other("NUL in vdev arguments".into()))?;
                // SAFETY: both are valid NUL-terminated strings for the duration of the call.
                let r = unsafe { ffi::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
                if r < 0 {
                    return Err(DpdkError::Other(format!(
                        "creating virtual device `{name},{args}` failed: {} (the PMD's log \
                         line above says why)",
                        strerror(r)
                    )));
                }
                let id = port_by_name(name).inspect_err(|_| {
                    // SAFETY: `cname` names the vdev created just above.
                    unsafe { ffi::rte_vdev_uninit(cname.as_ptr()) };
                })?;
                (id, name.clone(), Some(cname))
            }
            PortSource::Name(n) => (port_by_name(n)?, n.clone(), None),
            PortSource::Id(id) => {
                // SAFETY: pure query.
                if unsafe { ffi::rte_eth_dev_is_valid_port(*id) } == 0 {
                    // SAFETY: pure query.
                    let n = unsafe { ffi::rte_eth_dev_count_avail() };
                    return Err(DpdkError::Other(format!(
                        "DPDK port {id} does not exist ({n} ports are available): bind a NIC to \
                         vfio-pci (dpdk-devbind.py -b vfio-pci <pci>) or name a vdev"
                    )));
                }
                (*id, format!("port {id}"), None)
            }
        };
        // From here on, `Drop` undoes everything (pool may still be null).
        let mut port = Port {
            id,
            name,
            vdev,
            pool: std::ptr::null_mut(),
            queues: cfg.queues,
            mac: [0; 6],
            data_room: 0,
            next_queue: std::sync::atomic::AtomicU16::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            memif: memif_socket.map(|s| s.replace("/./", "/")),
        };
        port.configure(cfg)?;
        if let Some(s) = &port.memif {
            MEMIF_PORTS.lock().push((port.id, s.clone()));
        }
        Ok(Arc::new(port))
    }

    fn configure(&mut self, cfg: PortConfig) -> Result<(), DpdkError> {
        let id = self.id;
        let what = |call: &str, r: c_int| {
            DpdkError::Other(format!("{call} on {} failed: {}", self.name, strerror(r)))
        };
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: `info` is a valid, writable rte_eth_dev_info.
        let r = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        if r != 0 {
            return Err(what("rte_eth_dev_info_get", r));
        }
        if cfg.queues > info.max_rx_queues || cfg.queues > info.max_tx_queues {
            return Err(DpdkError::Other(format!(
                "{} supports {} RX / {} TX queues; {} dispatch cores need {} pairs: use fewer \
                 cores (or qpairs/queue_count on the vdev)",
                self.name, info.max_rx_queues, info.max_tx_queues, cfg.queues, cfg.queues
            )));
        }
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: `conf` is a valid (all-default) configuration that outlives the call.
        let r = unsafe { ffi::rte_eth_dev_configure(id, cfg.queues, cfg.queues, &conf) };
        if r != 0 {
            return Err(what("rte_eth_dev_configure", r));
        }
        let l2_mtu = cfg.max_frame.saturating_sub(14);
        if l2_mtu > 1500 {
            // SAFETY: configured port; plain value argument.
            let r = unsafe { ffi::rte_eth_dev_set_mtu(id, l2_mtu as u16) };
            if r != 0 {
                return Err(DpdkError::Other(format!(
                    "{} cannot take {l2_mtu}-byte frames ({}): lower the locator's mtu=",
                    self.name,
                    strerror(r)
                )));
            }
        }
        let (mut nrx, mut ntx) = (cfg.descriptors, cfg.descriptors);
        // SAFETY: valid pointers to two u16 that live across the call.
        let r = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        if r != 0 {
            return Err(what("rte_eth_dev_adjust_nb_rx_tx_desc", r));
        }
        // SAFETY: pure query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let headroom = ffi::RTE_PKTMBUF_HEADROOM as usize;
        self.data_room = cfg.max_frame.max(2048);
        let buf_size = (self.data_room + headroom).min(u16::MAX as usize) as u16;
        let n = (cfg.queues as u32) * (nrx as u32 + ntx as u32 + 2 * 64) + 1024;
        let pool_name = CString::new(format!("fc_pool_{id}_{}", unique()))
            .map_err(|_| DpdkError::Other("NUL in pool name".into()))?;
        // SAFETY: valid NUL-terminated name; numeric arguments in range. Cache 0: our threads
        // are not EAL lcores, so a per-lcore cache would not be used anyway.
        self.pool =
            unsafe { ffi::rte_pktmbuf_pool_create(pool_name.as_ptr(), n, 0, 0, buf_size, socket) };
        if self.pool.is_null() {
            let e = rte_errno();
            return Err(DpdkError::Other(format!(
                "cannot allocate {n} packet buffers of {buf_size} bytes for {}: {} — DPDK's \
                 memory is too small: give EAL more (mem=MB in the locator, or -m) or reserve \
                 more hugepages",
                self.name,
                strerror(e)
            )));
        }
        for q in 0..cfg.queues {
            // SAFETY: configured port, queue index < configured count; NULL conf = the
            // driver's defaults; the pool outlives the port (freed in Drop after close).
            let r = unsafe {
                ffi::rte_eth_rx_queue_setup(id, q, nrx, socket as u32, std::ptr::null(), self.pool)
            };
            if r != 0 {
                return Err(what("rte_eth_rx_queue_setup", r));
            }
            // SAFETY: as above.
            let r =
                unsafe { ffi::rte_eth_tx_queue_setup(id, q, ntx, socket as u32, std::ptr::null()) };
            if r != 0 {
                return Err(what("rte_eth_tx_queue_setup", r));
            }
        }
        // SAFETY: fully configured port.
        let r = unsafe { ffi::rte_eth_dev_start(id) };
        if r != 0 {
            return Err(what("rte_eth_dev_start", r));
        }
        let mut mac = ffi::rte_ether_addr::default();
        // SAFETY: `mac` is a valid, writable rte_ether_addr.
        let r = unsafe { ffi::rte_eth_macaddr_get(id, &mut mac) };
        if r != 0 {
            return Err(what("rte_eth_macaddr_get", r));
        }
        self.mac = mac.addr_bytes;
        Ok(())
    }

    /// The port's MAC address.
    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The ethdev name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the link is up (memif: the peer is connected).
    pub(crate) fn link_up(&self) -> bool {
        // SAFETY: pure query on a started port.
        unsafe { ffi::fc_link_up(self.id) == 1 }
    }

    /// Take every queue pair of the port (once; later calls return nothing).
    pub(crate) fn queues(self: &Arc<Port>) -> Vec<Queue> {
        use std::sync::atomic::Ordering;
        let first = self.next_queue.swap(self.queues, Ordering::AcqRel);
        (first..self.queues)
            .map(|q| Queue {
                port: self.clone(),
                q,
                mbufs: vec![std::ptr::null_mut(); BURST],
                scratch: vec![0; self.data_room],
            })
            .collect()
    }
}

impl Port {
    /// Stop and close the port (and remove its vdev) now, before the last reference goes.
    /// Idempotent. The caller guarantees that no thread uses a queue of the port any more (the
    /// owner of the last `Queue` calls it while tearing that down); later rx/tx calls on a
    /// closed port are not made.
    pub(crate) fn close(&self) {
        use std::sync::atomic::Ordering;
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let fence = self.memif.as_ref().map(|s| {
            let mut ports = MEMIF_PORTS.lock();
            ports.retain(|(id, _)| *id != self.id);
            let peers: Vec<u16> = ports
                .iter()
                .filter(|(_, p)| p == s)
                .map(|(id, _)| *id)
                .collect();
            (MEMIF_QUIESCE.write(), peers)
        });
        // SAFETY: per the contract above nothing uses the queues; stop/close tolerate a port
        // that was never started; the vdev name is the one created in `open`.
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
            if let Some(v) = &self.vdev {
                ffi::rte_vdev_uninit(v.as_ptr());
            }
        }
        if let Some((_guard, peers)) = fence {
            // Keep this process's memif pollers out until the peer port saw the disconnect.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            // SAFETY: pure queries on ports that are open (they leave MEMIF_PORTS only in
            // `close`, which needs the write lock we hold).
            while peers.iter().any(|&p| unsafe { ffi::fc_link_up(p) } == 1)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if !peers.is_empty() {
                std::thread::sleep(MEMIF_SETTLE);
            }
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // No `Queue` of this port exists any more (each holds an Arc<Port>).
        self.close();
        if !self.pool.is_null() {
            // SAFETY: the port is closed, so the driver holds no mbufs of the pool, and no
            // `Queue` exists to allocate from it.
            unsafe { ffi::rte_mempool_free(self.pool) };
        }
    }
}

fn port_by_name(name: &str) -> Result<u16, DpdkError> {
    let c = CString::new(name).map_err(|_| DpdkError::Other("NUL in device name".into()))?;
    let mut id = 0u16;
    // SAFETY: valid NUL-terminated name and a writable u16.
    let r = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if r != 0 {
        // SAFETY: pure query.
        let n = unsafe { ffi::rte_eth_dev_count_avail() };
        return Err(DpdkError::Other(format!(
            "no DPDK port named `{name}` ({n} ports available): bind the NIC to vfio-pci \
             (dpdk-devbind.py -b vfio-pci {name}) and check EAL's log above, or use vdev="
        )));
    }
    Ok(id)
}

fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Largest burst of one `rx`/`tx` call.
pub(crate) const BURST: usize = 32;

/// How many times `tx` offers frames the device did not take before dropping them (a full TX
/// ring that does not drain: the peer is gone or not polling; the protocol resends).
const TX_RETRIES: usize = 64;

/// One RX/TX queue pair of a port, used by one thread at a time.
#[derive(Debug)]
pub(crate) struct Queue {
    port: Arc<Port>,
    q: u16,
    mbufs: Vec<*mut ffi::rte_mbuf>,
    scratch: Vec<u8>,
}

// SAFETY: the mbuf pointers in `mbufs` are only scratch slots (every mbuf is freed or handed to
// the device before a method returns); the queue itself is used through `&mut` only.
unsafe impl Send for Queue {}

impl Queue {
    /// Receive up to `max` (at most [`BURST`]) frames; call `each` with each frame's bytes.
    /// Returns how many frames were received.
    pub(crate) fn rx(&mut self, max: usize, each: &mut dyn FnMut(&[u8])) -> usize {
        let _fence = self.port.memif.is_some().then(|| MEMIF_QUIESCE.read());
        let n = max.min(BURST) as u16;
        // SAFETY: `mbufs` has room for BURST >= n pointers; the queue index is this queue's own.
        let got =
            unsafe { ffi::fc_rx_burst(self.port.id, self.q, self.mbufs.as_mut_ptr(), n) } as usize;
        for i in 0..got {
            let m = self.mbufs[i];
            // SAFETY: the device returned `got` valid mbufs that we now own.
            let len = unsafe { ffi::fc_pktmbuf_pkt_len(m) } as usize;
            if len <= self.scratch.len() {
                // SAFETY: reads `len` <= pkt_len bytes; copies into `scratch` (room for len)
                // only when the packet is segmented, else returns a pointer into the mbuf.
                let p = unsafe {
                    ffi::fc_pktmbuf_read(m, 0, len as u32, self.scratch.as_mut_ptr().cast())
                };
                if !p.is_null() {
                    // SAFETY: `p` points at `len` readable bytes (mbuf data or scratch) that stay
                    // valid until the mbuf is freed below.
                    each(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) });
                }
            }
            // SAFETY: we own the mbuf; it is not used after this.
            unsafe { ffi::fc_pktmbuf_free(m) };
        }
        got
    }

    /// Send frames, each the concatenation of its two parts (header, body). Frames the device
    /// does not take after a few retries are dropped (an unreliable link, as the protocol
    /// expects). Returns how many the device took.
    pub(crate) fn tx(&mut self, frames: &[(&[u8], &[u8])]) -> usize {
        let _fence = self.port.memif.is_some().then(|| MEMIF_QUIESCE.read());
        let mut sent = 0;
        for chunk in frames.chunks(BURST) {
            let n = chunk.len();
            // SAFETY: `mbufs` has room for BURST >= n pointers.
            let r = unsafe {
                ffi::fc_pktmbuf_alloc_bulk(self.port.pool, self.mbufs.as_mut_ptr(), n as u32)
            };
            if r != 0 {
                break; // pool exhausted: drop the rest (mbufs are in flight; they will return)
            }
            let mut ok = 0;
            for (i, (h, b)) in chunk.iter().enumerate() {
                let len = h.len() + b.len();
                let m = self.mbufs[i];
                let dst = if len <= self.port.data_room {
                    // SAFETY: fresh mbuf from our pool; append checks its tailroom.
                    unsafe { ffi::fc_pktmbuf_append(m, len as u16) }
                } else {
                    std::ptr::null_mut()
                };
                if dst.is_null() {
                    // SAFETY: fresh mbuf we own, never handed out.
                    unsafe { ffi::fc_pktmbuf_free(m) };
                    continue;
                }
                // SAFETY: `dst` points at `len` writable bytes inside the mbuf; the sources are
                // distinct Rust slices of the stated lengths.
                unsafe {
                    std::ptr::copy_nonoverlapping(h.as_ptr(), dst.cast::<u8>(), h.len());
                    std::ptr::copy_nonoverlapping(
                        b.as_ptr(),
                        dst.cast::<u8>().add(h.len()),
                        b.len(),
                    );
                }
                self.mbufs[ok] = m;
                ok += 1;
            }
            let mut done = 0;
            let mut tries = 0;
            while done < ok && tries < TX_RETRIES {
                // SAFETY: mbufs[done..ok] are filled mbufs we own; the device takes ownership of
                // the first `k` it accepts.
                let k = unsafe {
                    ffi::fc_tx_burst(
                        self.port.id,
                        self.q,
                        self.mbufs[done..].as_mut_ptr(),
                        (ok - done) as u16,
                    )
                } as usize;
                done += k;
                tries += 1;
                if k == 0 {
                    std::hint::spin_loop();
                }
            }
            for &m in &self.mbufs[done..ok] {
                // SAFETY: not taken by the device: still ours.
                unsafe { ffi::fc_pktmbuf_free(m) };
            }
            sent += done;
        }
        sent
    }
}
