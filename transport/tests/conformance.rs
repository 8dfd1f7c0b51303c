//! One conformance suite that every transport passes (loopback, TCP, UDP; DPDK over memif with
//! feature `dpdk`), over real sockets on 127.0.0.1 with port 0 where the transport has sockets.
//! No timed assertions except generous liveness timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use faascache_transport::limits::MAX_PAYLOAD;
use faascache_transport::*;

const LIVE: Duration = Duration::from_secs(30);

/// Test service: `TestCustom` replies with the payload reversed; a payload `defer:<ms>:...` is
/// deferred to another thread that replies (the payload unchanged) after `ms` milliseconds.
fn test_handler() -> Arc<dyn Handler> {
    Arc::new(|call: &mut IncomingRpc<'_>| {
        if call.opcode() != Opcode::TestCustom {
            return;
        }
        let p = call.payload().to_vec();
        if p == b"panic" {
            panic!("test handler panics on purpose");
        }
        if p == b"drop-responder" {
            drop(call.defer());
            return;
        }
        if let Some(rest) = p.strip_prefix(b"defer:") {
            let ms: u64 = std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.split(':').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let r = call.defer().expect("first defer");
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(ms));
                r.reply(Status::OK, &p);
            });
        } else {
            let mut v = p;
            v.reverse();
            call.reply(Status::OK, &v);
        }
    })
}

fn server_cfg() -> DispatchConfig {
    DispatchConfig {
        cores: 2,
        pin: false,
        ..DispatchConfig::default()
    }
}

static NAME: AtomicUsize = AtomicUsize::new(0);

fn locator(kind: &str) -> ServiceLocator {
    match kind {
        "loopback" => format!(
            "loopback:name=conformance-{}",
            NAME.fetch_add(1, Ordering::Relaxed)
        ),
        "infrc" => std::env::var("FAASCACHE_VERBS_TEST_SERVER")
            .unwrap_or_else(|_| "infrc:host=127.0.0.1,port=0".into()),
        // One EAL per process: server and client are two memif vdevs in this process, one
        // socket per server; no hugepages needed.
        "dpdk" => format!(
            "dpdk:vdev=memif,socket=/tmp/faascache-conformance-{}-{}.sock,huge=0",
            std::process::id(),
            NAME.fetch_add(1, Ordering::Relaxed)
        ),
        k => format!("{k}:host=127.0.0.1,port=0"),
    }
    .parse()
    .unwrap()
}

