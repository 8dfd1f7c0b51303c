//! Which device a DPDK locator names, the device this process's client sessions use, and the
//! small helpers around them (memif socket paths, MACs for memif ports, the datagram size).

use std::sync::Mutex;

use super::addr::{bad_locator, Mac, DEFAULT_MTU, MAX_MTU};
use super::sys;
use crate::error::{Error, Result};
use crate::locator::Locator;

/// Which device a locator names for this process:
/// - `vdev=memif,socket=PATH` (optional `id=N`): a memif interface; a server listens on PATH,
///   a client connects to it.
/// - `vdev=af_packet,iface=IF`: an AF_PACKET socket on a kernel interface (e.g. a veth).
/// - `vdev=af_xdp,iface=IF`: an AF_XDP socket on a kernel interface.
/// - `dev=NAME`: an existing port by ethdev name (a PCI address such as `0000:01:00.0`, or a vdev
///   passed to EAL with `--vdev`).
/// - `port=N`: an existing port by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevSpec {
    /// memif over a unix socket.
    Memif {
        /// Socket path.
        socket: String,
        /// memif interface id on that socket.
        id: u32,
    },
    /// AF_PACKET on a kernel interface.
    AfPacket {
        /// Interface name.
        iface: String,
    },
    /// AF_XDP on a kernel interface.
    AfXdp {
        /// Interface name.
        iface: String,
    },
    /// An existing port by ethdev name.
    Name(String),
    /// An existing port by id.
    Port(u16),
}

impl DevSpec {
    /// The device a locator names.
    pub fn from_locator(loc: &Locator) -> Result<DevSpec> {
        let need = |key: &str, vdev: &str| {
            loc.get(key).map(str::to_string).ok_or_else(|| {
                bad_locator(
                    loc,
                    format!("vdev={vdev} needs {key}= (see docs/transports.md)"),
                )
            })
        };
        Ok(match (loc.get("vdev"), loc.get("dev"), loc.port()) {
            (Some("memif"), None, None) => DevSpec::Memif {
                socket: need("socket", "memif")?,
                id: loc.get_parsed("id")?.unwrap_or(0),
            },
            (Some("af_packet"), None, None) => DevSpec::AfPacket {
                iface: need("iface", "af_packet")?,
            },
            (Some("af_xdp"), None, None) => DevSpec::AfXdp {
                iface: need("iface", "af_xdp")?,
            },
            (Some(v), None, None) => {
                return Err(bad_locator(
                    loc,
                    format!("unknown vdev={v}: use memif, af_packet or af_xdp (or dev=NAME)"),
                ))
            }
            (None, Some(d), None) => DevSpec::Name(d.to_string()),
            (None, None, Some(p)) => DevSpec::Port(p),
            (None, None, None) => {
                return Err(bad_locator(
                    loc,
                    "a dpdk locator must name this process's device: vdev=memif,socket=PATH | \
                     vdev=af_packet,iface=IF | vdev=af_xdp,iface=IF | dev=PCI-ADDRESS | port=N"
                        .into(),
                ))
            }
            _ => {
                return Err(bad_locator(
                    loc,
                    "give only one of vdev=, dev= and port=".into(),
                ))
            }
        })
    }

    /// How to open it, for a server (memif listens) or a client (memif connects).
    pub(super) fn source(&self, server: bool, queues: u16, mac: Mac) -> sys::PortSource {
        let n = NEXT_VDEV.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self {
            DevSpec::Memif { socket, id } => {
                let role = if server { "server" } else { "client" };
                // memif refuses a client on a socket this process listens on; the same file
                // under another path string is a different socket to it.
                let path = if !server && LISTENING.lock().is_ok_and(|l| l.contains(socket)) {
                    alias_path(socket)
                } else {
                    socket.clone()
                };
                sys::PortSource::Vdev {
                    name: format!("net_memif_fc{}_{n}", std::process::id()),
                    args: format!("role={role},id={id},socket={path},socket-abstract=no,mac={mac}"),
                }
            }
            DevSpec::AfPacket { iface } => sys::PortSource::Vdev {
                name: format!("net_af_packet_fc{n}"),
                args: format!("iface={iface},qpairs={queues}"),
            },
            DevSpec::AfXdp { iface } => sys::PortSource::Vdev {
                name: format!("net_af_xdp_fc{n}"),
                args: format!("iface={iface},start_queue=0,queue_count={queues}"),
            },
            DevSpec::Name(n) => sys::PortSource::Name(n.clone()),
            DevSpec::Port(p) => sys::PortSource::Id(*p),
        }
    }

    /// A virtual device (no PCI probing needed).
    pub(super) fn is_vdev(&self) -> bool {
        matches!(
            self,
            DevSpec::Memif { .. } | DevSpec::AfPacket { .. } | DevSpec::AfXdp { .. }
        )
    }

    pub(super) fn memif_socket(&self) -> Option<&str> {
        match self {
            DevSpec::Memif { socket, .. } => Some(socket),
            _ => None,
        }
    }

