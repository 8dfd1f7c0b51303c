//! Coordinator high availability on a real ZooKeeper (a private server from Debian's package;
//! SKIP when it is not installed): two `faascache coordinator --storage zk:...` processes (one
//! leads, one waits), two servers and a `faascache-client` all given `--coordinator zk:...`.
//! The leader is killed with SIGKILL; the standby takes over (the time is measured and printed),
//! the servers keep heartbeating to it, and the client goes on with the same locator. Then it
//! happens once more the other way round, and finally a leader stopped with SIGTERM hands over
//! at once.

mod cluster_util;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use faascache_transport::CoordinatorLocator;
use faascache_zk::ZkSession;

/// Heartbeat timeout of the coordinators: short, so that a server that failed to find the new
/// leader would be marked crashed within the test.
const HEARTBEAT_TIMEOUT: &str = "3s";

fn coordinator_zk(dir: &Path, zk: &str, tag: &str) -> Proc {
    let lf = dir.join(format!("{tag}.locator"));
    let _ = std::fs::remove_file(&lf);
    spawn(
        tag,
        &[
            "coordinator",
            "--listen",
            "tcp:host=127.0.0.1,port=0",
            "--storage",
            zk,
            "--heartbeat-timeout",
            HEARTBEAT_TIMEOUT,
            "--poll",
            "block",
            "--locator-file",
            lf.to_str().unwrap(),
        ],
        dir,
    )
}

/// Wait until `n` coordinators are candidates in the election (`/faascache-ha/election`).
fn wait_candidates(raw: &ZkSession, n: usize) {
    eventually(T, || {
        let c = raw
            .get_children("/faascache-ha/election", false)
            .map_err(|e| faascache_testkit::wait::Unmet(e.to_string()))?;
        faascache_testkit::check(c.len() == n, || format!("election candidates: {c:?}"))
    });
}

/// Wait until ZooKeeper names `want` as the leader; returns when it did.
fn wait_leader(coord: &CoordinatorLocator, want: &str, timeout: Duration) -> Instant {
    eventually(timeout, || match coord.resolve() {
        Ok(l) if l.to_string() == want => Ok(Instant::now()),
        Ok(l) => Err(format!("ZooKeeper names {l} as leader, not {want}")),
        Err(e) => Err(format!("no leader named {want}: {e}")),
    })
}

fn check_all(client: &Client, table: u64, n: usize, what: &str) {
    for i in 0..n {
        let o = client
            .read(table, format!("key{i}").as_bytes())
            .unwrap_or_else(|e| panic!("{what}: read key{i}: {e}"));
        assert_eq!(o.value, format!("value{i}").as_bytes(), "{what}: key{i}");
    }
}

fn servers_up(client: &Client) -> usize {
    client
        .servers()
        .unwrap()
        .iter()
        .filter(|s| s.status == "up")
        .count()
}

/// One failover: kill `leader`, wait for `standby` to publish itself; returns the takeover time.
fn fail_over(
    dir: &Path,
    zk: &CoordinatorLocator,
    leader: &mut Proc,
    standby: &mut Proc,
    standby_tag: &str,
) -> (Duration, String) {
    let killed = Instant::now();
    leader.kill(); // SIGKILL: no goodbye to ZooKeeper, its session has to expire
    let loc = wait_up(
        standby,
        &dir.join(format!("{standby_tag}.locator")),
        Duration::from_secs(60),
    );
    let published = wait_leader(zk, &loc, Duration::from_secs(60));
    (published - killed, loc)
}

