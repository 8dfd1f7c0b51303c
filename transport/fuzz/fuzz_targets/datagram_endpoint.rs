//! The reliable-protocol state machine fed arbitrary datagrams (split from the input on 0xFF
//! 0xFF) from two peers, as client and server: never panics, never allocates past its budget.
#![no_main]
use std::time::{Duration, Instant};

use faascache_transport::datagram::proto::{Endpoint, Event, ProtoConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ProtoConfig { mtu: 200, grant_window: 400, max_rx_bytes: 1 << 20, ..ProtoConfig::default() };
    let mut ep: Endpoint<u8> = Endpoint::new(cfg);
    let t = Instant::now();
    ep.send_request(t, 1, 1, vec![0u8; 1000]);
    for (i, pkt) in data.split(|&b| b == 0xFF).enumerate() {
        let now = t + Duration::from_millis(i as u64);
        ep.handle(now, (i % 2) as u8, pkt);
        ep.handle_timeout(now);
        while let Some(ev) = ep.poll_event() {
            if let Event::Request { peer, session, id, msg } = ev {
                ep.send_response(now, peer, session, id, msg);
            }
        }
        while ep.poll_transmit().is_some() {}
    }
});
