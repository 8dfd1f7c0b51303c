//! The DPDK transport (feature `dpdk`): the reliable datagram protocol
//! ([`crate::datagram::proto`]) and the UDP transport's session / dispatch code
//! (`crate::udp::{client_session, serve_devices}`) over raw Ethernet frames sent and received
//! with DPDK poll-mode drivers.
//!
//! **Frames.** `dst MAC | src MAC | EtherType 0x88B5 | dst endpoint u16 | src endpoint u16 |
//! length u16 | datagram` (all big-endian; 20 header bytes). 0x88B5 is IEEE 802's "local
//! experimental" EtherType; the length field survives the padding of short Ethernet frames.
//! A peer address ([`EthAddr`]) is a MAC plus an endpoint number: a server's dispatch threads
//! are endpoint 0, each client session on a port gets its own endpoint (1..), so many sessions of
//! one process share one port and queue.
//!
//! **Locators.** `dpdk:mac=02:..,vdev=memif,socket=/run/x.sock` and so on; the device options
//! name *this process's* device, `mac=` the server's address (see [`DevSpec`]); EAL options
//! (`huge=`, `mem=`, `lcores=`) apply to the first DPDK locator of the process (see
//! [`EalConfig`]). A server's [`crate::ServerHandle::local_locator`] names its MAC and device.
//! A process with a device of its own for client sessions ([`set_local_device`],
//! `FAASCACHE_DPDK_DEV`) takes only `mac=` from a server's locator (except memif, whose socket
//! is the server's); a process serving on a non-memif device must have one.
//!
//! **Threads.** EAL is initialised once per process ([`init_eal`], or implicitly by the first
//! `connect`/`serve`). A server port has one RX/TX queue pair per dispatch core, each owned by its
//! dispatch thread (the device must keep a client on one queue: memif and af_packet do; a NIC
//! needs RSS or a flow rule for EtherType 0x88B5, else everything lands on queue 0). A client port
//! has one queue pair shared by the process's sessions under a mutex: whoever receives delivers
//! other sessions' frames into their mailboxes. DPDK devices cannot wake a sleeping thread, so
//! `block` mode naps ([`NAP`]) between polls.

mod addr;
mod device;
mod sys;
use addr::bad_locator;
pub use addr::{Mac, MacParseError, DEFAULT_MTU, MAX_MTU};
pub use sys::DpdkError;

use device::{clear_stale_socket, client_device, mtu_of, random_mac, LISTENING, SERVING};
pub use device::{set_local_device, DevSpec};

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::datagram::{Driver, RxPacket, TxPacket};
use crate::error::{Error, Result};
use crate::locator::Locator;
use crate::server::{DispatchConfig, Handler, ServerHandle};
use crate::session::{ClientConfig, Session};
use crate::udp::{Device, RxWait, Sleeper, Wake};

/// Our EtherType (IEEE 802 local experimental 1).
pub const ETHERTYPE: u16 = 0x88B5;

/// Bytes before the datagram: Ethernet header (14) + endpoints and length (6).
pub const FRAME_HEADER: usize = 20;

/// How long an idle poller sleeps between polls when it may block (`block`/`adaptive` modes):
/// a DPDK device has no file descriptor to wake a sleeping thread.
pub const NAP: Duration = Duration::from_micros(100);

/// Descriptors per RX/TX queue of a server port (per dispatch core) and of a client port.
const SERVER_DESCRIPTORS: u16 = 1024;
const CLIENT_DESCRIPTORS: u16 = 512;

/// Frames a session's mailbox holds for it while another session polls the shared queue;
/// beyond that they are dropped (the protocol resends).
const MAILBOX_CAP: usize = 4096;

/// How long `connect` waits for a device's link (memif: the server) to come up.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Addresses and frames
// ---------------------------------------------------------------------------------------------

/// A peer: its MAC and endpoint number (0: a server's dispatch threads; 1..: client sessions).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EthAddr {
    /// Station address.
    pub mac: Mac,
    /// Endpoint on that station.
    pub ep: u16,
}

