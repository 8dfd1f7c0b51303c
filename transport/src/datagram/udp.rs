//! Kernel UDP [`Driver`]: one non-blocking UDP socket, bursts sent with one `sendmmsg` and
//! received with one `recvmmsg` (FFI in `sys.rs`); runs of full-size datagrams to one peer go out
//! as one UDP GSO send (`UDP_SEGMENT`; disabled for the socket after the first failure). Receive buffers hold `max(mtu, 9216)` bytes;
//! a longer datagram (a peer configured with a larger MTU) is dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Driver, RxPacket, TxPacket};
use crate::limits::{UDP_BURST, UDP_MAX_MTU, UDP_SOCKET_BUFFER};

/// Smallest receive buffer: a jumbo frame, so peers with MTUs up to 9216 interoperate.
const MIN_RX_BUF: usize = 9216;

/// A kernel UDP socket as a datagram driver.
#[derive(Debug)]
pub struct UdpDriver {
    /// Shared with client waiters ([`UdpDriver::socket`]), which poll it without the driver.
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    mtu: usize,
    pool: Vec<Vec<u8>>,
    /// Use UDP GSO for runs of equal-size datagrams to one peer (cleared after the first failure).
    gso: bool,
    /// Datagrams are received into these fixed buffers, then copied (exact length) into pooled
    /// `Vec`s handed to the caller.
    batch: super::sys::RecvBatch,
}

impl UdpDriver {
    /// Bind a non-blocking socket. `reuse_port` lets several dispatch threads bind the same port
    /// (the kernel spreads peers over them by address hash).
    pub fn bind(addr: SocketAddr, mtu: usize, reuse_port: bool) -> io::Result<UdpDriver> {
        if !(64..=UDP_MAX_MTU).contains(&mtu) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mtu {mtu} outside 64..={UDP_MAX_MTU}"),
            ));
        }
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        // Best effort: the kernel may cap these (net.core.rmem_max).
        let _ = s.set_recv_buffer_size(UDP_SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(UDP_SOCKET_BUFFER);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        let sock: UdpSocket = s.into();
        let local = sock.local_addr()?;
        let batch = super::sys::RecvBatch::new(UDP_BURST, mtu.max(MIN_RX_BUF));
        Ok(UdpDriver {
            sock: Arc::new(sock),
            local,
            mtu,
            gso: true,
            pool: Vec::new(),
            batch,
        })
    }
}

/// Length of the GSO-able run at the front of `pkts`: same destination, same length as the first
/// (the last may be shorter), at most 64 segments and 64 000 bytes (kernel limits).
fn gso_run(pkts: &[TxPacket<SocketAddr>]) -> usize {
    let Some(first) = pkts.first() else { return 0 };
    let seg = first.data.len();
    if seg == 0 || seg > u16::MAX as usize {
        return 1;
    }
    let mut n = 0;
    let mut bytes = 0;
    for p in pkts.iter().take(64) {
        if p.to != first.to || p.data.len() > seg || bytes + p.data.len() > 64_000 {
            break;
        }
        n += 1;
        bytes += p.data.len();
        if p.data.len() < seg {
            break; // a shorter segment must be the last
        }
    }
    n.max(1)
}

impl UdpDriver {
    /// The socket, for waiting on it without holding the driver.
    pub(crate) fn socket(&self) -> Arc<UdpSocket> {
        self.sock.clone()
    }
}

