//! The physical floor: a plain-socket ping-pong (TCP and UDP over loopback) between a client
//! thread and an echo thread on another core, in the same polling mode as the measured system.
//! Measured in the same run as the systems, so ratios against it are meaningful.

use crate::hist::LatencyHist;
use crate::load::RunResult;
use crate::net::{pin_current_thread, PollMode};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Which socket kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorTransport {
    /// TCP loopback (TCP_NODELAY)
    Tcp,
    /// UDP loopback
    Udp,
}

impl FloorTransport {
    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FloorTransport::Tcp => "tcp",
            FloorTransport::Udp => "udp",
        }
    }

    /// Parses `tcp` / `udp`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            _ => bail!("floor transport must be tcp or udp, got {s:?}"),
        }
    }
}

/// One floor measurement's settings.
#[derive(Debug, Clone, Copy)]
pub struct FloorSpec {
    /// socket kind
    pub transport: FloorTransport,
    /// message bytes each way
    pub size: usize,
    /// busy-poll or block, both sides
    pub poll: PollMode,
    /// discarded first
    pub warmup: Duration,
    /// measured
    pub duration: Duration,
    /// client thread core
    pub client_core: Option<usize>,
    /// echo thread core
    pub server_core: Option<usize>,
}

/// The client side of a ping-pong: returns the histogram and the measured seconds.
type ClientFn<'a> = Box<dyn FnOnce() -> Result<(LatencyHist, f64)> + Send + 'a>;