/// The 20-byte header of a frame from `from` to `to` carrying `len` datagram bytes.
pub fn encode_header(to: EthAddr, from: EthAddr, len: usize) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    h[0..6].copy_from_slice(&to.mac.0);
    h[6..12].copy_from_slice(&from.mac.0);
    h[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    h[14..16].copy_from_slice(&to.ep.to_be_bytes());
    h[16..18].copy_from_slice(&from.ep.to_be_bytes());
    h[18..20].copy_from_slice(&(len.min(u16::MAX as usize) as u16).to_be_bytes());
    h
}

/// Parse a received frame: `(to, from, datagram)`, or `None` if it is not ours (other
/// EtherType, too short, length field beyond the frame).
pub fn decode_frame(f: &[u8]) -> Option<(EthAddr, EthAddr, &[u8])> {
    if f.len() < FRAME_HEADER || f[12..14] != ETHERTYPE.to_be_bytes() {
        return None;
    }
    let mac = |b: &[u8]| Mac(b.try_into().expect("6 bytes"));
    let u16at = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    let len = u16at(18) as usize;
    let body = f.get(FRAME_HEADER..FRAME_HEADER + len)?;
    Some((
        EthAddr {
            mac: mac(&f[0..6]),
            ep: u16at(14),
        },
        EthAddr {
            mac: mac(&f[6..12]),
            ep: u16at(16),
        },
        body,
    ))
}

// ---------------------------------------------------------------------------------------------
// EAL
// ---------------------------------------------------------------------------------------------

/// Whether EAL uses hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Huge {
    /// Use hugepages if enough are free, else `--no-huge` (logged).
    #[default]
    Auto,
    /// Require hugepages (a clear error if not enough are free).
    On,
    /// `--no-huge`: anonymous memory (fine for memif/af_packet; not for most NICs' DMA).
    Off,
}

/// EAL options. Defaults: hugepages if free (with `--in-memory`: no files, so several processes
/// never collide) else `--no-huge --no-shconf --file-prefix=faascache-PID`, 512 MB, main lcore = the first CPU the process
/// may run on (EAL pins the initialising thread; its affinity is restored afterwards), PCI
/// probing only when the first locator names no vdev.
#[derive(Debug, Clone, Default)]
pub struct EalConfig {
    /// Hugepage policy (`huge=auto|1|0` in a locator).
    pub huge: Huge,
    /// Memory in MB (`mem=` in a locator; EAL `-m`).
    pub memory_mb: Option<usize>,
    /// EAL lcore list (`lcores=` in a locator; EAL `-l`).
    pub lcores: Option<String>,
    /// `--no-pci` (set when the first locator names a vdev).
    pub no_pci: bool,
    /// Further EAL arguments, verbatim (also read, whitespace-separated, from the environment
    /// variable `FAASCACHE_DPDK_EAL`), e.g. `--vdev=net_memif0,role=server` or `-a 0000:01:00.0`.
    pub extra: Vec<String>,
}

/// Memory EAL gets by default, MB.
const DEFAULT_MEMORY_MB: usize = 512;

impl EalConfig {
    /// The EAL options a locator carries (`huge=`, `mem=`, `lcores=`), plus `--no-pci` if it
    /// names a vdev.
    pub fn from_locator(loc: &Locator) -> Result<EalConfig> {
        let huge = match loc.get("huge") {
            None | Some("auto") => Huge::Auto,
            Some("1" | "on" | "yes") => Huge::On,
            Some("0" | "off" | "no") => Huge::Off,
            Some(v) => {
                return Err(bad_locator(
                    loc,
                    format!("huge={v}: use huge=auto, huge=1 or huge=0"),
                ))
            }
        };
        Ok(EalConfig {
            huge,
            memory_mb: loc.get_parsed("mem")?,
            lcores: loc.get("lcores").map(str::to_string),
            no_pci: loc.get("vdev").is_some(),
            extra: Vec::new(),
        })
    }

