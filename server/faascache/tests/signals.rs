//! SIGTERM ends the daemons promptly at every stage, with real processes (issue 15):
//!
//! * a server still enlisting — its coordinator locator leads nowhere and `--enlist-timeout` is
//!   long — exits within 2 s saying what it was doing (it used to ignore the signal until the
//!   enlist timeout ran out);
//! * a server starting with as much `--memory` as the machine takes (up to 16 GiB, to stay kind
//!   to a shared machine) exits within 2 s of a SIGTERM sent as its start-up begins;
//! * a serving server and coordinator exit within 2 s;
//! * `faascache cluster up` interrupted while its servers start stops them and exits;
//! * `faascache demo` interrupted during its workload stops its cluster and says so;
//! * a second SIGTERM during a serving server's shutdown ends it at once (status 1).

mod cluster_util;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_launch::pid::alive;
use faascache_launch::Launch;

/// How soon a daemon must exit after SIGTERM.
const PROMPT: Duration = Duration::from_secs(2);

/// A `faascache` process with debug logs of the server's start-up.
fn launch(dir: &Path, name: &str, args: &[&str]) -> Proc {
    Launch::new(name, BIN, dir.join(format!("{name}.log")))
        .args(args)
        .envs([
            ("RUST_LOG", "info,faascache_server::node=debug"),
            ("NO_COLOR", "1"),
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn log(p: &Proc) -> String {
    std::fs::read_to_string(p.log()).unwrap_or_default()
}

/// Wait until `p`'s log contains `what` (failing if it exits first).
fn wait_log(p: &mut Proc, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !log(p).contains(what) {
        if let Some(st) = p.exited() {
            panic!(
                "{} exited ({st}) before logging {what:?}:\n{}",
                p.name(),
                log(p)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not log {what:?} within {timeout:?}:\n{}",
            p.name(),
            log(p)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM `p`; it must exit successfully within [`PROMPT`]. Returns how long it took.
fn terminate_promptly(p: &mut Proc) -> Duration {
    let t = Instant::now();
    p.terminate();
    let st = p.wait_until(t + PROMPT);
    let took = t.elapsed();
    let Some(st) = st else {
        panic!(
            "{} still runs {PROMPT:?} after SIGTERM; its log:\n{}",
            p.name(),
            log(p)
        );
    };
    assert!(st.success(), "{} exited with {st}:\n{}", p.name(), log(p));
    took
}

/// A TCP locator where nothing listens.
fn dead_locator() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("tcp:host=127.0.0.1,port={port}")
}

fn server_args<'a>(coord: &'a str, memory: &'a str) -> Vec<&'a str> {
    vec![
        "server",
        "--coordinator",
        coord,
        "--memory",
        memory,
        "--replicas",
        "0",
        "--poll",
        "block",
        "--no-pin",
        "--listen",
        "tcp:host=127.0.0.1,port=0",
        "--enlist-timeout",
        "120s",
    ]
}

#[test]
fn server_waiting_to_enlist_exits_on_sigterm() {
    let dir = tempdir("sig-enlist");
    let coord = dead_locator();
    let mut p = launch(dir.path(), "server", &server_args(&coord, "48MiB"));
    wait_log(&mut p, "coordinator not reachable yet", T);
    let took = terminate_promptly(&mut p);
    eprintln!("enlisting server exited {took:?} after SIGTERM");
    let l = log(&p);
    assert!(
        l.contains("terminated by a signal while starting") && l.contains("enlisting with"),
        "{l}"
    );
}

/// The largest `--memory` the server's start-up check accepts here (from its refusal of 1 TiB),
/// in GiB, at most `cap`.
fn largest_memory_gib(dir: &Path, cap: u64) -> u64 {
    let mut p = launch(dir, "probe", &server_args(&dead_locator(), "1TiB"));
    let st = p
        .wait_until(Instant::now() + T)
        .expect("the 1 TiB probe exits");
    assert!(!st.success());
    let l = log(&p);
    let at_most = l
        .split("at most ")
        .nth(1)
        .and_then(|r| r.split(" GiB").next())
        .and_then(|g| g.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no limit in the refusal: {l}"));
    (at_most.floor() as u64).clamp(1, cap)
}

#[test]
fn server_with_large_memory_exits_on_sigterm_during_start_up() {
    let dir = tempdir("sig-memory");
    let gib = largest_memory_gib(dir.path(), 16);
    let memory = format!("{gib}GiB");
    let coord = dead_locator();
    let mut p = launch(dir.path(), "server", &server_args(&coord, &memory));
    wait_log(&mut p, "starting", T);
    let took = terminate_promptly(&mut p);
    let l = log(&p);
    eprintln!(
        "--memory {memory}: exited {took:?} after SIGTERM (enlisting had begun: {})",
        l.contains("coordinator not reachable yet")
    );
    assert!(
        l.contains("terminated by a signal while starting (reserving"),
        "{l}"
    );
}

#[test]
fn serving_server_and_coordinator_exit_on_sigterm() {
    let dir = tempdir("sig-serving");
    let (mut coord, cloc) = coordinator_tcp(dir.path(), 0, "coordinator");
    let (mut server, _) = server(dir.path(), &cloc, "server");
    let took = terminate_promptly(&mut server);
    eprintln!("serving server exited {took:?} after SIGTERM");
    let took = terminate_promptly(&mut coord);
    eprintln!("coordinator exited {took:?} after SIGTERM");
}

#[test]
fn cluster_up_interrupted_while_starting_stops_its_servers() {
    let dir = tempdir("sig-cluster");
    let cdir = dir.path().join("cluster");
    let gib = largest_memory_gib(dir.path(), 8);
    let memory = format!("{gib}GiB");
    let cdirs = cdir.to_str().unwrap();
    let mut up = launch(
        dir.path(),
        "up",
        &[
            "cluster",
            "up",
            "--servers",
            "2",
            "--memory",
            &memory,
            "--dir",
            cdirs,
            "--timeout",
            "120",
        ],
    );
    // Both servers started (processes spawned), the cluster not yet up.
    wait_log(&mut up, "server-2.log", T);
    let pids: Vec<u32> = std::fs::read_dir(cdir.join("pids"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect();
    assert_eq!(pids.len(), 3, "coordinator and two servers");
    let took = terminate_promptly(&mut up);
    eprintln!("cluster up exited {took:?} after SIGTERM");
    let l = log(&up);
    assert!(l.contains("while the cluster was starting"), "{l}");
    for pid in pids {
        assert!(!alive(pid), "child {pid} still runs");
    }
}

#[test]
fn demo_interrupted_during_its_workload_stops_its_cluster() {
    let dir = tempdir("sig-demo");
    let ddir = dir.path().join("demo");
    let ddirs = ddir.to_str().unwrap();
    // Enough objects that the workload is still running when the signal comes.
    let mut demo = launch(
        dir.path(),
        "demo",
        &[
            "demo",
            "--servers",
            "2",
            "--objects",
            "5000000",
            "--dir",
            ddirs,
        ],
    );
    wait_log(&mut demo, "running the workload", T);
    let pids: Vec<u32> = std::fs::read_dir(ddir.join("pids"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect();
    assert_eq!(pids.len(), 3, "coordinator and two servers");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    demo.terminate();
    // The cluster's stop gives each child up to 5 s after its SIGTERM.
    let st = demo
        .wait_until(t + Duration::from_secs(15))
        .unwrap_or_else(|| panic!("demo still runs 15 s after SIGTERM:\n{}", log(&demo)));
    eprintln!("demo exited ({st}) {:?} after SIGTERM", t.elapsed());
    let l = log(&demo);
    assert!(!st.success(), "an interrupted demo reports it:\n{l}");
    assert!(
        l.contains("terminated by a signal during the workload"),
        "{l}"
    );
    for pid in pids {
        assert!(!alive(pid), "child {pid} still runs after the demo ended");
    }
}

#[test]
fn a_second_signal_cuts_a_serving_servers_shutdown_short() {
    let dir = tempdir("sig-second");
    let (_coord, cloc) = coordinator_tcp(dir.path(), 0, "coordinator");
    // The shutdown of a serving server takes ~0.5 s (it leaves the cluster): a second SIGTERM
    // 20 ms after the first lands in it. Should a shutdown ever finish first, try again.
    for attempt in 0..3 {
        let (mut server, _) = server(dir.path(), &cloc, &format!("server-{attempt}"));
        let pid = server.pid();
        let t = Instant::now();
        faascache_launch::pid::signal(pid, faascache_launch::pid::Sig::Term);
        std::thread::sleep(Duration::from_millis(20));
        faascache_launch::pid::signal(pid, faascache_launch::pid::Sig::Term);
        let st = server
            .wait_until(t + PROMPT)
            .unwrap_or_else(|| panic!("server still runs after two SIGTERMs:\n{}", log(&server)));
        let l = log(&server);
        if st.success() && !l.contains("second termination signal") {
            eprintln!("attempt {attempt}: the shutdown ended within 20 ms; again");
            continue;
        }
        assert_eq!(st.code(), Some(1), "forced exit status:\n{l}");
        assert!(
            l.contains("a second termination signal during the shutdown: exiting at once"),
            "{l}"
        );
        eprintln!("forced exit {:?} after the first SIGTERM", t.elapsed());
        return;
    }
    panic!("three shutdowns each ended within 20 ms: no second signal could cut one short");
}
