//! The ZooKeeper client against a private ZooKeeper (Debian's package; SKIP when not installed)
//! and against a hostile fake server on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use faascache_testkit::{check, eventually};

use faascache_zk::proto::err;
use faascache_zk::{CreateMode, Op, OpResult, ZkAddress, ZkError, ZkSession};

const T: Duration = Duration::from_secs(5);

fn session(addr: &str) -> ZkSession {
    let a: ZkAddress = addr.parse().unwrap();
    ZkSession::connect(&a, T).unwrap()
}

#[test]
fn operations_versions_multi_ephemerals_and_watches() {
    let Some(zk) = faascache_testkit::zk::ZkServer::start("zk_client_ops") else {
        return;
    };
    let s = session(&zk.address());
    assert!(s.timeout() >= Duration::from_secs(1));
    s.create_all("/t/a/b").unwrap();
    s.create_all("/t/a/b").unwrap(); // idempotent
    assert!(s.exists("/t/a/b", false).unwrap().is_some());
    assert_eq!(s.exists("/t/none", false).unwrap(), None);
    assert_eq!(s.get_data("/t/none", false).unwrap(), None);

    // Create, read, versioned set.
    assert_eq!(
        s.create("/t/x", b"one", CreateMode::Persistent).unwrap(),
        "/t/x"
    );
    let e = s
        .create("/t/x", b"dup", CreateMode::Persistent)
        .unwrap_err();
    assert_eq!(e.code(), Some(err::NODE_EXISTS), "{e}");
    let (d, st) = s.get_data("/t/x", false).unwrap().unwrap();
    assert_eq!((d.as_slice(), st.version), (&b"one"[..], 0));
    assert_eq!(s.set_data("/t/x", b"two", 0).unwrap().version, 1);
    let e = s.set_data("/t/x", b"old", 0).unwrap_err();
    assert_eq!(e.code(), Some(err::BAD_VERSION), "{e}");
    assert!(e.to_string().contains("BADVERSION"), "{e}");
    assert_eq!(s.get_data("/t/x", false).unwrap().unwrap().0, b"two");
    // Large (but allowed) data round-trips.
    let big = vec![7u8; 512 * 1024];
    s.set_data("/t/x", &big, -1).unwrap();
    assert_eq!(s.get_data("/t/x", false).unwrap().unwrap().0, big);
    // Too large is refused before sending; the session lives on.
    let huge = vec![0u8; 2 << 20];
    assert!(matches!(
        s.set_data("/t/x", &huge, -1),
        Err(ZkError::TooLarge { .. })
    ));
    s.alive().unwrap();

    // Multi: all or nothing.
    let r = s
        .multi(&[
            Op::Check {
                path: "/t/x",
                version: 2,
            },
            Op::Create {
                path: "/t/y",
                data: b"y",
                mode: CreateMode::Persistent,
            },
            Op::SetData {
                path: "/t/x",
                data: b"three",
                version: 2,
            },
        ])
        .unwrap();
    assert_eq!(r[0], OpResult::Checked);
    assert_eq!(r[1], OpResult::Created("/t/y".into()));
    assert!(matches!(r[2], OpResult::Set(st) if st.version == 3));
    let e = s
        .multi(&[
            Op::Delete {
                path: "/t/y",
                version: -1,
            },
            Op::Check {
                path: "/t/x",
                version: 99,
            },
        ])
        .unwrap_err();
    assert_eq!(
        e,
        ZkError::Multi {
            index: 1,
            code: err::BAD_VERSION
        }
    );
    assert!(
        s.exists("/t/y", false).unwrap().is_some(),
        "nothing applied"
    );

    // Sequential and ephemeral znodes; children; a watch fires on deletion by another session.
    let other = session(&zk.address());
    s.create_all("/t/e").unwrap();
    let p1 = other
        .create("/t/e/c_", b"", CreateMode::EphemeralSequential)
        .unwrap();
    let p2 = s
        .create("/t/e/c_", b"", CreateMode::EphemeralSequential)
        .unwrap();
    assert!(p1.starts_with("/t/e/c_") && p1 < p2, "{p1} {p2}");
    let mut kids = s.get_children("/t/e", false).unwrap();
    kids.sort();
    assert_eq!(kids.len(), 2);
    let st = s.exists(&p1, true).unwrap().unwrap();
    assert_eq!(st.ephemeral_owner, other.session_id());
    other.close(); // ends its session: its ephemeral znode goes at once
    let ev = eventually(Duration::from_secs(10), || {
        s.wait_event(Duration::from_millis(200))
            .ok_or("no watch event")
    });
    assert_eq!((ev.kind, ev.path.as_str()), (2, p1.as_str()));
    assert_eq!(
        s.get_children("/t/e", false).unwrap(),
        vec![p2["/t/e/".len()..].to_string()]
    );
    assert!(matches!(
        other.exists("/t", false),
        Err(ZkError::SessionLost(_))
    ));

    // The session survives idle periods longer than its timeout (pings).
    std::thread::sleep(s.timeout() + Duration::from_millis(500));
    s.alive().unwrap();
    assert!(s.exists(&p2, false).unwrap().is_some());

    // Many threads share one session.
    std::thread::scope(|sc| {
        for i in 0..4 {
            let s = &s;
            sc.spawn(move || {
                for j in 0..25 {
                    let p = format!("/t/th{i}_{j}");
                    s.create(&p, p.as_bytes(), CreateMode::Persistent).unwrap();
                    assert_eq!(s.get_data(&p, false).unwrap().unwrap().0, p.as_bytes());
                }
            });
        }
    });
    assert_eq!(
        s.exists("/t", false).unwrap().unwrap().num_children,
        4 + 100
    ); // a, x, y, e and the threads' znodes
}

