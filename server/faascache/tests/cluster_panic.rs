//! A panic in a master's request handler ends the server process, and the cluster recovers its
//! tablets as for any crashed master (issue 15). Real processes on 127.0.0.1; the panic is
//! injected with `FAASCACHE_TEST_PANIC_ON_WRITE` on one server: its `Write` handler panics on
//! the key `boom` after the engine has applied the write (as a bug between the log append and the
//! hash-table insert would). The transport used to catch the panic, answer `INTERNAL_ERROR` and
//! serve on from that state; now the process aborts.

mod cluster_util;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions};

/// SIGABRT on Linux.
const SIGABRT: i32 = 6;

fn client(coord: &str) -> Client {
    Client::connect_with(
        coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .expect("client connects")
}

/// A replicating server; `env` goes to its process.
fn replicating(dir: &std::path::Path, coord: &str, name: &str, env: &[(&str, &str)]) -> Proc {
    server_env(dir, coord, name, &["--replicas", "1"], env).0
}

#[test]
fn handler_panic_ends_the_master_and_its_tablets_are_recovered() {
    let dir = tempdir("handler-panic");
    let (_coord, cloc) =
        coordinator_with(dir.path(), 0, "coordinator", &["--heartbeat-timeout", "2s"]);
    // The victim first, alone: the table's tablets all go to it.
    let mut victim = replicating(
        dir.path(),
        &cloc,
        "victim",
        &[("FAASCACHE_TEST_PANIC_ON_WRITE", "boom")],
    );
    let c = client(&cloc);
    let t = c.create_table("t", 2).unwrap();
    let victim_loc = std::fs::read_to_string(dir.path().join("victim.locator")).unwrap();
    let mut raw = Raw::new(&cloc);
    assert!(raw.tablets(t).iter().all(|x| x.2 == victim_loc.trim()));
    // Backups for its replicas, and the masters that take its tablets over.
    let _s2 = replicating(dir.path(), &cloc, "server-2", &[]);
    let _s3 = replicating(dir.path(), &cloc, "server-3", &[]);
    let mut acked = Vec::new();
    for i in 0..100 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        let version = c.write(t, k.as_bytes(), v.as_bytes()).expect("write");
        acked.push((k, v, version));
    }

    // The write of `boom` panics the victim's handler: the process must end (SIGABRT), not
    // answer and serve on.
    let boom = {
        let cloc = cloc.clone();
        std::thread::spawn(move || client(&cloc).write(t, b"boom", b"x"))
    };
    let died = victim.wait_until(Instant::now() + T);
    let log = std::fs::read_to_string(victim.log()).unwrap_or_default();
    let Some(status) = died else {
        panic!("the victim survived its handler's panic; its log:\n{log}");
    };
    assert_eq!(status.signal(), Some(SIGABRT), "{status}: {log}");
    assert!(
        log.contains("injected panic") && log.contains("aborting the process"),
        "the log says what panicked and that the process aborts:\n{log}"
    );

    // Recovery: every acknowledged write reads back from the new owners.
    let start = Instant::now();
    for (k, v, version) in &acked {
        let o = c.read(t, k.as_bytes()).expect("read after recovery");
        assert_eq!(
            (&o.value, o.version),
            (&v.clone().into_bytes(), *version),
            "{k}"
        );
    }
    eprintln!(
        "all {} writes read back {:?} after the abort",
        acked.len(),
        start.elapsed()
    );
    let tablets = raw.tablets(t);
    assert!(
        !tablets.is_empty() && tablets.iter().all(|x| x.2 != victim_loc.trim()),
        "the victim's tablets moved: {tablets:?}"
    );
    // The client's write of `boom` ends one way or the other (the new master has no fault),
    // and the table takes writes again.
    let r = boom.join().unwrap();
    eprintln!("the write of boom ended with {r:?}");
    c.write(t, b"after", b"recovery")
        .expect("write after recovery");
    assert_eq!(c.read(t, b"after").unwrap().value, b"recovery");
}