fn thread_cpu_seconds() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn read_exact_mode(s: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        match s.read(&mut buf[off..]) {
            Ok(0) => return Ok(false),
            Ok(n) => off += n,
            Err(e) if would_block(&e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn write_all_mode(s: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match s.write(&buf[off..]) {
            Ok(n) => off += n,
            Err(e) if would_block(&e) => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs one ping-pong measurement. `server_cpu` in the result is the echo thread's CPU use.
pub fn run(spec: &FloorSpec) -> Result<RunResult> {
    if spec.size == 0 {
        bail!("floor message size must be at least 1 byte");
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| -> Result<RunResult> {
        let (server, client_fn): (_, ClientFn<'_>) = match spec.transport {
            FloorTransport::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let addr = l.local_addr()?;
                let stop = &stop;
                let server = sc.spawn(move || -> Result<f64> {
                    if let Some(c) = spec.server_core {
                        pin_current_thread(c)?;
                    }
                    l.set_nonblocking(true)?;
                    let mut s = loop {
                        match l.accept() {
                            Ok((s, _)) => break s,
                            Err(e) if would_block(&e) => {
                                if stop.load(Ordering::Relaxed) {
                                    return Ok(0.0);
                                }
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    s.set_nodelay(true)?;
                    s.set_nonblocking(spec.poll == PollMode::Busy)?;
                    let mut buf = vec![0u8; spec.size];
                    let (c0, t0) = (thread_cpu_seconds(), Instant::now());
                    while read_exact_mode(&mut s, &mut buf, stop)? {
                        write_all_mode(&mut s, &buf)?;
                    }
                    Ok((thread_cpu_seconds() - c0) / t0.elapsed().as_secs_f64())
                });
                let client = Box::new(move || -> Result<(LatencyHist, f64)> {
                    let mut s = TcpStream::connect(addr)?;
                    s.set_nodelay(true)?;
                    s.set_nonblocking(spec.poll == PollMode::Busy)?;
                    let never = AtomicBool::new(false);
                    let msg = vec![7u8; spec.size];
                    let mut buf = vec![0u8; spec.size];
                    ping_pong(spec, |_| {
                        write_all_mode(&mut s, &msg)?;
                        if !read_exact_mode(&mut s, &mut buf, &never)? {
                            bail!("echo thread closed the connection");
                        }
                        Ok(())
                    })
                });
                (server, client as ClientFn<'_>)
            }
            FloorTransport::Udp => {
                let srv = UdpSocket::bind("127.0.0.1:0")?;
                let addr = srv.local_addr()?;
                let stop = &stop;
                let server = sc.spawn(move || -> Result<f64> {
                    if let Some(c) = spec.server_core {
                        pin_current_thread(c)?;
                    }
                    srv.set_nonblocking(spec.poll == PollMode::Busy)?;
                    if spec.poll == PollMode::Block {
                        srv.set_read_timeout(Some(Duration::from_millis(100)))?;
                    }
                    let mut buf = vec![0u8; spec.size.max(1) + 16];
                    let (c0, t0) = (thread_cpu_seconds(), Instant::now());
                    while !stop.load(Ordering::Relaxed) {
                        match srv.recv_from(&mut buf) {
                            Ok((n, from)) => {
                                srv.send_to(&buf[..n], from)?;
                            }
                            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::TimedOut => {
                                std::hint::spin_loop()
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Ok((thread_cpu_seconds() - c0) / t0.elapsed().as_secs_f64())
                });
                let client = Box::new(move || -> Result<(LatencyHist, f64)> {
                    let s = UdpSocket::bind("127.0.0.1:0")?;
                    s.connect(addr)?;
                    s.set_nonblocking(spec.poll == PollMode::Busy)?;
                    if spec.poll == PollMode::Block {
                        s.set_read_timeout(Some(Duration::from_secs(1)))?;
                    }
                    let msg = vec![7u8; spec.size];
                    let mut buf = vec![0u8; spec.size + 16];
                    ping_pong(spec, |_| {
                        s.send(&msg)?;
                        loop {
                            match s.recv(&mut buf) {
                                Ok(n) if n == spec.size => return Ok(()),
                                Ok(n) => bail!("echo returned {n} bytes, sent {}", spec.size),
                                Err(e) if would_block(&e) => std::hint::spin_loop(),
                                Err(e) => {
                                    return Err(e).context("UDP floor: datagram lost or timed out")
                                }
                            }
                        }
                    })
                });
                (server, client as ClientFn<'_>)
            }
        };
        let client = sc.spawn(move || -> Result<(LatencyHist, f64)> {
            if let Some(c) = spec.client_core {
                pin_current_thread(c)?;
            }
            client_fn()
        });
        let cres = client.join().map_err(|_| anyhow!("floor client panicked"));
        stop.store(true, Ordering::Relaxed);
        let scpu = server
            .join()
            .map_err(|_| anyhow!("floor echo thread panicked"))?;
        let (hist, elapsed) = cres??;
        let ops = hist.len();
        Ok(RunResult {
            ops,
            objects: ops,
            elapsed_s: elapsed,
            ops_per_sec: ops as f64 / elapsed.max(1e-9),
            objects_per_sec: ops as f64 / elapsed.max(1e-9),
            hist,
            server_cpu: scpu.ok(),
            ..Default::default()
        })
    })
}

fn ping_pong(
    spec: &FloorSpec,
    mut once: impl FnMut(usize) -> Result<()>,
) -> Result<(LatencyHist, f64)> {
    let mut h = LatencyHist::new();
    let start = Instant::now();
    let measure = start + spec.warmup;
    let end = measure + spec.duration;
    let mut i = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        once(i)?;
        if t0 >= measure {
            h.record(t0.elapsed());
        }
        i += 1;
    }
    Ok((h, spec.duration.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_udp_floors_run_in_both_modes() {
        for t in [FloorTransport::Tcp, FloorTransport::Udp] {
            for poll in [PollMode::Busy, PollMode::Block] {
                let r = run(&FloorSpec {
                    transport: t,
                    size: 64,
                    poll,
                    warmup: Duration::from_millis(10),
                    duration: Duration::from_millis(60),
                    client_core: None,
                    server_core: None,
                })
                .unwrap();
                // a smoke test: on a loaded 2-core machine two spinning threads may get few round trips
                assert!(r.ops >= 1, "{t:?} {poll:?}: {} ops", r.ops);
                assert!(r.hist.summary().p50_us > 0.0);
            }
        }
        assert!(FloorTransport::parse("sctp").is_err());
    }
}
