//! Verbs-specific checks beyond the conformance suite (which also runs over verbs):
//! what happens without a device, and a hostile side channel. Built with `--features verbs`;
//! the device tests run on Soft-RoCE in the guest of `scripts/rxe-guest.sh` and print SKIP
//! elsewhere.
#![cfg(feature = "verbs")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);

/// A read on a side channel shows it closed: end of stream or reset (not a timeout, not data).
fn closed(r: std::io::Result<usize>) -> bool {
    match r {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn server_locator() -> ServiceLocator {
    std::env::var("FAASCACHE_VERBS_TEST_SERVER")
        .unwrap_or_else(|_| "infrc:host=127.0.0.1,port=0".into())
        .parse()
        .unwrap()
}

fn device_or_skip() -> bool {
    match verbs::devices() {
        Ok(_) => true,
        Err(e) => faascache_testkit::skip_or_fail(
            "rdma",
            "verbs",
            &format!("no RDMA device: {e} (run scripts/rxe-guest.sh to test on Soft-RoCE)"),
        ),
    }
}

/// Without an RDMA device (or without libibverbs) both sides fail with an error that says so;
/// nothing panics and nothing falls back to another transport.
#[test]
fn missing_device_is_a_clear_error() {
    let Err(why) = verbs::devices() else {
        println!("SKIP: an RDMA device is present; this test covers machines without one");
        return;
    };
    assert!(!why.to_string().is_empty());
    match serve(
        &server_locator(),
        Arc::new(NoHandler),
        DispatchConfig::default(),
    ) {
        Err(e @ Error::Device { .. }) => {
            let m = e.to_string();
            println!("serve without a device: {m}");
            assert!(m.contains("RDMA") || m.contains("libibverbs"), "{m}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    match connect(
        &"infrc:host=127.0.0.1,port=1".parse().unwrap(),
        ClientConfig::default(),
    ) {
        Err(e @ Error::Device { .. }) => {
            let m = e.to_string();
            assert!(m.contains("RDMA") || m.contains("libibverbs"), "{m}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    assert!(is_kernel_bypass(TransportKind::Infrc));
    assert!(SUPPORTED.contains(&TransportKind::Infrc));
}

/// Garbage on the side channel is refused (the server closes it without creating a queue
/// pair) and the server keeps serving real clients.
#[test]
fn hostile_side_channel_is_refused() {
    if !device_or_skip() {
        return;
    }
    let server = serve(
        &server_locator(),
        Arc::new(NoHandler),
        DispatchConfig {
            pin: false,
            ..Default::default()
        },
    )
    .unwrap();
    let loc = server.local_locator().clone();
    let addr = format!("{}:{}", loc.host().unwrap(), loc.port().unwrap());
    // Wrong bytes: closed without an answer.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(LIVE)).unwrap();
    s.write_all(&[0xEE; 48]).unwrap();
    let mut b = [0u8; 48];
    assert!(
        closed(s.read(&mut b)),
        "the server answered garbage or kept the connection"
    );
    // A client that connects and goes away mid-handshake.
    drop(TcpStream::connect(&addr).unwrap());
    // Real sessions still work, and sessions that come and go leave the server healthy.
    for i in 0..20u8 {
        let s = connect(&loc.clone().into(), ClientConfig::default()).unwrap();
        let p = vec![i; 5000];
        assert_eq!(s.call(Opcode::Echo, &p, LIVE).unwrap().1, p);
    }
    let s = connect(&loc.into(), ClientConfig::default()).unwrap();
    assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
    assert_eq!(s.transport(), TransportKind::Infrc);
}

/// A large request and its echoed reply go zero-copy: their fragments (all but the first, which
/// carries the header) are posted from the registered payloads, on the client and the server.
#[test]
fn large_values_are_sent_zero_copy() {
    if !device_or_skip() {
        return;
    }
    let server = serve(
        &server_locator(),
        Arc::new(NoHandler),
        DispatchConfig {
            pin: false,
            ..Default::default()
        },
    )
    .unwrap();
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap();
    let p: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let before = verbs::zero_copy_sends();
    assert_eq!(s.call(Opcode::Echo, &p, LIVE).unwrap().1, p);
    let sent = verbs::zero_copy_sends() - before;
    // Fragments are at most 4 KiB (the largest MTU): ≥ 255 zero-copy fragments each way.
    assert!(sent >= 2 * 255, "only {sent} fragments went zero-copy");
    // Small values are copied (or inline), never registered.
    let before = verbs::zero_copy_sends();
    assert_eq!(
        s.call(Opcode::Echo, &[7; 1000], LIVE).unwrap().1,
        vec![7; 1000]
    );
    assert_eq!(verbs::zero_copy_sends(), before);
}
