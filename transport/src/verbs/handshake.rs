//! Control path: which device, port and GID to use, and the queue-pair exchange over TCP.
//!
//! **Exchange.** The client opens a TCP connection to the locator's `host:port`, sends a
//! [`Hello`] describing its queue pair, and the server answers with its own once its queue pair
//! is ready to receive (RTR or later). Both then move their queue pair to RTS. The TCP connection
//! stays open as the connection's liveness signal: neither side sends on it again, and end of
//! stream on it means the peer is gone (server shut down, client closed its session).
//!
//! Hello layout (48 bytes, little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4  | magic `FCqp` |
//! | 4  | 2  | version (1) |
//! | 6  | 2  | reserved, 0 |
//! | 8  | 4  | queue pair number (< 2^24) |
//! | 12 | 4  | initial packet sequence number (< 2^24) |
//! | 16 | 2  | LID (InfiniBand; 0 on RoCE) |
//! | 18 | 1  | port MTU (`ibv_mtu`: 1 = 256 … 5 = 4096) |
//! | 19 | 1  | reserved, 0 |
//! | 20 | 4  | receive buffer size: the largest fragment this side accepts (256 ..= 65536) |
//! | 24 | 16 | GID |
//! | 40 | 4  | reserved, 0 |
//! | 44 | 4  | CRC32C of bytes 0..44 |
//!
//! **Device selection** (`Options`): the server takes `dev=NAME`, `ib_port=N` (default 1;
//! `port=` is the TCP port), `gid=INDEX`, `pkey_index=N` from its locator; a
//! client takes them from the environment (`FAASCACHE_VERBS_DEV`, `FAASCACHE_VERBS_IB_PORT`,
//! `FAASCACHE_VERBS_GID`, `FAASCACHE_VERBS_PKEY_INDEX`), because the locator it connects with
//! describes the server, not the client's own NIC. Unset: the first device whose port is active;
//! on RoCE the first RoCE v2 GID holding an IPv4 address (else the first RoCE v2 GID, else
//! index 0); on InfiniBand GID index 0 and LID routing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use super::addr::{LocalPath, QpAddress};
use super::sys::{self, Context, PortInfo, VResult, VerbsError};
use crate::locator::Locator;

/// Encoded size of a [`Hello`].
pub(crate) const HELLO_LEN: usize = 48;
const HELLO_MAGIC: [u8; 4] = *b"FCqp";
const HELLO_VERSION: u16 = 1;

/// Smallest and largest receive buffer (fragment) size a peer may announce.
pub(crate) const MIN_FRAGMENT: usize = 256;
pub(crate) const MAX_FRAGMENT: usize = 64 * 1024;

/// One side's description of its queue pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) qp: QpAddress,
    /// Largest SEND this side can receive (its receive buffer size).
    pub(crate) recv_buf: u32,
}

impl Hello {
    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&HELLO_MAGIC);
        b[4..6].copy_from_slice(&HELLO_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.qp.qpn.to_le_bytes());
        b[12..16].copy_from_slice(&self.qp.psn.to_le_bytes());
        b[16..18].copy_from_slice(&self.qp.lid.to_le_bytes());
        b[18] = self.qp.mtu as u8;
        b[20..24].copy_from_slice(&self.recv_buf.to_le_bytes());
        b[24..40].copy_from_slice(&self.qp.gid);
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and check every field; the first broken rule is the error.
    pub(crate) fn decode(b: &[u8]) -> Result<Hello, VerbsError> {
        if b.len() != HELLO_LEN {
            return Err(VerbsError::Other(format!(
                "hello is {} bytes, expected {HELLO_LEN}",
                b.len()
            )));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b[0..4] != HELLO_MAGIC {
            return Err(VerbsError::Other(
                "bad hello magic: the peer is not a FaaSCache verbs endpoint".into(),
            ));
        }
        if u16_at(4) != HELLO_VERSION {
            return Err(VerbsError::Other(format!(
                "hello version {} (this build speaks {HELLO_VERSION}): run the same FaaSCache version on both sides",
                u16_at(4)
            )));
        }
        let crc = crc32c::crc32c(&b[..44]);
        if u32_at(44) != crc {
            return Err(VerbsError::Other("hello checksum mismatch".into()));
        }
        if u16_at(6) != 0 || b[19] != 0 || u32_at(40) != 0 {
            return Err(VerbsError::Other(
                "reserved hello field set: the peer uses a newer protocol".into(),
            ));
        }
        let qpn = u32_at(8);
        let psn = u32_at(12);
        if qpn >= 1 << 24 || psn >= 1 << 24 {
            return Err(VerbsError::Other(format!(
                "queue pair number {qpn} or PSN {psn} exceeds 24 bits"
            )));
        }
        let mtu = b[18] as u32;
        if !(1..=5).contains(&mtu) {
            return Err(VerbsError::Other(format!(
                "path MTU code {mtu} is not 1..=5"
            )));
        }
        let recv_buf = u32_at(20);
        if !(MIN_FRAGMENT..=MAX_FRAGMENT).contains(&(recv_buf as usize)) {
            return Err(VerbsError::Other(format!(
                "receive buffer size {recv_buf} outside {MIN_FRAGMENT}..={MAX_FRAGMENT}"
            )));
        }
        let mut gid = [0u8; 16];
        gid.copy_from_slice(&b[24..40]);
        Ok(Hello {
            qp: QpAddress {
                qpn,
                psn,
                lid: u16_at(16),
                gid,
                mtu,
            },
            recv_buf,
        })
    }
}

