//! A TCP server facing malformed, truncated, oversized, wrong-magic and wrong-version frames:
//! an error reply where the header can be addressed, a closed connection otherwise — and the
//! server keeps serving other clients. Also a datagram flood of garbage at the UDP server.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use faascache_protocol::wire::{Header, HEADER_LEN};
use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);

fn server(kind: &str) -> ServerHandle {
    serve(
        &format!("{kind}:host=127.0.0.1,port=0").parse().unwrap(),
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin: false,
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

/// Read until EOF; return what was read.
fn read_to_close(t: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    t.read_to_end(&mut v)
        .expect("server closes the connection (no timeout)");
    v
}

fn still_serves(s: &ServerHandle) {
    let sess = connect(&s.local_locator().clone().into(), ClientConfig::default()).unwrap();
    assert_eq!(sess.call(Opcode::Echo, b"ok", LIVE).unwrap().1, b"ok");
}

#[test]
fn wrong_magic_closes() {
    let s = server("tcp");
    let mut t = raw(&s);
    t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789")
        .unwrap();
    assert!(read_to_close(&mut t).is_empty());
    still_serves(&s);
}

#[test]
fn wrong_version_gets_error_reply_then_close() {
    let s = server("tcp");
    let mut t = raw(&s);
    let mut h = Header::request(Opcode::Echo.as_u16(), 42, 0).encode();
    h[4] = 99;
    // Fix the checksum so that only the version is wrong.
    let crc = crc32c_of(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    t.write_all(&h).unwrap();
    let reply = read_to_close(&mut t);
    let rh = Header::decode(&reply).unwrap();
    assert_eq!(
        (rh.request_id, Status(rh.status)),
        (42, Status::BAD_PROTOCOL_VERSION)
    );
    still_serves(&s);
}

#[test]
fn oversized_gets_error_reply_then_close() {
    let s = server("tcp");
    let mut t = raw(&s);
    t.write_all(&Header::request(Opcode::Echo.as_u16(), 7, u32::MAX).encode())
        .unwrap();
    let reply = read_to_close(&mut t);
    let rh = Header::decode(&reply).unwrap();
    assert_eq!(
        (rh.request_id, Status(rh.status)),
        (7, Status::REQUEST_TOO_LARGE)
    );
    still_serves(&s);
}

#[test]
fn bad_checksum_closes() {
    let s = server("tcp");
    let mut t = raw(&s);
    let mut h = Header::request(Opcode::Echo.as_u16(), 1, 0).encode();
    h[9] ^= 0xff;
    t.write_all(&h).unwrap();
    assert!(read_to_close(&mut t).is_empty());
    still_serves(&s);
}

#[test]
fn truncated_then_eof_closes_without_reply() {
    let s = server("tcp");
    let mut t = raw(&s);
    let m = Header::request(Opcode::Echo.as_u16(), 1, 100).encode_message(&[1u8; 100]);
    t.write_all(&m[..60]).unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_close(&mut t).is_empty());
    still_serves(&s);
}

#[test]
fn response_frame_from_client_closes() {
    let s = server("tcp");
    let mut t = raw(&s);
    t.write_all(&Header::response(2, 1, 0, 0).encode()).unwrap();
    assert!(read_to_close(&mut t).is_empty());
    still_serves(&s);
}

#[test]
fn valid_frames_in_one_write_are_all_answered() {
    let s = server("tcp");
    let mut t = raw(&s);
    let mut bytes = Vec::new();
    for id in 0..50u64 {
        bytes.extend(Header::request(Opcode::Echo.as_u16(), id, 3).encode_message(b"abc"));
    }
    t.write_all(&bytes).unwrap();
    let mut buf = vec![0u8; 50 * (HEADER_LEN + 3)];
    t.read_exact(&mut buf).unwrap();
    for (i, chunk) in buf.chunks(HEADER_LEN + 3).enumerate() {
        let (h, p) = Header::decode_message(chunk).unwrap();
        assert_eq!((h.request_id, p), (i as u64, &b"abc"[..]));
    }
}

#[test]
fn udp_garbage_is_ignored() {
    let s = server("udp");
    let l = s.local_locator();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = (l.host().unwrap(), l.port().unwrap());
    let mut x = 12345u64;
    for i in 0..2000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x as usize) % 1500;
        let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        if i % 2 == 0 && d.len() >= 4 {
            d[0..3].copy_from_slice(&[0x7A, 0xDA, 1]); // right magic and version, random rest
        }
        let _ = u.send_to(&d, to);
    }
    still_serves(&s);
}

/// CRC32C (Castagnoli), bitwise — enough for a test, independent of the crate's implementation.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
