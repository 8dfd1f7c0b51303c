//! The TCP server's connection limits (`ConnLimits`): the connection cap, the idle timeout for
//! connections that never send a request, the stall timeout for partial requests, and the byte
//! budget that makes large messages wait for room — each while a normal client keeps working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::wire::{Header, HEADER_LEN};
use faascache_testkit::{check, eventually};
use faascache_transport::limits::{MAX_MESSAGE, MAX_PAYLOAD};
use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);

fn server(conn: ConnLimits) -> ServerHandle {
    serve(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin: false,
            poll: PollMode::Block,
            conn,
            ..Default::default()
        },
    )
    .unwrap()
}

fn raw(s: &ServerHandle) -> TcpStream {
    let l = s.local_locator();
    let t = TcpStream::connect((l.host().unwrap(), l.port().unwrap())).unwrap();
    t.set_read_timeout(Some(LIVE)).unwrap();
    t
}

/// Send a Ping on a raw connection and read its reply.
fn ping(t: &mut TcpStream, id: u64) {
    t.write_all(&Header::request(Opcode::Ping as u16, id, 0).encode())
        .unwrap();
    let mut r = [0u8; HEADER_LEN];
    t.read_exact(&mut r).expect("ping reply");
    let h = Header::decode(&r).unwrap();
    assert!(h.flags.is_response() && h.request_id == id);
}

/// Read until the server closes; how long that took.
fn closed_after(t: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut v = Vec::new();
    t.read_to_end(&mut v)
        .expect("the server closes the connection (no read timeout)");
    start.elapsed()
}

fn echo(s: &ServerHandle, payload: &[u8]) {
    let sess = connect(&s.local_locator().clone().into(), ClientConfig::default()).unwrap();
    let (st, body) = sess.call(Opcode::Echo, payload, LIVE).unwrap();
    assert!(st.is_ok());
    assert_eq!(body, payload);
}

fn limits() -> ConnLimits {
    ConnLimits {
        max_connections: 1000,
        max_buffered_bytes: 64 << 20,
        idle_timeout: LIVE * 4,
        stall_timeout: LIVE * 4,
    }
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let s = server(ConnLimits {
        max_connections: 4,
        ..limits()
    });
    let mut kept: Vec<TcpStream> = (0..4).map(|_| raw(&s)).collect();
    for (i, t) in kept.iter_mut().enumerate() {
        ping(t, i as u64);
    }
    let mut fifth = raw(&s);
    assert!(closed_after(&mut fifth) < LIVE);
    // The first four still work; once one closes, a new client gets in.
    ping(&mut kept[3], 9);
    drop(kept.pop());
    eventually(LIVE, || {
        let mut t = raw(&s);
        t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let sent = t.write_all(&Header::request(Opcode::Ping as u16, 1, 0).encode());
        let mut r = [0u8; HEADER_LEN];
        check(sent.is_ok() && t.read_exact(&mut r).is_ok(), || {
            "no room for a new connection yet".into()
        })
    });
}

#[test]
fn silent_connections_are_closed_after_the_idle_timeout_served_ones_are_kept() {
    let idle = Duration::from_millis(300);
    let s = server(ConnLimits {
        idle_timeout: idle,
        ..limits()
    });
    let mut served = raw(&s);
    ping(&mut served, 1);
    let mut silent = raw(&s);
    let took = closed_after(&mut silent);
    assert!(took >= idle / 2, "closed after {took:?}");
    // Quiet for longer than the idle timeout, but it sent a request: still open and served.
    ping(&mut served, 2);
    echo(&s, b"still serving");
}

#[test]
fn stalled_partial_requests_are_closed_after_the_stall_timeout() {
    let stall = Duration::from_millis(300);
    let s = server(ConnLimits {
        stall_timeout: stall,
        ..limits()
    });
    // One byte of a header.
    let mut one = raw(&s);
    one.write_all(&[0x52]).unwrap();
    // A maximum-size header and a megabyte of its body.
    let mut big = raw(&s);
    big.write_all(&Header::request(Opcode::Echo as u16, 7, MAX_PAYLOAD as u32).encode())
        .unwrap();
    big.write_all(&vec![1u8; 1 << 20]).unwrap();
    echo(&s, b"others are served meanwhile");
    assert!(closed_after(&mut one) < LIVE);
    assert!(closed_after(&mut big) < LIVE);
    echo(&s, b"and afterwards");
}

/// The budget holds one maximum-size message: a staller holding it makes a large request wait
/// (unread) until the staller is closed, then the request completes; small requests never wait.
#[test]
fn large_requests_wait_for_buffer_budget_then_complete() {
    let s = server(ConnLimits {
        max_buffered_bytes: MAX_MESSAGE + (64 << 10),
        stall_timeout: Duration::from_millis(500),
        ..limits()
    });
    let mut staller = raw(&s);
    staller
        .write_all(&Header::request(Opcode::Echo as u16, 7, MAX_PAYLOAD as u32).encode())
        .unwrap();
    staller.write_all(&vec![1u8; 100_000]).unwrap();
    echo(&s, b"small requests do not wait");
    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| i as u8).collect();
    echo(&s, &payload);
    assert!(closed_after(&mut staller) < LIVE);
}