/// Send our hello and read the peer's (blocking, with the stream's timeouts).
pub(crate) fn write_hello(s: &mut TcpStream, h: &Hello) -> std::io::Result<()> {
    s.write_all(&h.encode())
}

pub(crate) fn read_hello(s: &mut TcpStream) -> Result<Hello, VerbsError> {
    let mut b = [0u8; HELLO_LEN];
    s.read_exact(&mut b).map_err(|e| {
        VerbsError::Other(format!("reading the peer's queue-pair description: {e}"))
    })?;
    Hello::decode(&b)
}

/// Bytes of an `ibv_mtu` code.
pub(crate) fn mtu_bytes(code: u32) -> usize {
    128usize << code.clamp(1, 5)
}

/// Which device, port, GID and partition to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) dev: Option<String>,
    pub(crate) ib_port: Option<u8>,
    pub(crate) gid: Option<u32>,
    pub(crate) pkey_index: Option<u16>,
}

fn parse_opt<T: std::str::FromStr>(what: &str, v: Option<String>) -> Result<Option<T>, VerbsError> {
    match v {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| VerbsError::Other(format!("{what}={s:?} is not a valid number"))),
    }
}

impl Options {
    /// A server's options, from its locator.
    pub(crate) fn from_locator(loc: &Locator) -> Result<Options, VerbsError> {
        let get = |k: &str| loc.get(k).map(str::to_string);
        Ok(Options {
            dev: get("dev"),
            ib_port: parse_opt("ib_port", get("ib_port"))?,
            gid: parse_opt("gid", get("gid"))?,
            pkey_index: parse_opt("pkey_index", get("pkey_index"))?,
        })
    }

    /// A client's options, from the environment.
    pub(crate) fn from_env() -> Result<Options, VerbsError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Options {
            dev: get("FAASCACHE_VERBS_DEV"),
            ib_port: parse_opt("FAASCACHE_VERBS_IB_PORT", get("FAASCACHE_VERBS_IB_PORT"))?,
            gid: parse_opt("FAASCACHE_VERBS_GID", get("FAASCACHE_VERBS_GID"))?,
            pkey_index: parse_opt(
                "FAASCACHE_VERBS_PKEY_INDEX",
                get("FAASCACHE_VERBS_PKEY_INDEX"),
            )?,
        })
    }
}

/// An opened device and the port/GID chosen on it.
pub(crate) struct Selected {
    pub(crate) ctx: Arc<Context>,
    pub(crate) port: PortInfo,
    pub(crate) path: LocalPath,
    pub(crate) gid: [u8; 16],
}

/// Open the device the options name (or the first with an active port) and choose the GID.
pub(crate) fn select(opts: &Options) -> VResult<Selected> {
    let ib_port = opts.ib_port.unwrap_or(1);
    let names = sys::device_names()?;
    if names.is_empty() {
        return Err(VerbsError::Other("no RDMA device found (is the driver loaded? `rdma link` / `ibv_devices` list them; for Soft-RoCE: `rdma link add rxe0 type rxe netdev eth0`)".into()));
    }
    let (ctx, port) = match &opts.dev {
        Some(d) => {
            let ctx = Context::open(d).map_err(|e| {
                VerbsError::Other(format!("{e}; devices present: {}", names.join(", ")))
            })?;
            let port = ctx.query_port(ib_port)?;
            if !port.active {
                return Err(VerbsError::Other(format!(
                    "port {ib_port} of {d} is not active (check the cable / `rdma link`)"
                )));
            }
            (ctx, port)
        }
        None => {
            let mut found = None;
            let mut why = Vec::new();
            for n in &names {
                match Context::open(n).and_then(|c| c.query_port(ib_port).map(|p| (c, p))) {
                    Ok((c, p)) if p.active => {
                        found = Some((c, p));
                        break;
                    }
                    Ok(_) => why.push(format!("{n}: port {ib_port} not active")),
                    Err(e) => why.push(format!("{n}: {e}")),
                }
            }
            found.ok_or_else(|| {
                VerbsError::Other(format!(
                    "no RDMA device with an active port {ib_port}: {}",
                    why.join("; ")
                ))
            })?
        }
    };
    let gid_index = match opts.gid {
        Some(i) => {
            if i >= port.gid_table_len {
                return Err(VerbsError::Other(format!(
                    "gid={i} is outside the GID table of {} (length {})",
                    ctx.name(),
                    port.gid_table_len
                )));
            }
            i
        }
        None if port.ethernet => choose_roce_gid(&ctx, ib_port, port.gid_table_len)?,
        None => 0,
    };
    let gid = ctx.query_gid(ib_port, gid_index)?;
    if port.ethernet && gid == [0; 16] {
        return Err(VerbsError::Other(format!(
            "GID {gid_index} of {} is empty: give the netdev an IP address, or pick a GID with gid=",
            ctx.name()
        )));
    }
    Ok(Selected {
        path: LocalPath {
            port: ib_port,
            gid_index: gid_index as u8,
            pkey_index: opts.pkey_index.unwrap_or(0),
            global: port.ethernet,
        },
        ctx,
        port,
        gid,
    })
}

