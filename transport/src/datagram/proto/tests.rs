//! Unit tests of the endpoint state machine.

use super::*;

#[test]
fn lazy_acks_are_dropped_when_the_next_request_covers_them() {
    let now = Instant::now();
    let (cli, srv) = (1u8, 2u8);
    let mut c: Endpoint<u8> = Endpoint::new(ProtoConfig::default());
    c.set_lazy_acks(true);
    let mut s: Endpoint<u8> = Endpoint::new(ProtoConfig::default());
    for id in 1..=3u64 {
        c.send_request(now, srv, id, vec![id as u8; 100]);
        let mut sent = 0;
        while let Some((to, p)) = c.poll_transmit() {
            assert_eq!(to, srv);
            sent += 1;
            s.handle(now, cli, &p);
        }
        assert_eq!(
            sent, 1,
            "rpc {id}: only the request datagram (held ACK dropped)"
        );
        // The request's ack_below freed every earlier RPC at the server.
        assert_eq!(s.server_rpcs(), 1, "rpc {id}");
        while let Some(e) = s.poll_event() {
            let Event::Request {
                peer,
                session,
                id,
                msg,
            } = e
            else {
                panic!("unexpected event")
            };
            s.send_response(now, peer, session, id, msg);
        }
        while let Some((_, p)) = s.poll_transmit() {
            c.handle(now, srv, &p);
        }
        assert!(matches!(c.poll_event(), Some(Event::Response { id: r, .. }) if r == id));
        assert!(c.poll_transmit().is_none(), "ACK held");
    }
    // Before the client sleeps it releases the held ACK.
    c.release_acks();
    assert_eq!(std::iter::from_fn(|| c.poll_transmit()).count(), 1);
}

#[test]
fn lossless_exchange() {
    let t = Instant::now();
    let cfg = ProtoConfig {
        mtu: 100,
        grant_window: 300,
        ..Default::default()
    };
    let mut c: Endpoint<u8> = Endpoint::new(cfg.clone());
    let mut s: Endpoint<u8> = Endpoint::new(cfg);
    let msg: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    c.send_request(t, 2, 1, msg.clone());
    let mut got = None;
    for _ in 0..1000 {
        while let Some((_, p)) = c.poll_transmit() {
            s.handle(t, 1, &p);
        }
        while let Some(e) = s.poll_event() {
            let Event::Request {
                peer,
                session,
                id,
                msg,
            } = e
            else {
                panic!()
            };
            s.send_response(t, peer, session, id, msg);
        }
        while let Some((_, p)) = s.poll_transmit() {
            c.handle(t, 2, &p);
        }
        if let Some(e) = c.poll_event() {
            got = Some(e);
            break;
        }
    }
    assert_eq!(
        got,
        Some(Event::Response {
            peer: 2,
            id: 1,
            msg
        })
    );
    assert_eq!(c.client_rpcs(), 0);
}

/// Deliver every packet `from` has queued to `to` (arriving from address `addr`).
fn pump(from: &mut Endpoint<u32>, to: &mut Endpoint<u32>, addr: u32, now: Instant) -> usize {
    let mut n = 0;
    while let Some((_, p)) = from.poll_transmit() {
        to.handle(now, addr, &p);
        n += 1;
    }
    n
}

/// Answer every delivered request with its own bytes; returns how many.
fn answer_all(s: &mut Endpoint<u32>, now: Instant) -> usize {
    let mut n = 0;
    while let Some(e) = s.poll_event() {
        if let Event::Request {
            peer,
            session,
            id,
            msg,
        } = e
        {
            s.send_response(now, peer, session, id, msg);
            n += 1;
        }
    }
    n
}

/// A client restarted on the same address (a reused port; its clock stepped back, so the old
/// wall-clock rpc ids would now be *below* its predecessor's watermark) is a new session: its
/// first RPC, id 1, is served, and the old session's late packets do not reach it.
#[test]
fn a_restarted_client_on_the_same_address_is_served_from_rpc_id_one() {
    let t = Instant::now();
    let mut s: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    let mut old: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    for id in 1000..1003u64 {
        old.send_request(t, 2, id, vec![1; 50]);
        pump(&mut old, &mut s, 1, t);
        assert_eq!(answer_all(&mut s, t), 1);
        pump(&mut s, &mut old, 2, t);
        assert!(matches!(old.poll_event(), Some(Event::Response { .. })));
    }
    let mut new: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    assert_ne!(new.session(), old.session());
    new.send_request(t, 2, 1, vec![2; 50]);
    pump(&mut new, &mut s, 1, t);
    assert_eq!(
        answer_all(&mut s, t),
        1,
        "id 1 of the new session is delivered"
    );
    pump(&mut s, &mut new, 2, t);
    assert!(matches!(
        new.poll_event(),
        Some(Event::Response { id: 1, .. })
    ));
    // A response of the old session arriving at the new one is ignored.
    old.send_request(t, 2, 1003, vec![3; 50]);
    pump(&mut old, &mut s, 1, t);
    answer_all(&mut s, t);
    let mut stale = Vec::new();
    while let Some((_, p)) = s.poll_transmit() {
        stale.push(p);
    }
    for p in &stale {
        new.handle(t, 2, p);
    }
    assert!(
        new.poll_event().is_none(),
        "another session's packets are dropped"
    );
    for p in &stale {
        old.handle(t, 2, p);
    }
    assert!(matches!(
        old.poll_event(),
        Some(Event::Response { id: 1003, .. })
    ));
}

