//! Echo round trip of a minimal TCP echo server driven by io_uring versus by epoll readiness
//! polling (mio), to decide which the TCP dispatch loop uses. The client is the same plain
//! blocking-free spinning socket for both, so only the server's I/O mechanism differs.
//!
//! ```text
//! cargo run --release -p faascache-transport --example uring_vs_epoll -- [payload bytes] [iterations]
//! ```
//!
//! The example keeps two `unsafe` blocks (on the `unsafe` allowlist): io_uring's
//! `SubmissionQueue::push` is `unsafe` by design, because the kernel uses the buffer after the
//! call returns and no Rust type ties the buffer to the completion. A safe rewrite would need a
//! completion-owning-buffer API the `io-uring` crate does not have; it is a measurement tool,
//! not part of the library.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn client(addr: std::net::SocketAddr, size: usize, iters: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + 1000 {
        let t = Instant::now();
        let mut w = 0;
        while w < size {
            match s.write(&msg[w..]) {
                Ok(n) => w += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let mut r = 0;
        while r < size {
            match s.read(&mut buf[r..]) {
                Ok(0) => panic!("eof"),
                Ok(n) => r += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => panic!("{e}"),
            }
        }
        if i >= 1000 {
            lat.push(t.elapsed());
        }
    }
    lat
}

fn epoll_server(l: TcpListener, spin: bool) {
    use mio::{Events, Interest, Poll, Token};
    let (s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut s = mio::net::TcpStream::from_std(s);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut s, Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        poll.poll(&mut events, if spin { Some(Duration::ZERO) } else { None })
            .unwrap();
        loop {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

fn uring_server(l: TcpListener, spin: bool) {
    use io_uring::{opcode, types, IoUring};
    let (s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let fd = types::Fd(s.as_raw_fd());
    let mut ring = IoUring::new(8).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let recv = opcode::Recv::new(fd, buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(1);
        // SAFETY: `buf` outlives the operation: we wait for its completion before touching
        // `buf` again or dropping it.
        unsafe { ring.submission().push(&recv).unwrap() };
        let n = loop {
            if spin {
                ring.submit().unwrap();
            } else {
                ring.submit_and_wait(1).unwrap();
            }
            if let Some(c) = ring.completion().next() {
                break c.result();
            }
        };
        if n <= 0 {
            return;
        }
        let mut off = 0usize;
        while off < n as usize {
            let send = opcode::Send::new(fd, buf[off..].as_ptr(), (n as usize - off) as u32)
                .build()
                .user_data(2);
            // SAFETY: as above, `buf` is neither moved nor modified until the send completes.
            unsafe { ring.submission().push(&send).unwrap() };
            ring.submit_and_wait(1).unwrap();
            let c = ring
                .completion()
                .next()
                .expect("one completion after waiting for one");
            if c.result() <= 0 {
                return;
            }
            off += c.result() as usize;
        }
    }
}

fn run(name: &str, size: usize, iters: usize, server: fn(TcpListener, bool), spin: bool) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || server(l, spin));
    let mut lat = client(addr, size, iters);
    h.join().unwrap();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{name:>6} {:>5}: size={size} median={:.1}us p99={:.1}us",
        if spin { "spin" } else { "block" },
        p(0.5),
        p(0.99)
    );
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = a.first().map_or(100, |s| s.parse().unwrap());
    let iters: usize = a.get(1).map_or(20_000, |s| s.parse().unwrap());
    if IoUring_probe().is_err() {
        println!("io_uring unavailable here; epoll only");
    }
    for spin in [true, false] {
        run("epoll", size, iters, epoll_server, spin);
        if IoUring_probe().is_ok() {
            run("uring", size, iters, uring_server, spin);
        }
    }
}

#[allow(non_snake_case)]
fn IoUring_probe() -> std::io::Result<()> {
    io_uring::IoUring::new(2).map(|_| ())
}
