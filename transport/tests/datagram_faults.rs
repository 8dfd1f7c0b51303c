//! The reliable datagram protocol under injected loss (5 %), duplication and reordering delivers
//! every message exactly once — seeded fake driver, several seeds, messages from 1 byte to
//! several MTUs to ~1 MB. Virtual time: one tick = 100 µs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use faascache_transport::datagram::proto::{Endpoint, Event, ProtoConfig};
use faascache_transport::datagram::sim::{Faults, Rng, SimDriver, SimNet};
use faascache_transport::datagram::{Driver, RxPacket, TxPacket};

const TICK: Duration = Duration::from_micros(100);
const MTU: usize = 1500;

fn step(ep: &mut Endpoint<u32>, drv: &mut SimDriver, now: Instant) {
    let mut rx: Vec<RxPacket<u32>> = Vec::new();
    drv.rx_burst(&mut rx, 1 << 20).unwrap();
    for p in rx {
        ep.handle(now, p.from, &p.data);
    }
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    let mut tx: Vec<TxPacket<u32>> = Vec::new();
    while let Some((to, data)) = ep.poll_transmit() {
        tx.push(TxPacket { to, data });
    }
    drv.tx_burst(&mut tx).unwrap();
}

fn message(id: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(id);
    (0..len).map(|_| r.next_u64() as u8).collect()
}

fn run(seed: u64, faults: Faults, sizes: &[usize]) {
    let net = SimNet::new(seed, faults);
    let cfg = ProtoConfig {
        mtu: MTU,
        abort_timeout: Duration::from_secs(3600),
        ..ProtoConfig::default()
    };
    let (mut cd, mut sd) = (net.driver(1, MTU), net.driver(2, MTU));
    let (mut client, mut server) = (Endpoint::<u32>::new(cfg.clone()), Endpoint::<u32>::new(cfg));
    let base = Instant::now();
    let mut requests_seen: HashMap<u64, usize> = HashMap::new();
    let mut responses: HashMap<u64, usize> = HashMap::new();
    for (i, &len) in sizes.iter().enumerate() {
        let id = i as u64 + 1;
        client.send_request(base, 2, id, message(id, len));
    }
    let mut ticks = 0u64;
    while responses.len() < sizes.len() {
        ticks += 1;
        assert!(
            ticks < 2_000_000,
            "seed {seed}: no progress; {} of {} responses",
            responses.len(),
            sizes.len()
        );
        net.tick();
        let now = base + TICK * net.now() as u32;
        step(&mut server, &mut sd, now);
        while let Some(e) = server.poll_event() {
            match e {
                Event::Request {
                    peer,
                    session,
                    id,
                    msg,
                } => {
                    *requests_seen.entry(id).or_default() += 1;
                    assert!(
                        msg == message(id, sizes[id as usize - 1]),
                        "seed {seed}: request {id} corrupted"
                    );
                    // Respond with a different message of a related size.
                    let resp = message(id + 1000, msg.len() / 2 + 1);
                    server.send_response(now, peer, session, id, resp);
                }
                other => panic!("seed {seed}: server got {other:?}"),
            }
        }
        step(&mut client, &mut cd, now);
        while let Some(e) = client.poll_event() {
            match e {
                Event::Response { id, msg, .. } => {
                    *responses.entry(id).or_default() += 1;
                    assert!(
                        msg == message(id + 1000, sizes[id as usize - 1] / 2 + 1),
                        "seed {seed}: response {id} corrupted"
                    );
                }
                other => panic!("seed {seed}: client got {other:?}"),
            }
        }
    }
    // Let duplicates and stragglers drain; nothing may be delivered twice.
    for _ in 0..2000 {
        net.tick();
        let now = base + TICK * net.now() as u32;
        step(&mut server, &mut sd, now);
        assert!(
            server.poll_event().is_none(),
            "seed {seed}: request delivered twice"
        );
        step(&mut client, &mut cd, now);
        assert!(
            client.poll_event().is_none(),
            "seed {seed}: response delivered twice"
        );
    }
    let (sent, dropped, duplicated) = net.counters();
    eprintln!("seed {seed}: {ticks} ticks, {sent} packets sent, {dropped} dropped, {duplicated} duplicated");
    assert!(faults.loss == 0.0 || dropped > 0);
    assert!(
        requests_seen.values().all(|&n| n == 1),
        "seed {seed}: {requests_seen:?}"
    );
    assert!(responses.values().all(|&n| n == 1));
    assert_eq!(client.client_rpcs(), 0);
    assert_eq!(
        (client.rx_buffered(), server.rx_buffered()),
        (0, 0),
        "seed {seed}: receive budget leaked"
    );
}

const SIZES: &[usize] = &[
    1,
    2,
    100,
    1459,
    1460,
    1461,
    3 * 1460 + 7,
    10_000,
    64 * 1024,
    100_000,
    1_000_000,
];