fn start(kind: &str) -> (ServerHandle, Session) {
    let server = serve(&locator(kind), test_handler(), server_cfg()).expect("serve");
    assert_eq!(server.transport().as_str(), kind);
    let session = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .expect("connect");
    assert_eq!(session.transport().as_str(), kind);
    (server, session)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn echo_sizes(kind: &str) {
    let (_server, s) = start(kind);
    for n in [0, 100, 1000, 1 << 20, MAX_PAYLOAD] {
        let p = pattern(n, 7);
        let (st, r) = s.call(Opcode::Echo, &p, LIVE).expect("echo");
        assert_eq!(st, Status::OK);
        assert!(r == p, "echo of {n} bytes differs");
    }
    let (st, r) = s.call(Opcode::Ping, &[], LIVE).unwrap();
    assert_eq!((st, r.len()), (Status::OK, 0));
}

pub fn handler_reply(kind: &str) {
    let (_server, s) = start(kind);
    let (st, r) = s.call(Opcode::TestCustom, b"abc", LIVE).unwrap();
    assert_eq!((st, r.as_slice()), (Status::OK, &b"cba"[..]));
}

pub fn pipelining(kind: &str) {
    let (_server, s) = start(kind);
    let mut pending: Vec<_> = (0..200u32)
        .map(|i| {
            let p = pattern(1 + (i as usize * 37) % 3000, i as u8);
            (s.send(Opcode::Echo, &p).unwrap(), p)
        })
        .collect();
    assert_eq!(s.outstanding(), 200);
    // Wait in reverse order: replies for earlier requests are routed to their slots meanwhile.
    while let Some((mut rpc, p)) = pending.pop() {
        let (st, r) = rpc.wait(LIVE).unwrap();
        assert_eq!(st, Status::OK);
        assert!(r == p);
    }
    assert_eq!(s.outstanding(), 0);
}

pub fn pipelined_large(kind: &str) {
    // Many large requests in flight before anyone waits: the sender must keep reading replies
    // while its socket buffer is full (no write/write deadlock), and everything arrives intact.
    let (_server, s) = start(kind);
    let mut pending: Vec<_> = (0..8u8)
        .map(|i| {
            let p = pattern(1 << 20, i);
            (s.send(Opcode::Echo, &p).unwrap(), p)
        })
        .collect();
    for (rpc, p) in &mut pending {
        let (st, r) = rpc.wait(LIVE).unwrap();
        assert_eq!(st, Status::OK);
        assert!(r == *p);
    }
}

pub fn concurrent_callers(kind: &str) {
    // Several threads share one session; in `block` mode non-polling waiters sleep and must be
    // handed their replies (and the poller role) by whoever polls.
    for poll in [PollMode::default(), PollMode::Block, PollMode::Spin] {
        let server = serve(&locator(kind), test_handler(), server_cfg()).unwrap();
        let cfg = ClientConfig {
            poll,
            ..Default::default()
        };
        let s = connect(&server.local_locator().clone().into(), cfg).unwrap();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let s = s.clone();
                thread::spawn(move || {
                    for i in 0..100usize {
                        let p = pattern(i * 13 % 2000, t);
                        let (st, r) = s.call(Opcode::Echo, &p, LIVE).unwrap();
                        assert_eq!(st, Status::OK);
                        assert!(r == p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

pub fn many_servers(kind: &str) {
    let servers: Vec<_> = (0..3)
        .map(|_| serve(&locator(kind), test_handler(), server_cfg()).unwrap())
        .collect();
    let sessions: Vec<_> = servers
        .iter()
        .map(|sv| connect(&sv.local_locator().clone().into(), ClientConfig::default()).unwrap())
        .collect();
    let mut pend: Vec<_> = sessions
        .iter()
        .map(|s| s.send(Opcode::TestCustom, b"xy").unwrap())
        .collect();
    for p in &mut pend {
        assert_eq!(p.wait(LIVE).unwrap().1, b"yx");
    }
}

pub fn many_sessions_one_server(kind: &str) {
    let server = serve(&locator(kind), test_handler(), server_cfg()).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let loc: ServiceLocator = server.local_locator().clone().into();
            thread::spawn(move || {
                let s = connect(&loc, ClientConfig::default()).unwrap();
                for i in 0..50usize {
                    let p = pattern(i * 7, t);
                    assert_eq!(s.call(Opcode::Echo, &p, LIVE).unwrap().1, p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

pub fn deferred(kind: &str) {
    let (_server, s) = start(kind);
    let mut p: Vec<_> = (0..10)
        .map(|i| {
            s.send(Opcode::TestCustom, format!("defer:{i}:x").as_bytes())
                .unwrap()
        })
        .collect();
    for (i, rpc) in p.iter_mut().enumerate() {
        let (st, r) = rpc.wait(LIVE).unwrap();
        assert_eq!(st, Status::OK);
        assert_eq!(r, format!("defer:{i}:x").as_bytes());
    }
}

pub fn deferred_longer_than_abort_timeout(kind: &str) {
    // The datagram protocol aborts after 1.5 s of silence; a handler that takes longer is kept
    // alive by BUSY answers to the client's probes.
    let (_server, s) = start(kind);
    let (st, r) = s.call(Opcode::TestCustom, b"defer:2000", LIVE).unwrap();
    assert_eq!((st, r.as_slice()), (Status::OK, &b"defer:2000"[..]));
}

pub fn timeout_then_wait_again(kind: &str) {
    let (_server, s) = start(kind);
    let mut rpc = s.send(Opcode::TestCustom, b"defer:300").unwrap();
    match rpc.wait(Duration::from_millis(5)) {
        Err(Error::Timeout(_)) => {}
        other => panic!("expected timeout, got {other:?}"),
    }
    let (st, r) = rpc.wait(LIVE).unwrap();
    assert_eq!((st, r.as_slice()), (Status::OK, &b"defer:300"[..]));
    // call() with a short timeout reports Timeout and cancels.
    assert!(matches!(
        s.call(Opcode::TestCustom, b"defer:300", Duration::from_millis(5)),
        Err(Error::Timeout(_))
    ));
    assert_eq!(s.outstanding(), 0);
}

pub fn cancellation(kind: &str) {
    let (_server, s) = start(kind);
    let slow = s.send(Opcode::TestCustom, b"defer:100").unwrap();
    let id = slow.request_id();
    slow.cancel();
    assert_eq!(s.outstanding(), 0);
    // The late reply for the cancelled RPC is dropped; the session keeps working.
    thread::sleep(Duration::from_millis(150));
    let (st, r) = s.call(Opcode::Echo, b"after", LIVE).unwrap();
    assert_eq!((st, r.as_slice()), (Status::OK, &b"after"[..]));
    let mut next = s.send(Opcode::Echo, b"x").unwrap();
    assert!(next.request_id() > id);
    next.wait(LIVE).unwrap();
    assert!(matches!(next.wait(LIVE), Err(Error::AlreadyTaken)));
}

pub fn server_shutdown_fails_waiters(kind: &str) {
    let (server, s) = start(kind);
    s.call(Opcode::Ping, &[], LIVE).unwrap();
    // Three threads wait on one RPC each, and this thread on three more.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let mut rpc = s.send(Opcode::TestCustom, b"defer:5000").unwrap();
            thread::spawn(move || rpc.wait(LIVE))
        })
        .collect();
    let mut mine: Vec<_> = (0..3)
        .map(|_| s.send(Opcode::TestCustom, b"defer:5000").unwrap())
        .collect();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        server.shutdown();
    });
    let results = waiters
        .into_iter()
        .map(|w| w.join().unwrap())
        .chain(mine.iter_mut().map(|r| r.wait(LIVE)));
    for r in results {
        match r {
            Err(Error::SessionFailed { .. }) => {}
            other => panic!("expected session failure, got {other:?}"),
        }
    }
    stopper.join().unwrap();
    assert!(s.failure().is_some());
    assert!(matches!(
        s.send(Opcode::Ping, &[]),
        Err(Error::SessionFailed { .. })
    ));
}

pub fn unknown_opcode(kind: &str) {
    let (_server, s) = start(kind);
    let (st, _) = s.send_raw(0x7777, b"?").unwrap().wait(LIVE).unwrap();
    assert_eq!(st, Status::UNIMPLEMENTED_REQUEST);
    let (st, _) = s.call(Opcode::TestUnserved, b"?", LIVE).unwrap();
    assert_eq!(st, Status::UNIMPLEMENTED_REQUEST);
    // The session is still fine afterwards.
    assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
}

pub fn oversize_rejected(kind: &str) {
    let (_server, s) = start(kind);
    let big = vec![0u8; MAX_PAYLOAD + 1];
    match s.send(Opcode::Echo, &big) {
        Err(e @ Error::TooLarge { .. }) => assert!(e.to_string().contains("split")),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
}

pub fn poll_modes(kind: &str) {
    for (sp, cp) in [
        (PollMode::Spin, PollMode::Spin),
        (PollMode::Block, PollMode::Block),
    ] {
        let server = serve(
            &locator(kind),
            test_handler(),
            DispatchConfig {
                cores: 1,
                pin: false,
                poll: sp,
                ..Default::default()
            },
        )
        .unwrap();
        let s = connect(
            &server.local_locator().clone().into(),
            ClientConfig {
                poll: cp,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.poll_mode(), cp);
        for i in 0..20 {
            let p = pattern(i * 100, 1);
            assert_eq!(s.call(Opcode::Echo, &p, LIVE).unwrap().1, p);
        }
        assert!(server.cpu_time() > Duration::ZERO);
    }
}

/// The transport's own per-request failures (here a deferred RPC whose `Responder` is dropped)
/// are answered with `INTERNAL_ERROR`, and the server serves on.
pub fn handler_failures_still_answer(kind: &str) {
    let (_server, s) = start(kind);
    let (st, _) = s.call(Opcode::TestCustom, b"drop-responder", LIVE).unwrap();
    assert_eq!(st, Status::INTERNAL_ERROR);
    assert_eq!(s.call(Opcode::TestCustom, b"ab", LIVE).unwrap().1, b"ba");
}

/// Environment variable that makes this test binary a server whose handler panics (see
/// [`panic_child`]): the transport it serves.
const PANIC_CHILD: &str = "FAASCACHE_TEST_PANIC_CHILD";

/// A handler that panics ends the process (SIGABRT): nothing is caught and served on. The server
/// runs in a child process (this test binary again, running [`panic_child`]); over TCP and UDP
/// the client is this process and gets a transport error, not a reply; on the other transports
/// the child calls itself and never sees a reply either.
pub fn handler_panic_ends_the_process(kind: &str) {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "panic_child", "--nocapture", "--test-threads=1"])
        .env(PANIC_CHILD, kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let local = loop {
        match rx.recv_timeout(LIVE) {
            Ok(line) => {
                // libtest prints "test panic_child ... " before it on the same line.
                if let Some((_, l)) = line.split_once("LOCAL ") {
                    break l.trim().to_string();
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the child printed no locator: {e}");
            }
        }
    };
    if matches!(kind, "tcp" | "udp") {
        let loc: ServiceLocator = local.parse().expect("child locator");
        let s = connect(&loc, ClientConfig::default()).expect("connect to the child");
        assert_eq!(s.call(Opcode::TestCustom, b"ab", LIVE).unwrap().1, b"ba");
        let r = s.call(Opcode::TestCustom, b"panic", Duration::from_secs(10));
        assert!(r.is_err(), "a panicking handler must not answer: got {r:?}");
    }
    let deadline = std::time::Instant::now() + LIVE;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server process survived its handler's panic");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let lines: Vec<String> = rx.try_iter().collect();
    let err = err_reader.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the child must abort: {status}; stderr: {err}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("REPLIED")),
        "the child got a reply: {lines:?}"
    );
    assert!(
        err.contains("test handler panics on purpose") && err.contains("aborting the process"),
        "stderr names the panic and the abort: {err}"
    );
}

/// The child side of [`handler_panic_ends_the_process`]; does nothing in a normal test run.
#[test]
fn panic_child() {
    let Ok(kind) = std::env::var(PANIC_CHILD) else {
        return;
    };
    let server = serve(&locator(&kind), test_handler(), server_cfg()).expect("serve");
    println!("LOCAL {}", server.local_locator());
    if !matches!(kind.as_str(), "tcp" | "udp") {
        let s = connect(
            &server.local_locator().clone().into(),
            ClientConfig::default(),
        )
        .expect("connect");
        let r = s.call(Opcode::TestCustom, b"panic", LIVE);
        println!("REPLIED {r:?}");
    }
    thread::sleep(LIVE);
}

/// A service written against the generated `Dispatch` trait: it implements one RPC; the others
/// answer `UNIMPLEMENTED_REQUEST` by default.
struct Upper;
impl Dispatch for Upper {
    fn test_custom(&self, call: &mut IncomingRpc<'_>) {
        let up = call.payload().to_ascii_uppercase();
        call.reply_with(Status::OK, |buf| buf.extend_from_slice(&up));
    }
}

pub fn dispatch_trait_service(kind: &str) {
    let server = serve(
        &locator(kind),
        Arc::new(DispatchHandler(Upper)),
        server_cfg(),
    )
    .unwrap();
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap();
    assert_eq!(s.call(Opcode::TestCustom, b"abc", LIVE).unwrap().1, b"ABC");
    assert_eq!(
        s.call(Opcode::TestUnserved, b"abc", LIVE).unwrap().0,
        Status::UNIMPLEMENTED_REQUEST
    );
    assert_eq!(s.call(Opcode::Echo, b"abc", LIVE).unwrap().1, b"abc");
}

/// `wait` with a zero timeout polls: a reply that arrived while nobody polled the session is
/// returned. (Callers sharing one deadline among RPCs on several sessions, such as a master's
/// replication round, wait for the later ones with what is left, often nothing.)
pub fn zero_timeout_polls(kind: &str) {
    let (_server, s) = start(kind);
    // One call first: a fresh virtual link (DPDK memif) may drop frames sent before it is up,
    // and only a polling caller would resend them.
    assert_eq!(s.call(Opcode::Echo, b"up", LIVE).unwrap().1, b"up");
    let mut rpc = s.send(Opcode::Echo, b"abc").unwrap();
    thread::sleep(Duration::from_millis(200));
    let (st, r) = rpc
        .wait(Duration::ZERO)
        .expect("a reply that arrived is returned with a zero timeout");
    assert_eq!((st, r.as_slice()), (Status::OK, &b"abc"[..]));
}

macro_rules! conformance {
    ($m:ident, $kind:literal) => {
        conformance!($m, $kind, || true);
    };
    // `$ready`: whether the transport can run here (else the tests print SKIP and pass).
    ($m:ident, $kind:literal, $ready:expr) => {
        mod $m {
            fn run(test: fn(&str)) {
                if ($ready)() {
                    test($kind)
                }
            }
            #[test]
            fn echo_sizes() {
                run(super::echo_sizes)
            }
            #[test]
            fn handler_reply() {
                run(super::handler_reply)
            }
            #[test]
            fn zero_timeout_polls() {
                run(super::zero_timeout_polls)
            }
            #[test]
            fn pipelining() {
                run(super::pipelining)
            }
            #[test]
            fn pipelined_large() {
                run(super::pipelined_large)
            }
            #[test]
            fn concurrent_callers() {
                run(super::concurrent_callers)
            }
            #[test]
            fn many_servers() {
                run(super::many_servers)
            }
            #[test]
            fn many_sessions_one_server() {
                run(super::many_sessions_one_server)
            }
            #[test]
            fn deferred() {
                run(super::deferred)
            }
            #[test]
            fn deferred_longer_than_abort_timeout() {
                run(super::deferred_longer_than_abort_timeout)
            }
            #[test]
            fn timeout_then_wait_again() {
                run(super::timeout_then_wait_again)
            }
            #[test]
            fn cancellation() {
                run(super::cancellation)
            }
            #[test]
            fn server_shutdown_fails_waiters() {
                run(super::server_shutdown_fails_waiters)
            }
            #[test]
            fn unknown_opcode() {
                run(super::unknown_opcode)
            }
            #[test]
            fn oversize_rejected() {
                run(super::oversize_rejected)
            }
            #[test]
            fn handler_failures_still_answer() {
                run(super::handler_failures_still_answer)
            }
            #[test]
            fn handler_panic_ends_the_process() {
                run(super::handler_panic_ends_the_process)
            }
            #[test]
            fn dispatch_trait_service() {
                run(super::dispatch_trait_service)
            }
            #[test]
            fn poll_modes() {
                run(super::poll_modes)
            }
        }
    };
}

conformance!(loopback, "loopback");
conformance!(tcp, "tcp");
conformance!(udp, "udp");
#[cfg(feature = "verbs")]
conformance!(verbs, "infrc", super::verbs_ready);

/// The verbs suite runs where an RDMA device exists: on Soft-RoCE in the QEMU guest of
/// `scripts/rxe-guest.sh` (which names the server side with `FAASCACHE_VERBS_TEST_SERVER` and the
/// client's device with `FAASCACHE_VERBS_DEV`), or on a host with an RDMA NIC.
#[cfg(feature = "verbs")]
fn verbs_ready() -> bool {
    match faascache_transport::verbs::devices() {
        Ok(_) => true,
        Err(e) => faascache_testkit::skip_or_fail(
            "rdma",
            "conformance (verbs)",
            &format!("no RDMA device: {e} (run scripts/rxe-guest.sh to test on Soft-RoCE)"),
        ),
    }
}
#[cfg(feature = "dpdk")]
conformance!(dpdk, "dpdk");

/// A server bound to the wildcard address, reached through 127.0.0.1 (replies may come from a
/// source address other than the one the client sent to).
#[test]
fn wildcard_bound_servers() {
    for kind in ["tcp", "udp"] {
        let server = serve(
            &format!("{kind}:host=0.0.0.0,port=0").parse().unwrap(),
            test_handler(),
            server_cfg(),
        )
        .unwrap();
        let port = server.local_locator().port().unwrap();
        let s = connect(
            &format!("{kind}:host=127.0.0.1,port={port}")
                .parse()
                .unwrap(),
            ClientConfig::default(),
        )
        .unwrap();
        assert_eq!(
            s.call(Opcode::Echo, b"wild", LIVE).unwrap().1,
            b"wild",
            "{kind}"
        );
    }
}

#[test]
fn alternatives_are_tried_in_order() {
    let server = serve(&locator("tcp"), test_handler(), server_cfg()).unwrap();
    // dpdk fails (not built, or no mac= / device); the connect falls through to tcp (logged at warn) and says which it chose.
    let loc: ServiceLocator = format!("dpdk:port=0;{}", server.local_locator())
        .parse()
        .unwrap();
    let s = connect(&loc, ClientConfig::default()).unwrap();
    assert_eq!(s.transport(), TransportKind::Tcp);
    assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
    // A lone unsupported alternative is a clear error (naming the feature that builds it).
    match connect(
        &"infrc:host=a,port=1".parse().unwrap(),
        ClientConfig::default(),
    ) {
        #[cfg(not(feature = "verbs"))]
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains("infrc") && e.to_string().contains("--features verbs"))
        }
        // With the feature: no device here, or no server at `a:1`.
        #[cfg(feature = "verbs")]
        Err(e @ (Error::Device { .. } | Error::Connect { .. })) => {
            assert!(e.to_string().contains("infrc"))
        }
        other => panic!("{other:?}"),
    }
    // All alternatives failing lists every failure.
    let bad: ServiceLocator = "loopback:name=nobody-serves-this;dpdk:".parse().unwrap();
    match connect(&bad, ClientConfig::default()) {
        Err(Error::AllAlternativesFailed(v)) => assert_eq!(v.len(), 2),
        other => panic!("{other:?}"),
    }
}

/// A server serves on every alternative that starts (the first as the data plane), skips one
/// that cannot start and says why; `require_bypass` refuses a locator without a kernel-bypass
/// alternative and one whose kernel-bypass alternative fails.
#[test]
fn serve_alternatives_serves_all_that_start_and_says_why() {
    let h: Arc<dyn Handler> = Arc::new(NoHandler);
    let both: ServiceLocator = "tcp:host=127.0.0.1,port=0;udp:host=127.0.0.1,port=0"
        .parse()
        .unwrap();
    let (handles, choice) =
        serve_alternatives(&both, h.clone(), DispatchConfig::default(), false).unwrap();
    assert_eq!(handles.len(), 2);
    assert_eq!(choice.kind, TransportKind::Tcp);
    assert!(choice.reason.starts_with("first choice"), "{choice}");
    assert!(choice.reason.contains("also serving udp"), "{choice}");
    for hd in &handles {
        let s = connect(&hd.local_locator().clone().into(), ClientConfig::default()).unwrap();
        assert_eq!(s.call(Opcode::Ping, &[], LIVE).unwrap().0, Status::OK);
    }
    for hd in handles {
        hd.shutdown();
    }
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine: binding it fails.
    let first_fails: ServiceLocator = "tcp:host=192.0.2.1,port=0;tcp:host=127.0.0.1,port=0"
        .parse()
        .unwrap();
    let (handles, choice) =
        serve_alternatives(&first_fails, h.clone(), DispatchConfig::default(), false).unwrap();
    assert_eq!(handles.len(), 1);
    assert!(
        choice
            .reason
            .starts_with("fallback; failed: tcp:host=192.0.2.1"),
        "{choice}"
    );
    for hd in handles {
        hd.shutdown();
    }
    match serve_alternatives(&first_fails, h.clone(), DispatchConfig::default(), true) {
        Err(e) => assert!(e.to_string().contains("--require-bypass"), "{e}"),
        Ok(_) => panic!("require_bypass served without a kernel-bypass alternative"),
    }
    let bypass_fails: ServiceLocator = "infrc:host=192.0.2.1,port=0;tcp:host=127.0.0.1,port=0"
        .parse()
        .unwrap();
    match serve_alternatives(&bypass_fails, h, DispatchConfig::default(), true) {
        Err(e) => assert!(
            e.to_string().contains("infrc") && e.to_string().contains("--require-bypass"),
            "{e}"
        ),
        Ok(_) => panic!("require_bypass fell back to tcp"),
    }
}

/// Without the `dpdk` feature a `dpdk:` locator is refused with an error naming the feature.
#[cfg(not(feature = "dpdk"))]
#[test]
fn dpdk_without_the_feature_names_it() {
    let loc: ServiceLocator = "dpdk:vdev=memif,socket=/tmp/none.sock,mac=02:00:00:00:00:01"
        .parse()
        .unwrap();
    match connect(&loc, ClientConfig::default()) {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("features"), "{e}"),
        other => panic!("{other:?}"),
    }
    match serve(&loc, test_handler(), server_cfg()) {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("features"), "{e}"),
        other => panic!("{other:?}"),
    }
}
