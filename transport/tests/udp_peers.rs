//! A real UDP server facing 50,000 spoofed sources (one socket, one source port each, on
//! 127.0.0.1), each starting an RPC and never acknowledging: server memory stays within the
//! documented bound on peer state, and a normal client keeps being served meanwhile.
//!
//! 50,000 (the issue asked for 10,000) because peer state without the cap costs ~750 B a source:
//! 10,000 stayed under the 16 MiB bound even with the cap and idle expiry switched off; 50,000
//! grow such a server by ~32 MiB, while with them the growth is flat (~3.5 MiB).

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::wire::Header;
use faascache_transport::datagram::packet::{Kind, Packet};
use faascache_transport::limits::DGRAM_MAX_PEERS;
use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);

/// Resident memory of this process, from /proc.
fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// One datagram holding a whole Echo request, from session `session`.
fn echo_datagram(session: u32, payload: &[u8]) -> Vec<u8> {
    let msg = Header::request(Opcode::Echo as u16, 1, payload.len() as u32).encode_message(payload);
    Packet {
        kind: Kind::Data,
        from_client: true,
        rpc_id: 1,
        session,
        msg_len: msg.len() as u32,
        offset: 0,
        length: msg.len() as u32,
        ack_below: 0,
        payload: &msg,
    }
    .encode()
}

#[test]
fn fifty_thousand_spoofed_udp_sources_keep_server_memory_bounded() {
    let server = serve(
        &"udp:host=127.0.0.1,port=0".parse().unwrap(),
        Arc::new(NoHandler),
        DispatchConfig {
            cores: 1,
            pin: false,
            poll: PollMode::Block,
            ..Default::default()
        },
    )
    .unwrap();
    let loc = server.local_locator().clone();
    let to = (loc.host().unwrap().to_string(), loc.port().unwrap());
    let session = connect(&loc.clone().into(), ClientConfig::default()).unwrap();
    assert!(session.call(Opcode::Echo, b"warm", LIVE).unwrap().0.is_ok());
    let before = rss_bytes();
    let mut worst = Duration::ZERO;
    let payload = vec![0x5a; 200];
    for src in 0..50_000u32 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(
            &echo_datagram(src.wrapping_mul(2_654_435_761) | 1, &payload),
            &to,
        )
        .unwrap();
        if src % 500 == 0 {
            let t = Instant::now();
            let (st, body) = session.call(Opcode::Echo, b"normal", LIVE).unwrap();
            worst = worst.max(t.elapsed());
            assert!(
                st.is_ok() && body == b"normal",
                "the normal client is served"
            );
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    // Peer state: at most DGRAM_MAX_PEERS sessions of ~200 bytes plus one held RPC (the
    // response, ~300 bytes, then a tombstone) each; 16 MiB leaves room for allocator noise.
    let cap = 16 << 20;
    eprintln!(
        "50,000 spoofed sources: server process RSS grew {} KiB (cap {} KiB, {} peers max); \
         normal echo worst latency {worst:?}",
        grown / 1024,
        cap / 1024,
        DGRAM_MAX_PEERS
    );
    assert!(grown < cap, "RSS grew {grown} bytes");
    let (st, _) = session.call(Opcode::Echo, b"after", LIVE).unwrap();
    assert!(st.is_ok());
}