/// A fake server that completes the handshake, then sends `after` in reply to anything.
fn hostile(after: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf);
        // ConnectResponse: protocol 0, timeout 4000, session 1, passwd 16 bytes.
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&4000i32.to_be_bytes());
        body.extend_from_slice(&1i64.to_be_bytes());
        body.extend_from_slice(&16i32.to_be_bytes());
        body.extend_from_slice(&[0; 16]);
        let mut pkt = (body.len() as u32).to_be_bytes().to_vec();
        pkt.extend_from_slice(&body);
        c.write_all(&pkt).unwrap();
        let _ = c.read(&mut buf);
        let _ = c.write_all(&after);
        std::thread::sleep(Duration::from_millis(500));
    });
    (format!("zk:127.0.0.1:{port}"), h)
}

#[test]
fn hostile_server_bytes_end_the_session_without_panics() {
    let frame = |body: &[u8]| {
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(body);
        p
    };
    let mut reply_hdr = 1i32.to_be_bytes().to_vec(); // xid 1
    reply_hdr.extend_from_slice(&0i64.to_be_bytes());
    reply_hdr.extend_from_slice(&0i32.to_be_bytes());
    let mut lying = reply_hdr.clone();
    lying.extend_from_slice(&i32::MAX.to_be_bytes()); // a buffer "of 2 GiB"
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a 4 GiB length prefix", u32::MAX.to_be_bytes().to_vec()),
        ("a truncated reply header", frame(&[1, 2, 3])),
        ("a lying data length", frame(&lying)),
        ("a short stat", frame(&reply_hdr)),
        ("garbage", vec![0xff; 64]),
        ("nothing (close)", Vec::new()),
    ];
    for (what, bytes) in cases {
        let (addr, h) = hostile(bytes);
        let s = session(&addr);
        let r = s.get_data("/x", false);
        assert!(r.is_err(), "{what}: {r:?}");
        // Either the reply was refused or the session ended; later calls fail cleanly.
        let _ = s.exists("/x", false);
        drop(s);
        h.join().unwrap();
    }
    // No server at all: a clear connect error naming the address.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a: ZkAddress = format!("zk:127.0.0.1:{port}").parse().unwrap();
    let e = ZkSession::connect(&a, T).unwrap_err().to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// A TCP proxy in front of ZooKeeper whose connections the test can cut, and which can refuse
/// new ones: a broken connection without a broken server.
struct Proxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let refuse = Arc::new(AtomicBool::new(false));
        let (c2, r2) = (conns.clone(), refuse.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { continue };
                if r2.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                c2.lock().unwrap().push(client.try_clone().unwrap());
                c2.lock().unwrap().push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy {
            port,
            conns,
            refuse,
        }
    }
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
    fn refuse(&self, on: bool) {
        self.refuse.store(on, std::sync::atomic::Ordering::Release);
    }
}

/// Retry a call through `ConnectionLoss` until it answers.
fn retry<X>(mut f: impl FnMut() -> Result<X, ZkError>) -> Result<X, ZkError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Err(ZkError::ConnectionLoss(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}

#[test]
fn a_broken_connection_resumes_the_session_and_a_long_outage_loses_it() {
    let Some(zk) = faascache_testkit::zk::ZkServer::start("zk_client_resume") else {
        return;
    };
    let proxy = Proxy::start(zk.port);
    // The first address is dead (refuses connections while the guard lives): the session also
    // learns to go round the ensemble.
    let dead = faascache_testkit::closed_port();
    let addr: ZkAddress = format!("zk:127.0.0.1:{},127.0.0.1:{}", dead.port, proxy.port)
        .parse()
        .unwrap();
    let s = ZkSession::connect(&addr, Duration::from_secs(4)).unwrap();
    s.create("/eph", b"", CreateMode::Ephemeral).unwrap();

    // Cut: calls fail with ConnectionLoss (or succeed after the resume), the session and its
    // ephemeral znode survive.
    for round in 0..3 {
        proxy.cut();
        let st = retry(|| s.exists("/eph", false)).unwrap();
        assert_eq!(
            st.map(|st| st.ephemeral_owner),
            Some(s.session_id()),
            "round {round}: the ephemeral znode belongs to the resumed session"
        );
        s.alive().unwrap();
    }
    retry(|| s.set_data("/eph", b"after", -1)).unwrap();

    // An outage longer than the session timeout: the session is lost, its znode gone.
    proxy.refuse(true);
    proxy.cut();
    eventually(Duration::from_secs(30), || match s.alive() {
        Ok(()) => Err("the session was not declared lost"),
        Err(_) => Ok(()),
    });
    assert!(matches!(
        s.exists("/eph", false),
        Err(ZkError::SessionLost(_))
    ));
    proxy.refuse(false);
    let other = session(&zk.address());
    eventually(Duration::from_secs(30), || {
        check(other.exists("/eph", false).unwrap().is_none(), || {
            "ZooKeeper did not expire the session".into()
        })
    });
}