impl AsFd for UdpDriver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for UdpDriver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Driver for UdpDriver {
    type Addr = SocketAddr;

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn tx_burst(&mut self, batch: &mut Vec<TxPacket<SocketAddr>>) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let mut sent = 0;
        while sent < batch.len() {
            // A run of full-size datagrams to one peer (the last may be shorter) goes out as one
            // GSO send: one trip down the stack instead of one per datagram.
            let run = if self.gso { gso_run(&batch[sent..]) } else { 1 };
            if run >= 2 {
                let segs: Vec<&[u8]> = batch[sent..sent + run]
                    .iter()
                    .map(|p| p.data.as_slice())
                    .collect();
                let seg = batch[sent].data.len() as u16;
                match super::sys::send_gso(fd, batch[sent].to, &segs, seg) {
                    Ok(true) => {
                        sent += run;
                        continue;
                    }
                    Ok(false) => break,
                    // An ICMP error reported for an earlier send: this run is lost, as on a network.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        sent += run;
                        continue;
                    }
                    Err(e) => {
                        tracing::info!("UDP GSO unavailable ({e}); sending datagrams one by one");
                        self.gso = false;
                        continue;
                    }
                }
            }
            let chunk: Vec<(SocketAddr, &[u8])> = batch[sent..]
                .iter()
                .take(UDP_BURST)
                .map(|p| (p.to, p.data.as_slice()))
                .collect();
            match super::sys::send_batch(fd, &chunk) {
                Ok(0) => break,
                Ok(n) => sent += n,
                // An error on the first datagram of the burst (e.g. an ICMP error reported for
                // an earlier send): that packet is lost, as on a network; carry on.
                Err(_) => sent += 1,
            }
        }
        batch.drain(..sent);
        Ok(sent)
    }

    fn rx_burst(&mut self, out: &mut Vec<RxPacket<SocketAddr>>, max: usize) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let pool = &mut self.pool;
        super::sys::recv_batch(fd, &mut self.batch, max, &mut |from, bytes| {
            let mut data = pool.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(bytes);
            out.push(RxPacket { from, data });
        })
    }

    fn post_buffers(&mut self, bufs: &mut Vec<Vec<u8>>) {
        self.pool.append(bufs);
        self.pool.truncate(crate::limits::UDP_BURST * 2);
    }

    fn wait_rx(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        crate::sys::poll_fd(&*self.sock, true, false, timeout).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_round_trip_over_real_sockets() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut a = UdpDriver::bind(lo, 1472, false).unwrap();
        let mut b = UdpDriver::bind(lo, 1472, false).unwrap();
        let mut batch: Vec<TxPacket<SocketAddr>> = (0..100u32)
            .map(|i| TxPacket {
                to: b.local_addr(),
                data: vec![i as u8; 1 + (i as usize * 14)],
            })
            .collect();
        while !batch.is_empty() {
            a.tx_burst(&mut batch).unwrap();
        }
        let mut got = Vec::new();
        let mut bufs = Vec::new();
        while got.len() < 100 {
            b.wait_rx(Some(Duration::from_secs(10))).unwrap();
            let mut rx = Vec::new();
            b.rx_burst(&mut rx, UDP_BURST).unwrap();
            for p in rx {
                assert_eq!(p.from, a.local_addr());
                got.push(p.data.clone());
                bufs.push(p.data);
            }
            b.post_buffers(&mut bufs);
        }
        got.sort_by_key(|d| d.len());
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), 1 + i * 14);
            assert!(d.iter().all(|&x| x == i as u8));
        }
    }

    #[test]
    fn gso_runs_arrive_as_separate_datagrams() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut a = UdpDriver::bind(lo, 1472, false).unwrap();
        let mut b = UdpDriver::bind(lo, 1472, false).unwrap();
        // 100 full-size datagrams then a short one, to one peer: GSO runs of up to 43.
        let mut batch: Vec<TxPacket<SocketAddr>> = (0..101u32)
            .map(|i| TxPacket {
                to: b.local_addr(),
                data: vec![i as u8; if i == 100 { 7 } else { 1472 }],
            })
            .collect();
        assert!(gso_run(&batch) >= 2);
        while !batch.is_empty() {
            a.tx_burst(&mut batch).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 101 {
            b.wait_rx(Some(Duration::from_secs(10))).unwrap();
            let mut rx = Vec::new();
            b.rx_burst(&mut rx, UDP_BURST).unwrap();
            got.extend(rx.into_iter().map(|p| p.data));
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), if i == 100 { 7 } else { 1472 }, "datagram {i}");
            assert!(
                d.iter().all(|&x| x == i as u8),
                "datagram {i} content/order"
            );
        }
    }

    #[test]
    fn gso_run_rules() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
        let p = |to, n| TxPacket {
            to,
            data: vec![0u8; n],
        };
        assert_eq!(gso_run(&[p(to, 100), p(to, 100), p(to, 50), p(to, 100)]), 3);
        assert_eq!(gso_run(&[p(to, 100), p(other, 100)]), 1);
        assert_eq!(gso_run(&[p(to, 100), p(to, 200)]), 1);
        assert_eq!(
            gso_run(&(0..100).map(|_| p(to, 1000)).collect::<Vec<_>>()),
            64
        );
        assert_eq!(
            gso_run(&(0..100).map(|_| p(to, 1472)).collect::<Vec<_>>()),
            43
        );
        assert_eq!(gso_run(&[]), 0);
    }

    #[test]
    fn rejects_silly_mtu() {
        assert!(UdpDriver::bind("127.0.0.1:0".parse().unwrap(), 10, false).is_err());
        assert!(UdpDriver::bind("127.0.0.1:0".parse().unwrap(), 70_000, false).is_err());
    }
}