    /// The locator options naming this device.
    pub(super) fn options(&self) -> Vec<(&'static str, String)> {
        match self {
            DevSpec::Memif { socket, id } => {
                let mut v = vec![("vdev", "memif".into()), ("socket", socket.clone())];
                if *id != 0 {
                    v.push(("id", id.to_string()));
                }
                v
            }
            DevSpec::AfPacket { iface } => {
                vec![("vdev", "af_packet".into()), ("iface", iface.clone())]
            }
            DevSpec::AfXdp { iface } => vec![("vdev", "af_xdp".into()), ("iface", iface.clone())],
            DevSpec::Name(n) => vec![("dev", n.clone())],
            DevSpec::Port(p) => vec![("port", p.to_string())],
        }
    }
}

/// This process's own device for client sessions, when set by [`set_local_device`].
static LOCAL_DEVICE: Mutex<Option<DevSpec>> = Mutex::new(None);

/// Non-memif devices this process serves on (a client session cannot share them: a NIC port is
/// opened once, and af_packet sockets of one process on one interface share a fanout group).
pub(super) static SERVING: Mutex<Vec<DevSpec>> = Mutex::new(Vec::new());

/// Use `dev` (from a locator's `vdev=`/`dev=`/`port=` options) for this process's client
/// sessions to every DPDK server whose locator does not name a memif socket. A server's locator
/// names *its* device (meaningless to another station); with a local device set, a client takes
/// only the server's `mac=` from it. The environment variable `FAASCACHE_DPDK_DEV` (e.g.
/// `vdev=af_packet,iface=eth1` or `dev=0000:01:00.0`) does the same. A process that serves on a
/// NIC or af_packet/af_xdp device and also connects (every FaaSCache server does: to the
/// coordinator, to backups) needs a second device for that: another port, or an SR-IOV VF.
pub fn set_local_device(dev: &Locator) -> Result<()> {
    let spec = DevSpec::from_locator(dev)?;
    if let Ok(mut l) = LOCAL_DEVICE.lock() {
        *l = Some(spec);
    }
    Ok(())
}

/// The device set by [`set_local_device`], else the one `FAASCACHE_DPDK_DEV` names.
fn local_device() -> Result<Option<DevSpec>> {
    if let Some(d) = LOCAL_DEVICE.lock().ok().and_then(|l| l.clone()) {
        return Ok(Some(d));
    }
    match std::env::var("FAASCACHE_DPDK_DEV") {
        Ok(v) if !v.trim().is_empty() => {
            let text = format!("dpdk:{}", v.trim());
            let loc: Locator = text.parse().map_err(|e| Error::Connect {
                locator: text.clone(),
                reason: format!("bad FAASCACHE_DPDK_DEV: {e}"),
            })?;
            DevSpec::from_locator(&loc).map(Some)
        }
        _ => Ok(None),
    }
}

/// The device a client session uses to reach the server `loc` names: the server's memif socket,
/// else this process's local device if one is set, else the device the locator names.
pub(super) fn client_device(loc: &Locator) -> Result<DevSpec> {
    let serving = SERVING.lock().map(|l| l.clone()).unwrap_or_default();
    choose_client_device(loc, local_device()?, &serving)
}

/// [`client_device`] given this process's local device and the devices it serves on.
pub(super) fn choose_client_device(
    loc: &Locator,
    local: Option<DevSpec>,
    serving: &[DevSpec],
) -> Result<DevSpec> {
    let named = DevSpec::from_locator(loc);
    Ok(match (named, local) {
        (Ok(m @ DevSpec::Memif { .. }), _) => m,
        (_, Some(local)) => local,
        (named, None) => {
            if let Some(mine) = serving.first() {
                return Err(bad_locator(
                    loc,
                    format!(
                        "this process serves on DPDK device {mine:?}, and its client sessions \
                         need a device of their own (a second port or VF, or another veth): \
                         give it with --dpdk-client-dev or FAASCACHE_DPDK_DEV (see \
                         docs/transports.md)"
                    ),
                ));
            }
            named?
        }
    })
}

pub(super) static NEXT_VDEV: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// memif sockets this process's servers listen on.
pub(super) static LISTENING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `dir/./file` for `dir/file`: the same file, another string.
pub(super) fn alias_path(p: &str) -> String {
    match p.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/./{file}"),
        None => format!("./{p}"),
    }
}

/// A random locally administered unicast MAC (for memif ports, which have no hardware address).
pub(super) fn random_mac() -> Mac {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT_VDEV.load(std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let x = h.finish().to_le_bytes();
    Mac([0x02, x[0], x[1], x[2], x[3], x[4]])
}

pub(super) fn mtu_of(loc: &Locator) -> Result<usize> {
    let mtu = loc.get_parsed::<usize>("mtu")?.unwrap_or(DEFAULT_MTU);
    if !(256..=MAX_MTU).contains(&mtu) {
        return Err(bad_locator(
            loc,
            format!("mtu={mtu} outside 256..={MAX_MTU}"),
        ));
    }
    Ok(mtu)
}

/// Remove a stale memif socket file (nobody accepts on it), so a new server can listen there.
/// A live one is left alone (the PMD then reports "address in use").
pub(super) fn clear_stale_socket(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return;
    };
    if md.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