#[test]
fn exactly_once_under_loss_duplication_reordering() {
    let faults = Faults {
        loss: 0.05,
        duplicate: 0.05,
        max_delay: 5,
    };
    for seed in [1, 2, 3, 42, 1234] {
        run(seed, faults, SIZES);
    }
}

#[test]
fn heavy_loss_still_completes() {
    let faults = Faults {
        loss: 0.3,
        duplicate: 0.1,
        max_delay: 20,
    };
    run(7, faults, &[1, 5000, 200_000]);
}

#[test]
fn lossless_in_order() {
    let faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        max_delay: 0,
    };
    run(9, faults, SIZES);
}

#[test]
fn silence_aborts() {
    let net = SimNet::new(
        1,
        Faults {
            loss: 1.0,
            duplicate: 0.0,
            max_delay: 0,
        },
    );
    let cfg = ProtoConfig {
        mtu: MTU,
        abort_timeout: Duration::from_millis(50),
        ..ProtoConfig::default()
    };
    let mut cd = net.driver(1, MTU);
    let mut client = Endpoint::<u32>::new(cfg);
    let base = Instant::now();
    client.send_request(base, 2, 1, vec![1, 2, 3]);
    for _ in 0..10_000 {
        net.tick();
        let now = base + TICK * net.now() as u32;
        step(&mut client, &mut cd, now);
        if let Some(e) = client.poll_event() {
            assert!(matches!(e, Event::Failed { id: 1, .. }), "{e:?}");
            return;
        }
    }
    panic!("no abort");
}

#[test]
fn cancelled_requests_free_the_servers_receive_budget() {
    // A client starts large requests and cancels them half-way; once its watermark passes them,
    // the server must release their partial buffers (else the budget leaks until nothing fits).
    let net = SimNet::new(
        5,
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            max_delay: 0,
        },
    );
    let cfg = ProtoConfig {
        mtu: MTU,
        grant_window: 4096,
        ..ProtoConfig::default()
    };
    let (mut cd, mut sd) = (net.driver(1, MTU), net.driver(2, MTU));
    let (mut client, mut server) = (Endpoint::<u32>::new(cfg.clone()), Endpoint::<u32>::new(cfg));
    let base = Instant::now();
    let tick = |n: &SimNet| base + TICK * n.now() as u32;
    for id in 1..=5u64 {
        client.send_request(tick(&net), 2, id, message(id, 100_000));
        for _ in 0..3 {
            net.tick();
            step(&mut client, &mut cd, tick(&net));
            step(&mut server, &mut sd, tick(&net));
        }
        client.cancel(2, id);
    }
    assert!(server.rx_buffered() > 0);
    // One more small RPC carries the advanced watermark.
    client.send_request(tick(&net), 2, 6, vec![1]);
    for _ in 0..10 {
        net.tick();
        step(&mut client, &mut cd, tick(&net));
        step(&mut server, &mut sd, tick(&net));
        while let Some(e) = server.poll_event() {
            if let Event::Request {
                peer,
                session,
                id,
                msg,
            } = e
            {
                server.send_response(tick(&net), peer, session, id, msg);
            }
        }
    }
    assert_eq!(server.rx_buffered(), 0);
}

#[test]
fn no_timer_spins_while_a_handler_runs_or_after_completion() {
    // poll_timeout must never stay in the past (a dispatcher would spin): not while a request
    // executes for longer than the abort timeout, not for a finished RPC whose ACK was lost.
    let cfg = ProtoConfig {
        mtu: MTU,
        abort_timeout: Duration::from_millis(50),
        ..ProtoConfig::default()
    };
    let mut server = Endpoint::<u32>::new(cfg.clone());
    let mut client = Endpoint::<u32>::new(cfg);
    let t0 = Instant::now();
    client.send_request(t0, 2, 1, vec![9; 10]);
    while let Some((_, p)) = client.poll_transmit() {
        server.handle(t0, 1, &p);
    }
    assert!(matches!(server.poll_event(), Some(Event::Request { .. })));
    while server.poll_transmit().is_some() {}
    let later = t0 + Duration::from_secs(10);
    assert_eq!(server.poll_timeout(), None, "an executing RPC has no timer");
    server.send_response(later, 1, client.session(), 1, vec![1; 10]);
    while server.poll_transmit().is_some() {} // the response (and so the ACK) is lost
    let mut now = later;
    for _ in 0..100 {
        match server.poll_timeout() {
            None => return,
            Some(t) => {
                assert!(t >= now, "timer in the past");
                now = t.max(now) + Duration::from_millis(1);
                server.handle_timeout(now);
            }
        }
    }
    assert_eq!(server.server_rpcs(), 0, "tombstone never expired");
}