#[test]
fn standby_coordinator_takes_over_and_clients_and_servers_follow() {
    let Some(zk) = faascache_testkit::zk::ZkServer::start("cluster_zk") else {
        return;
    };
    let raw = ZkSession::connect(&zk.address().parse().unwrap(), T).unwrap();
    let dir = tempdir("zk-ha");
    let zk_addr = zk.address_in("faascache-ha");
    let coord: CoordinatorLocator = zk_addr.parse().unwrap();

    // Coordinator A leads; B, started after it, waits.
    let mut a = coordinator_zk(&dir, &zk_addr, "coord-a");
    let a_loc = wait_up(&mut a, &dir.join("coord-a.locator"), T);
    wait_leader(&coord, &a_loc, T);
    let mut b = coordinator_zk(&dir, &zk_addr, "coord-b");
    wait_candidates(&raw, 2); // B is in the election, behind A

    // Servers and the client find the leader through ZooKeeper.
    let _s1 = server(&dir, &zk_addr, "server-1");
    let _s2 = server(&dir, &zk_addr, "server-2");
    let client = Client::connect_with(
        &zk_addr,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(client.coordinator(), zk_addr);
    let t = client.create_table("ha", 2).unwrap();
    for i in 0..200 {
        client
            .write(
                t,
                format!("key{i}").as_bytes(),
                format!("value{i}").as_bytes(),
            )
            .unwrap();
    }
    check_all(&client, t, 200, "before failover");
    assert_eq!(servers_up(&client), 2);
    continually(Duration::from_secs(1), || {
        faascache_testkit::check(!dir.join("coord-b.locator").exists(), || {
            "the standby must not serve while A leads".into()
        })
    });

    // Kill A. While nobody leads, data operations go on (masters serve with the cached map).
    let killed = Instant::now();
    a.kill();
    check_all(&client, t, 200, "while no coordinator leads");
    let b_loc = wait_up(
        &mut b,
        &dir.join("coord-b.locator"),
        Duration::from_secs(60),
    );
    let published = wait_leader(&coord, &b_loc, Duration::from_secs(60));
    let takeover = published - killed;
    println!("takeover 1 (A killed -> B published in ZooKeeper): {takeover:?}");
    assert_ne!(a_loc, b_loc);

    // The client continues with the same zk: locator: reads, writes, a coordinator operation.
    check_all(&client, t, 200, "after failover");
    for i in 200..300 {
        client
            .write(
                t,
                format!("key{i}").as_bytes(),
                format!("value{i}").as_bytes(),
            )
            .unwrap();
    }
    check_all(&client, t, 300, "after failover, new writes");
    let t2 = client.create_table("after-failover", 2).unwrap();
    assert_ne!(t2, t);
    assert_eq!(client.table_id("ha").unwrap(), t, "B recovered A's tables");
    client.write(t2, b"k", b"v").unwrap();

    // The servers heartbeat to B: once both reached it, they stay up past B's heartbeat
    // timeout.
    for s in ["server-1", "server-2"] {
        eventually(Duration::from_secs(30), || {
            let log = std::fs::read_to_string(dir.join(format!("{s}.log"))).unwrap();
            faascache_testkit::check(
                log.contains("coordinator reachable again") || log.contains("re-enlisted"),
                || format!("{s} did not report reaching the new coordinator:\n{log}"),
            )
        });
    }
    eventually(Duration::from_secs(30), || {
        faascache_testkit::check(servers_up(&client) == 2, || {
            "servers did not come back to B".into()
        })
    });
    continually(Duration::from_secs(4), || {
        faascache_testkit::check(servers_up(&client) == 2, || {
            "a server stopped heartbeating".into()
        })
    });

    // A comes back as a standby; B dies; A takes over again.
    let mut a2 = coordinator_zk(&dir, &zk_addr, "coord-a2");
    wait_candidates(&raw, 2); // A2 is in the election, behind B
    let (takeover2, a2_loc) = fail_over(&dir, &coord, &mut b, &mut a2, "coord-a2");
    println!("takeover 2 (B killed -> A2 published in ZooKeeper): {takeover2:?}");
    check_all(&client, t, 300, "after the second failover");
    client.write(t2, b"k2", b"v2").unwrap();
    assert_eq!(client.read(t2, b"k").unwrap().value, b"v");
    assert_eq!(client.list_tables().unwrap().len(), 2);
    eventually(Duration::from_secs(30), || {
        faascache_testkit::check(servers_up(&client) >= 2, || {
            "servers did not come back to A2".into()
        })
    });
    assert_eq!(coord.resolve().unwrap().to_string(), a2_loc);

    // A graceful stop (SIGTERM) ends the leader's ZooKeeper session at once: no session timeout
    // to wait for. B2 waits behind A2.
    let mut b2 = coordinator_zk(&dir, &zk_addr, "coord-b2");
    wait_candidates(&raw, 2); // B2 is in the election, behind A2
    let stopped = Instant::now();
    a2.terminate();
    let b2_loc = wait_up(
        &mut b2,
        &dir.join("coord-b2.locator"),
        Duration::from_secs(60),
    );
    let takeover3 = wait_leader(&coord, &b2_loc, Duration::from_secs(60)) - stopped;
    println!("takeover 3 (A2 stopped with SIGTERM -> B2 published in ZooKeeper): {takeover3:?}");
    check_all(&client, t, 300, "after the graceful handover");
    assert_eq!(client.read(t2, b"k2").unwrap().value, b"v2");
    a2.kill();
}
