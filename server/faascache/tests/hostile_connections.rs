//! A real server (coordinator + one `faascache server` process on 127.0.0.1) under hostile
//! connections: 50 that send a maximum-size header and most of its body and then stall, and
//! 2,000 that send one byte and nothing more, while a normal client keeps reading. The server's
//! RSS stays under the documented bound (`--max-buffered` + 4 KiB per connection + slack), the
//! normal client's reads all succeed (their latency is printed, not asserted), and the stalled
//! connections are closed after `--stall-timeout`.

mod cluster_util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_protocol::wire::Header;
use faascache_transport::limits::{MAX_PAYLOAD, STREAM_READ_BUFFER_INITIAL};
use faascache_transport::Opcode;

const STALLED: usize = 50;
const ONE_BYTE: usize = 2_000;
const MAX_BUFFERED: usize = 64 << 20;
/// Allocator and bookkeeping noise allowed above the documented bound.
const SLACK: usize = 32 << 20;

fn open_files_limit() -> usize {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = s.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap_or(usize::MAX)
}

fn host_port(loc: &str) -> (String, u16) {
    let host = loc
        .split([',', ':'])
        .find_map(|kv| kv.strip_prefix("host="))
        .unwrap()
        .to_string();
    (host, port_of(loc))
}

/// Connect and write a maximum-size request header and as much of its body (all but 64 KiB) as
/// the server and the kernel take without blocking.
fn stall_big(addr: &(String, u16)) -> TcpStream {
    let mut t = TcpStream::connect((addr.0.as_str(), addr.1)).unwrap();
    t.write_all(&Header::request(Opcode::Echo as u16, 1, MAX_PAYLOAD as u32).encode())
        .unwrap();
    t.set_nonblocking(true).unwrap();
    let chunk = vec![0xabu8; 256 << 10];
    let mut left = MAX_PAYLOAD - (64 << 10);
    let start = Instant::now();
    while left > 0 && start.elapsed() < Duration::from_secs(2) {
        match t.write(&chunk[..chunk.len().min(left)]) {
            Ok(n) => left -= n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // The server stopped reading (budget spent) and the kernel buffers are full.
                if start.elapsed() > Duration::from_millis(200) {
                    break;
                }
                std::thread::yield_now();
            }
            Err(e) => panic!("writing the stalled body: {e}"),
        }
    }
    t
}

/// Whether the server closed `t` (EOF or reset); `t` is non-blocking.
fn closed(mut t: &TcpStream) -> bool {
    let mut b = [0u8; 64];
    match t.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Time `n` reads of one key; every one must succeed.
fn timed_reads(c: &mut Raw, table: u64, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let (_, v) = c
                .read(table, b"k")
                .expect("the normal client's read succeeds");
            assert_eq!(v, b"value");
            t.elapsed()
        })
        .collect()
}

#[test]
fn hostile_connections_do_not_pin_memory_or_stop_normal_clients() {
    let need = 2 * (STALLED + ONE_BYTE) + 200;
    assert!(
        open_files_limit() >= need,
        "this test needs {need} open files (client and server side); raise `ulimit -n`"
    );
    let dir = tempdir("hostile");
    let (_coord, cloc) = coordinator_tcp(&dir, 0, "coordinator");
    let (server, sloc) = server_with(
        &dir,
        &cloc,
        "server",
        &[
            "--replicas",
            "0",
            "--max-buffered",
            "64MiB",
            "--stall-timeout",
            "5s",
        ],
    );
    let pid = server.pid();
    let addr = host_port(&sloc);
    let mut c = Raw::new(&cloc);
    let table = c.create_table("t", 1);
    c.write(table, b"k", b"value").unwrap();
    let mut quiet = timed_reads(&mut c, table, 300);
    let base = rss_bytes(pid);

    let stalled: Vec<TcpStream> = (0..STALLED).map(|_| stall_big(&addr)).collect();
    let one_byte: Vec<TcpStream> = (0..ONE_BYTE)
        .map(|_| {
            let mut t = TcpStream::connect((addr.0.as_str(), addr.1)).unwrap();
            t.write_all(&[0x52]).unwrap();
            t.set_nonblocking(true).unwrap();
            t
        })
        .collect();
    let mut loaded = timed_reads(&mut c, table, 300);
    let peak = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            rss_bytes(pid)
        })
        .max()
        .unwrap();
    let bound = base + MAX_BUFFERED + (STALLED + ONE_BYTE) * STREAM_READ_BUFFER_INITIAL + SLACK;
    eprintln!(
        "hostile: server RSS {} MiB before, {} MiB with {STALLED} stalled max-size requests and \
         {ONE_BYTE} one-byte connections (bound {} MiB); read p50/p99 {:?}/{:?} before, \
         {:?}/{:?} under attack",
        base >> 20,
        peak >> 20,
        bound >> 20,
        percentile(&mut quiet, 0.5),
        percentile(&mut quiet, 0.99),
        percentile(&mut loaded, 0.5),
        percentile(&mut loaded, 0.99),
    );
    assert!(peak < bound, "server RSS {peak} above the bound {bound}");

    // Every stalled connection is closed after --stall-timeout; the normal client goes on.
    let start = Instant::now();
    eventually(Duration::from_secs(60), || {
        let open = stalled
            .iter()
            .chain(one_byte.iter())
            .filter(|t| !closed(t))
            .count();
        faascache_testkit::check(open == 0, || {
            format!("{open} hostile connections still open")
        })
    });
    eprintln!("hostile: all closed {:?} after the attack", start.elapsed());
    timed_reads(&mut c, table, 10);
    let after = rss_bytes(pid);
    eprintln!("hostile: server RSS {} MiB after the attack", after >> 20);
    assert!(
        after < bound,
        "server RSS {after} after the attack, above the bound {bound}"
    );
}