    /// The argument vector for `rte_eal_init` (`argv[0]` included).
    pub fn args(&self) -> Result<Vec<String>> {
        let mem = self.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        let mut a = vec!["faascache".to_string()];
        let lcores = match &self.lcores {
            Some(l) => l.clone(),
            None => first_allowed_cpu().to_string(),
        };
        a.extend(["-l".into(), lcores]);
        a.extend(["--no-telemetry".into(), "--log-level=warning".into()]);
        let free = free_hugepage_mb();
        let use_huge = match self.huge {
            Huge::Off => false,
            Huge::On => {
                if free < mem {
                    return Err(eal_error(format!(
                        "huge=1 but only {free} MB of hugepages are free and EAL needs {mem} MB: \
                         reserve some (echo {} > /proc/sys/vm/nr_hugepages, 2 MB pages), lower \
                         mem=, or use huge=0 (--no-huge)",
                        mem.div_ceil(2) + 64
                    )));
                }
                true
            }
            Huge::Auto => {
                if free < mem {
                    tracing::info!(
                        free_mb = free,
                        need_mb = mem,
                        "DPDK: not enough free hugepages; running EAL with --no-huge"
                    );
                }
                free >= mem
            }
        };
        if use_huge {
            a.push("--in-memory".into());
        } else {
            // --no-huge implies legacy memory, which EAL refuses with --in-memory; no shared
            // config and a per-process prefix keep processes apart just as well.
            a.extend([
                "--no-huge".into(),
                "--no-shconf".into(),
                format!("--file-prefix=faascache-{}", std::process::id()),
            ]);
        }
        a.extend(["-m".into(), mem.to_string()]);
        if self.no_pci {
            a.push("--no-pci".into());
        }
        a.extend(self.extra.iter().cloned());
        if let Ok(env) = std::env::var("FAASCACHE_DPDK_EAL") {
            a.extend(env.split_whitespace().map(str::to_string));
        }
        Ok(a)
    }
}

fn first_allowed_cpu() -> usize {
    core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0)
}