/// The GID type from sysfs ("RoCE v2", "IB/RoCE v1"), if the kernel tells.
fn gid_type(dev: &str, port: u8, index: u32) -> Option<String> {
    std::fs::read_to_string(format!(
        "/sys/class/infiniband/{dev}/ports/{port}/gid_attrs/types/{index}"
    ))
    .ok()
    .map(|s| s.trim().to_string())
}

fn is_ipv4_mapped(g: &[u8; 16]) -> bool {
    g[..10] == [0; 10] && g[10] == 0xff && g[11] == 0xff
}

fn choose_roce_gid(ctx: &Context, port: u8, len: u32) -> VResult<u32> {
    let mut first_v2 = None;
    let mut first = None;
    for i in 0..len.min(256) {
        let Ok(g) = ctx.query_gid(port, i) else {
            continue;
        };
        if g == [0; 16] {
            continue;
        }
        first.get_or_insert(i);
        let v2 = gid_type(ctx.name(), port, i).is_none_or(|t| t.contains("v2"));
        if v2 && is_ipv4_mapped(&g) {
            return Ok(i);
        }
        if v2 {
            first_v2.get_or_insert(i);
        }
    }
    first_v2.or(first).ok_or_else(|| {
        VerbsError::Other(format!(
            "the GID table of {} is empty: give its network interface an IP address",
            ctx.name()
        ))
    })
}

/// A random 24-bit initial packet sequence number.
pub(crate) fn random_psn() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() & 0xff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hello {
        Hello {
            qp: QpAddress {
                qpn: 0x12_3456,
                psn: 0xab_cdef,
                lid: 7,
                gid: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 2],
                mtu: 3,
            },
            recv_buf: 1024,
        }
    }

    #[test]
    fn hello_round_trips() {
        let h = sample();
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn hello_rejects_each_broken_rule() {
        let good = sample().encode();
        let recrc = |mut b: [u8; HELLO_LEN]| {
            let c = crc32c::crc32c(&b[..44]);
            b[44..48].copy_from_slice(&c.to_le_bytes());
            b
        };
        assert!(Hello::decode(&good[..40])
            .unwrap_err()
            .to_string()
            .contains("48"));
        let mut b = good;
        b[0] = b'X';
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut b = good;
        b[4] = 9;
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("version"));
        let mut b = good;
        b[30] ^= 1;
        assert!(Hello::decode(&b)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let mut b = good;
        b[19] = 1;
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        let mut b = good;
        b[11] = 1; // qpn >= 2^24
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("24 bits"));
        let mut b = good;
        b[18] = 6;
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("MTU"));
        let mut b = good;
        b[20..24].copy_from_slice(&16u32.to_le_bytes());
        assert!(Hello::decode(&recrc(b))
            .unwrap_err()
            .to_string()
            .contains("receive buffer"));
    }

    #[test]
    fn options_from_locator() {
        let l: Locator = "infrc:host=h,port=1,dev=mlx5_0,gid=3,ib_port=2,pkey_index=1"
            .parse()
            .unwrap();
        assert_eq!(
            Options::from_locator(&l).unwrap(),
            Options {
                dev: Some("mlx5_0".into()),
                ib_port: Some(2),
                gid: Some(3),
                pkey_index: Some(1)
            }
        );
        let l: Locator = "infrc:host=h,port=1,gid=x".parse().unwrap();
        assert!(Options::from_locator(&l)
            .unwrap_err()
            .to_string()
            .contains("gid"));
    }

    #[test]
    fn mtu_codes() {
        assert_eq!(mtu_bytes(1), 256);
        assert_eq!(mtu_bytes(3), 1024);
        assert_eq!(mtu_bytes(5), 4096);
        assert!(random_psn() < 1 << 24);
    }
}