/// 10,000 spoofed sources each start an RPC: the server keeps state for at most `max_peers`,
/// never evicts a session with an RPC in progress (refuses new ones instead), evicts idle ones
/// for newcomers, and forgets everything after `peer_idle`.
#[test]
fn ten_thousand_spoofed_sources_stay_under_the_peer_cap() {
    let cfg = ProtoConfig {
        max_peers: 1000,
        abort_timeout: Duration::from_millis(100),
        peer_idle: Duration::from_secs(2),
        ..ProtoConfig::default()
    };
    let t = Instant::now();
    let mut s: Endpoint<u32> = Endpoint::new(cfg.clone());
    // A legitimate client whose RPC executes for the whole flood.
    let mut good: Endpoint<u32> = Endpoint::new(cfg.clone());
    good.send_request(t, 2, 1, vec![7; 100]);
    pump(&mut good, &mut s, 1, t);
    let Some(Event::Request { session, id, .. }) = s.poll_event() else {
        panic!("the good request is delivered")
    };
    let mut served = 0;
    let mut now = t;
    for src in 0..10_000u32 {
        now += Duration::from_micros(100); // 1 s for the whole flood
        let mut spoof: Endpoint<u32> = Endpoint::new(cfg.clone());
        spoof.send_request(now, 2, 1, vec![src as u8; 60]);
        pump(&mut spoof, &mut s, 100 + src, now);
        served += answer_all(&mut s, now);
        while s.poll_transmit().is_some() {} // responses and ACKs are lost
        if s.poll_timeout().is_some_and(|d| d <= now) {
            s.handle_timeout(now);
        }
        assert!(s.server_peers() <= 1000, "{} peers", s.server_peers());
    }
    let st = s.stats();
    assert!(
        st.peers_refused > 0,
        "a full table of busy sessions refuses"
    );
    assert!(st.peers_evicted > 0, "finished sessions make room");
    assert!(
        served > 1000,
        "newcomers are served after evictions ({served})"
    );
    // The executing RPC's session was never evicted: its response still goes out.
    s.send_response(now, 1, session, id, vec![8; 10]);
    pump(&mut s, &mut good, 2, now);
    assert!(matches!(
        good.poll_event(),
        Some(Event::Response { id: 1, .. })
    ));
    // Everything idle is forgotten after peer_idle.
    pump(&mut good, &mut s, 1, now);
    let end = now + Duration::from_secs(3);
    while let Some(d) = s.poll_timeout().filter(|&d| d <= end) {
        s.handle_timeout(d.max(now));
        now = d.max(now);
    }
    s.handle_timeout(end);
    assert_eq!((s.server_peers(), s.server_rpcs()), (0, 0));
    assert_eq!(s.rx_buffered(), 0);
}

/// A watermark advance frees that session's finished RPCs below it, and no other session's.
#[test]
fn a_watermark_frees_only_its_own_sessions_rpcs() {
    let t = Instant::now();
    let mut s: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    let mut a: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    let mut b: Endpoint<u32> = Endpoint::new(ProtoConfig::default());
    for (ep, addr) in [(&mut a, 1u32), (&mut b, 2)] {
        for id in 1..=3u64 {
            ep.send_request(t, 9, id, vec![1; 10]);
        }
        pump(ep, &mut s, addr, t);
    }
    assert_eq!(answer_all(&mut s, t), 6);
    while s.poll_transmit().is_some() {} // responses lost: 6 RPCs held
    assert_eq!(s.server_rpcs(), 6);
    a.cancel(9, 1);
    a.cancel(9, 2);
    a.send_request(t, 9, 4, vec![1; 10]); // ack_below = 3
    pump(&mut a, &mut s, 1, t);
    assert_eq!(
        s.server_rpcs(),
        5,
        "a's rpcs 1 and 2 freed, b's kept, a's 4 added"
    );
}