/// Free hugepage memory in MB (of the default size), from /proc/meminfo; 0 if unknown.
fn free_hugepage_mb() -> usize {
    let Ok(m) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    let field = |name: &str| {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    field("HugePages_Free:") * field("Hugepagesize:") / 1024
}

fn eal_error(reason: String) -> Error {
    Error::Connect {
        locator: "dpdk (EAL initialisation)".into(),
        reason,
    }
}

static EAL: OnceLock<std::result::Result<Vec<String>, DpdkError>> = OnceLock::new();

/// Initialise DPDK's EAL with `cfg` (once per process; later calls succeed without effect if it
/// already succeeded, and repeat the first failure if it failed — EAL cannot be retried).
/// Binaries call this from their flags before the first `dpdk:` locator; otherwise the first
/// `connect`/`serve` does it with [`EalConfig::from_locator`].
pub fn init_eal(cfg: &EalConfig) -> Result<()> {
    if let Some(Ok(_)) = EAL.get() {
        return Ok(());
    }
    let args = cfg.args()?;
    let r = EAL.get_or_init(|| {
        tracing::info!(args = ?args, "initialising DPDK EAL");
        sys::eal_init(&args).map(|()| args.clone()).map_err(|e| {
            DpdkError::Eal(format!(
                "rte_eal_init({}) failed: {e}. EAL's log above says why; common fixes: huge=0 \
                 when no hugepages are reserved, run as root (or with CAP_IPC_LOCK and a \
                 memlock limit), FAASCACHE_DPDK_EAL for extra EAL options",
                args.join(" ")
            ))
        })
    });
    match r {
        Ok(used) => {
            if used != &args {
                tracing::debug!(first = ?used, ignored = ?args, "DPDK EAL already initialised");
            }
            Ok(())
        }
        Err(e) => Err(eal_error(e.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// A client port's one queue, shared by every session of the process on that device.
struct SharedQueue {
    spec: DevSpec,
    port: Arc<sys::Port>,
    state: Mutex<SharedState>,
}

impl Drop for SharedQueue {
    /// Close the port, then forget it in the registry: until then a new session for the same
    /// device waits, so it never creates a second vdev on the same memif socket and id.
    fn drop(&mut self) {
        self.port.close();
        if let Ok(mut ports) = CLIENT_PORTS.lock() {
            ports.retain(|(s, w)| !(s == &self.spec && w.strong_count() == 0));
        }
    }
}

struct SharedState {
    queue: sys::Queue,
    /// Frames for other sessions, by endpoint, received while this one polled.
    mailboxes: HashMap<u16, Vec<(EthAddr, Vec<u8>)>>,
}

/// The next client endpoint number (1..=65535) of this process. Servers keep per-peer state
/// keyed by (MAC, endpoint) and ignore RPC ids below the peer's acknowledged watermark, and a new
/// session's ids start low again: so an endpoint must not come back soon — not when a port is
/// closed and reopened (a process-wide counter, not one per port), and not when the process
/// restarts on the same MAC (the counter starts at a random point).
fn next_endpoint() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut cur = NEXT.load(Ordering::Relaxed);
    loop {
        let start = if cur == 0 {
            // First use: a random start in 1..=65535.
            let m = random_mac().0;
            (u32::from(u16::from_be_bytes([m[1], m[2]])) % 65535) + 1
        } else {
            cur
        };
        let next = if start >= 65535 { 1 } else { start + 1 };
        match NEXT.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return start as u16,
            Err(now) => cur = now,
        }
    }
}

/// Open client ports, by device, so sessions share them.
static CLIENT_PORTS: Mutex<Vec<(DevSpec, Weak<SharedQueue>)>> = Mutex::new(Vec::new());

enum Io {
    /// A server dispatch thread's own queue.
    Owned(sys::Queue),
    /// A client session's endpoint on a shared queue.
    Shared(Arc<SharedQueue>),
}

/// A DPDK [`Driver`]: raw Ethernet frames on one queue pair (owned, for a server's dispatch
/// thread) or one endpoint of a shared queue (for a client session).
pub struct DpdkDriver {
    io: Io,
    local: EthAddr,
    mtu: usize,
    pool: Vec<Vec<u8>>,
    hdrs: Vec<[u8; FRAME_HEADER]>,
}

impl fmt::Debug for DpdkDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkDriver")
            .field("local", &self.local)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl DpdkDriver {
    fn take_buf(pool: &mut Vec<Vec<u8>>, bytes: &[u8]) -> Vec<u8> {
        let mut v = pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        v
    }
}

impl Drop for DpdkDriver {
    fn drop(&mut self) {
        if let Io::Shared(sq) = &self.io {
            if let Ok(mut st) = sq.state.lock() {
                st.mailboxes.remove(&self.local.ep);
            }
        }
    }
}

impl Driver for DpdkDriver {
    type Addr = EthAddr;

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn local_addr(&self) -> EthAddr {
        self.local
    }

    fn tx_burst(&mut self, batch: &mut Vec<TxPacket<EthAddr>>) -> io::Result<usize> {
        self.hdrs.clear();
        for p in batch.iter() {
            self.hdrs
                .push(encode_header(p.to, self.local, p.data.len()));
        }
        let frames: Vec<(&[u8], &[u8])> = self
            .hdrs
            .iter()
            .zip(batch.iter())
            .map(|(h, p)| (&h[..], p.data.as_slice()))
            .collect();
        match &mut self.io {
            Io::Owned(q) => q.tx(&frames),
            Io::Shared(sq) => sq
                .state
                .lock()
                .map_err(|_| io::Error::other("DPDK client queue lock poisoned"))?
                .queue
                .tx(&frames),
        };
        // Frames the device did not take were dropped, as a network may: all are consumed.
        let n = batch.len();
        for p in batch.drain(..) {
            self.pool.push(p.data);
        }
        self.pool.truncate(sys::BURST * 4);
        Ok(n)
    }

    fn rx_burst(&mut self, out: &mut Vec<RxPacket<EthAddr>>, max: usize) -> io::Result<usize> {
        let local = self.local;
        let pool = &mut self.pool;
        let mut n = 0;
        match &mut self.io {
            Io::Owned(q) => {
                q.rx(max, &mut |f| {
                    if let Some((to, from, body)) = decode_frame(f) {
                        // Only the dispatch endpoint's: frames for client endpoints on this
                        // station are not requests, whatever queue they land on.
                        if to.mac == local.mac && to.ep == local.ep {
                            out.push(RxPacket {
                                from,
                                data: Self::take_buf(pool, body),
                            });
                            n += 1;
                        }
                    }
                });
            }
            Io::Shared(sq) => {
                let mut guard = sq
                    .state
                    .lock()
                    .map_err(|_| io::Error::other("DPDK client queue lock poisoned"))?;
                let st = &mut *guard;
                if let Some(mine) = st.mailboxes.get_mut(&local.ep) {
                    for (from, data) in mine.drain(..) {
                        out.push(RxPacket { from, data });
                        n += 1;
                    }
                }
                let boxes = &mut st.mailboxes;
                st.queue.rx(max, &mut |f| {
                    let Some((to, from, body)) = decode_frame(f) else {
                        return;
                    };
                    if to.mac != local.mac {
                        return;
                    }
                    if to.ep == local.ep {
                        out.push(RxPacket {
                            from,
                            data: Self::take_buf(pool, body),
                        });
                        n += 1;
                    } else if let Some(b) = boxes.get_mut(&to.ep) {
                        if b.len() < MAILBOX_CAP {
                            b.push((from, body.to_vec()));
                        }
                    }
                });
            }
        }
        Ok(n)
    }

    fn post_buffers(&mut self, bufs: &mut Vec<Vec<u8>>) {
        self.pool.append(bufs);
        self.pool.truncate(sys::BURST * 4);
    }

    fn wait_rx(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        nap(timeout.unwrap_or(NAP));
        Ok(())
    }
}

fn nap(timeout: Duration) {
    if !timeout.is_zero() {
        std::thread::sleep(timeout.min(NAP));
    }
}

struct Napper;

impl Sleeper for Napper {
    fn sleep(&mut self, timeout: Duration) -> io::Result<()> {
        nap(timeout);
        Ok(())
    }
}

impl Device for DpdkDriver {
    fn wait_tx(&mut self) -> io::Result<()> {
        // Unreachable in practice: `tx_burst` always consumes the batch.
        std::thread::yield_now();
        Ok(())
    }

    fn rx_waiter(&self) -> RxWait {
        Box::new(|w| {
            nap(w);
            Ok(())
        })
    }

    fn sleeper(&self) -> io::Result<(Box<dyn Sleeper>, Wake)> {
        // The dispatcher checks its inbox flag after every nap; nothing to wake.
        Ok((Box::new(Napper), Box::new(|| {})))
    }
}

// ---------------------------------------------------------------------------------------------
// connect / serve
// ---------------------------------------------------------------------------------------------

fn ensure_eal(loc: &Locator) -> Result<()> {
    init_eal(&EalConfig::from_locator(loc)?)
}

/// The client's shared queue for `spec`, opening the port if no session uses it yet.
fn client_queue(loc: &Locator, spec: &DevSpec) -> Result<Arc<SharedQueue>> {
    let deadline = Instant::now() + LINK_TIMEOUT;
    let mut ports = loop {
        let ports = CLIENT_PORTS
            .lock()
            .map_err(|_| bad_locator(loc, "DPDK port registry lock poisoned".into()))?;
        match ports.iter().find(|(s, _)| s == spec) {
            None => break ports,
            Some((_, w)) => {
                if let Some(sq) = w.upgrade() {
                    return Ok(sq);
                }
            }
        }
        // The last session of that port is closing it: wait until it is gone.
        drop(ports);
        if Instant::now() >= deadline {
            return Err(bad_locator(
                loc,
                "a DPDK port being closed did not go away".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let src = spec.source(false, 1, random_mac());
    let port = sys::Port::open(
        &src,
        sys::PortConfig {
            queues: 1,
            descriptors: CLIENT_DESCRIPTORS,
            max_frame: mtu_of(loc)? + FRAME_HEADER,
        },
        spec.memif_socket(),
    )
    .map_err(|e| match spec {
        DevSpec::Memif { socket, .. } => bad_locator(
            loc,
            format!(
                "{e}; is a server listening on {socket}? Start it first (serve \
                 dpdk:vdev=memif,socket={socket})"
            ),
        ),
        _ => bad_locator(loc, e.to_string()),
    })?;
    let deadline = Instant::now() + LINK_TIMEOUT;
    while !port.link_up() {
        if Instant::now() >= deadline {
            let hint = match spec {
                DevSpec::Memif { socket, .. } => format!(
                    "no memif server answered on {socket}: start the server first (serve \
                     dpdk:vdev=memif,socket={socket})"
                ),
                _ => "check the cable / interface state (ip link set IF up)".into(),
            };
            return Err(bad_locator(
                loc,
                format!(
                    "link of {} did not come up within {LINK_TIMEOUT:?}: {hint}",
                    port.name()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let queue = port
        .queues()
        .pop()
        .ok_or_else(|| bad_locator(loc, "client port has no queue".into()))?;
    let sq = Arc::new(SharedQueue {
        spec: spec.clone(),
        port,
        state: Mutex::new(SharedState {
            queue,
            mailboxes: HashMap::new(),
        }),
    });
    ports.push((spec.clone(), Arc::downgrade(&sq)));
    Ok(sq)
}

pub(crate) fn connect(loc: &Locator, cfg: &ClientConfig) -> Result<Session> {
    let server_mac: Mac = match loc.get("mac") {
        Some(m) => m
            .parse()
            .map_err(|e: MacParseError| bad_locator(loc, e.to_string()))?,
        None => {
            return Err(bad_locator(
                loc,
                "a dpdk client locator needs the server's mac= (the server's local locator \
                 has it)"
                    .into(),
            ))
        }
    };
    let spec = client_device(loc)?;
    let mtu = mtu_of(loc)?;
    let mut eal = EalConfig::from_locator(loc)?;
    eal.no_pci |= spec.is_vdev();
    init_eal(&eal)?;
    let sq = client_queue(loc, &spec)?;
    let local = {
        let mut st = sq
            .state
            .lock()
            .map_err(|_| bad_locator(loc, "DPDK client queue lock poisoned".into()))?;
        // Next free endpoint number (1..=65535), skipping ones in use.
        let mut ep = None;
        for _ in 0..u16::MAX {
            let e = next_endpoint();
            if !st.mailboxes.contains_key(&e) {
                ep = Some(e);
                break;
            }
        }
        let ep =
            ep.ok_or_else(|| bad_locator(loc, "65535 sessions already use this DPDK port".into()))?;
        st.mailboxes.insert(ep, Vec::new());
        EthAddr {
            mac: Mac(sq.port.mac()),
            ep,
        }
    };
    let drv = DpdkDriver {
        io: Io::Shared(sq),
        local,
        mtu,
        pool: Vec::new(),
        hdrs: Vec::new(),
    };
    let server = EthAddr {
        mac: server_mac,
        ep: 0,
    };
    Ok(crate::udp::client_session(drv, server, loc, cfg))
}

pub(crate) fn serve(
    loc: &Locator,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
) -> Result<ServerHandle> {
    let bind_err = |reason: String| Error::Bind {
        locator: loc.to_string(),
        reason,
    };
    let spec = DevSpec::from_locator(loc)?;
    let mtu = mtu_of(loc)?;
    ensure_eal(loc)?;
    let cores = cfg.cores.clamp(1, u16::MAX as usize) as u16;
    let mac = match loc.get("mac") {
        Some(m) => m
            .parse()
            .map_err(|e: MacParseError| bind_err(e.to_string()))?,
        None => random_mac(),
    };
    if let DevSpec::Memif { socket, .. } = &spec {
        clear_stale_socket(socket);
    }
    let port = sys::Port::open(
        &spec.source(true, cores, mac),
        sys::PortConfig {
            queues: cores,
            descriptors: SERVER_DESCRIPTORS,
            max_frame: mtu + FRAME_HEADER,
        },
        spec.memif_socket(),
    )
    .map_err(|e| bind_err(e.to_string()))?;
    match &spec {
        DevSpec::Memif { socket, .. } => {
            if let Ok(mut l) = LISTENING.lock() {
                l.push(socket.clone());
            }
        }
        other => {
            if let Ok(mut l) = SERVING.lock() {
                l.push(other.clone());
            }
        }
    }
    let local_addr = EthAddr {
        mac: Mac(port.mac()),
        ep: 0,
    };
    let mut local = Locator::new(crate::TransportKind::Dpdk, &[])
        .map_err(|e| bind_err(e.to_string()))?
        .with("mac", &local_addr.mac.to_string());
    for (k, v) in spec.options() {
        local = local.with(k, &v);
    }
    if mtu != DEFAULT_MTU {
        local = local.with("mtu", &mtu.to_string());
    }
    let drivers: Vec<DpdkDriver> = port
        .queues()
        .into_iter()
        .map(|q| DpdkDriver {
            io: Io::Owned(q),
            local: local_addr,
            mtu,
            pool: Vec::new(),
            hdrs: Vec::new(),
        })
        .collect();
    drop(port); // the queues keep it open until the last dispatch thread ends
    crate::udp::serve_devices(local, drivers, handler, cfg, "dpdk")
        .map_err(|e| bind_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::device::{alias_path, choose_client_device};
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_foreign() {
        let a = EthAddr {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ep: 0,
        };
        let b = EthAddr {
            mac: "02:00:00:00:00:02".parse().unwrap(),
            ep: 7,
        };
        let mut f = encode_header(a, b, 3).to_vec();
        f.extend_from_slice(b"xyz");
        f.resize(60, 0); // Ethernet minimum-size padding
        let (to, from, body) = decode_frame(&f).unwrap();
        assert_eq!((to, from, body), (a, b, &b"xyz"[..]));
        // Length beyond the frame, other EtherType, runt.
        let mut long = encode_header(a, b, 100).to_vec();
        long.extend_from_slice(b"xyz");
        assert!(decode_frame(&long).is_none());
        let mut ipv4 = f.clone();
        ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert!(decode_frame(&ipv4).is_none());
        assert!(decode_frame(&f[..19]).is_none());
    }

    #[test]
    fn client_sessions_use_the_local_device_except_for_memif() {
        let l = |s: &str| s.parse::<Locator>().unwrap();
        let mine = DevSpec::AfPacket {
            iface: "eth2".into(),
        };
        let server = l("dpdk:mac=02:00:00:00:00:01,vdev=af_packet,iface=eth9");
        // The server's device is meaningless here: the local one is used.
        assert_eq!(
            choose_client_device(&server, Some(mine.clone()), &[]).unwrap(),
            mine
        );
        // memif: the server's socket is the link.
        let memif = l("dpdk:mac=02:00:00:00:00:01,vdev=memif,socket=/tmp/s.sock");
        assert!(matches!(
            choose_client_device(&memif, Some(mine.clone()), &[]).unwrap(),
            DevSpec::Memif { .. }
        ));
        // No local device: the locator's (a transport-level client names its own device).
        assert_eq!(
            choose_client_device(&server, None, &[]).unwrap(),
            DevSpec::AfPacket {
                iface: "eth9".into()
            }
        );
        // A process serving on a device of its own must name another for its sessions.
        let e = choose_client_device(&server, None, std::slice::from_ref(&mine)).unwrap_err();
        assert!(e.to_string().contains("--dpdk-client-dev"), "{e}");
        // A locator naming no device works with a local one.
        let bare = l("dpdk:mac=02:00:00:00:00:01");
        assert_eq!(
            choose_client_device(&bare, Some(mine.clone()), &[]).unwrap(),
            mine
        );
        assert!(choose_client_device(&bare, None, &[]).is_err());
    }

    #[test]
    fn client_endpoints_do_not_repeat_soon() {
        let a: Vec<u16> = (0..1000).map(|_| next_endpoint()).collect();
        assert!(a.iter().all(|&e| e != 0));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
    }

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "02:0A:ff:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:0a:ff:00:00:01");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "123:0:0:0:0:0",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn locators_name_devices_and_eal_options() {
        let l = |s: &str| s.parse::<Locator>().unwrap();
        assert_eq!(
            DevSpec::from_locator(&l("dpdk:vdev=memif,socket=/tmp/a.sock")).unwrap(),
            DevSpec::Memif {
                socket: "/tmp/a.sock".into(),
                id: 0
            }
        );
        assert_eq!(
            DevSpec::from_locator(&l("dpdk:dev=0000:01:00.0,mac=02:00:00:00:00:01")).unwrap(),
            DevSpec::Name("0000:01:00.0".into())
        );
        assert_eq!(
            DevSpec::from_locator(&l("dpdk:port=1")).unwrap(),
            DevSpec::Port(1)
        );
        for bad in [
            "dpdk:",
            "dpdk:vdev=memif",
            "dpdk:vdev=tap,iface=x",
            "dpdk:port=0,dev=x",
        ] {
            assert!(DevSpec::from_locator(&l(bad)).is_err(), "{bad}");
        }
        let e = EalConfig::from_locator(&l("dpdk:vdev=memif,socket=/x,huge=0,mem=128,lcores=1"))
            .unwrap();
        let args = e.args().unwrap();
        for want in ["--no-huge", "--no-shconf", "--no-pci", "128", "-l"] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(EalConfig::from_locator(&l("dpdk:huge=maybe")).is_err());
        assert_eq!(alias_path("/tmp/a.sock"), "/tmp/./a.sock");
    }
}
