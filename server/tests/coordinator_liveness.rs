//! Coordinator liveness (issue 15). A slow external storage (`zk:` during a connection loss) must not stall the coordinator's
//! queries (issue 15): the state is encoded under the state mutex and written after it is
//! released. Here `set` sleeps 3 s while a server enlists; heartbeats, server lists and tablet
//! maps asked meanwhile answer at once, and the enlistment itself answers only once its state
//! is stored. Before the change the transition held the state mutex across `set`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::{ServerId, Services};
use faascache_server::coordinator::external::{ExternalStorage, ExternalStorageError, Versioned};
use faascache_server::coordinator::{self, CoordinatorConfig, MemStorage};
use faascache_testkit::{check, eventually};
use faascache_transport::{call, connect, ClientConfig, DispatchConfig, PollMode, Session};

const SLOW_SET: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct SlowStorage {
    inner: MemStorage,
    slow: AtomicBool,
    /// Slow `set`s begun / finished.
    entered: AtomicUsize,
    finished: AtomicUsize,
}

impl ExternalStorage for SlowStorage {
    fn acquire_leadership(&self) -> Result<u64, ExternalStorageError> {
        self.inner.acquire_leadership()
    }
    fn get(&self, name: &str) -> Result<Option<Versioned>, ExternalStorageError> {
        self.inner.get(name)
    }
    fn set(
        &self,
        epoch: u64,
        name: &str,
        data: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, ExternalStorageError> {
        if self.slow.load(Ordering::Acquire) {
            self.entered.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(SLOW_SET);
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.set(epoch, name, data, expected)
    }
    fn remove(&self, epoch: u64, name: &str) -> Result<(), ExternalStorageError> {
        self.inner.remove(epoch, name)
    }
    fn describe(&self) -> String {
        "slow memory".into()
    }
}

const T: Duration = Duration::from_secs(10);

/// The tests count this process's threads: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn enlist(s: &Session, locator: &str) -> ServerId {
    call(
        s,
        &EnlistServerRequest {
            services: Services(1),
            locator,
            previous_id: ServerId::NONE,
        },
        T,
        |r| r.server_id,
    )
    .expect("enlists")
}

#[test]
fn queries_answer_while_the_state_is_slowly_persisted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let storage = Arc::new(SlowStorage::default());
    let coord = coordinator::start(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Box::new(storage.clone()),
        CoordinatorConfig {
            dispatch: DispatchConfig {
                cores: 1,
                pin: false,
                first_core: 0,
                poll: PollMode::Block,
                conn: Default::default(),
            },
            ..CoordinatorConfig::default()
        },
    )
    .expect("coordinator starts");
    let loc = coord.locator().clone().into();
    let s = connect(&loc, ClientConfig::default()).unwrap();
    let a = enlist(&s, "tcp:host=127.0.0.1,port=1");
    let version_before = storage
        .get("coordinator-state")
        .ok()
        .flatten()
        .map(|v| v.version);

    storage.slow.store(true, Ordering::Release);
    let slow_enlist = {
        let loc = loc.clone();
        std::thread::spawn(move || {
            let s = connect(&loc, ClientConfig::default()).unwrap();
            let start = Instant::now();
            let b = enlist(&s, "tcp:host=127.0.0.1,port=2");
            (b, start.elapsed())
        })
    };
    eventually(T, || {
        check(storage.entered.load(Ordering::SeqCst) > 0, || {
            "no slow persist began yet".into()
        })
    });
    // During the slow write: each query answers well within it.
    let mut worst = Duration::ZERO;
    let mut asked = 0;
    let until = Instant::now() + 2 * SLOW_SET;
    while storage.finished.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        let start = Instant::now();
        call(
            &s,
            &HeartbeatRequest {
                server_id: a,
                budget_bytes: 0,
            },
            T,
            |_| (),
        )
        .expect("heartbeat answered");
        let servers = call(
            &s,
            &GetServerListRequest {
                services: Services(0),
            },
            T,
            |r| r.servers.len(),
        )
        .expect("server list answered");
        call(&s, &GetTabletMapRequest { table_id: 0 }, T, |_| ()).expect("tablet map answered");
        worst = worst.max(start.elapsed());
        assert!(servers >= 1);
        asked += 1;
    }
    eprintln!("{asked} rounds of heartbeat + server list + tablet map during a {SLOW_SET:?} persist; slowest round {worst:?}");
    assert!(asked > 0);
    assert!(
        worst < Duration::from_secs(1),
        "a query waited {worst:?} for the slow persist"
    );
    // The enlistment answered only once its state was stored.
    let (b, took) = slow_enlist.join().unwrap();
    assert!(
        took >= SLOW_SET,
        "enlistment answered after {took:?}, before its state was stored"
    );
    assert_ne!(a, b);
    storage.slow.store(false, Ordering::Release);
    let after = storage.inner.get("coordinator-state").unwrap().unwrap();
    assert!(Some(after.version) > version_before);
    drop(coord);
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Crash hints for many servers that hang on pings: the checks run on a bounded pool, so the
/// coordinator's thread count stays flat (the old code spawned a thread per hint); hints beyond
/// the queue get `RETRY`, and repeated hints for a server being checked are merged.
#[test]
fn crash_hints_do_not_spawn_a_thread_each() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let storage = Arc::new(SlowStorage::default());
    let coord = coordinator::start(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Box::new(storage),
        CoordinatorConfig {
            dispatch: DispatchConfig {
                cores: 1,
                pin: false,
                first_core: 0,
                poll: PollMode::Block,
                conn: Default::default(),
            },
            ..CoordinatorConfig::default()
        },
    )
    .expect("coordinator starts");
    let loc = coord.locator().clone().into();
    let s = connect(&loc, ClientConfig::default()).unwrap();
    // Servers that accept connections (the kernel's backlog) and never answer a ping.
    let hung: Vec<std::net::TcpListener> = (0..40)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ids: Vec<ServerId> = hung
        .iter()
        .map(|l| {
            enlist(
                &s,
                &format!("tcp:host=127.0.0.1,port={}", l.local_addr().unwrap().port()),
            )
        })
        .collect();
    let base = threads_of_this_process();
    let (mut ok, mut retry) = (0, 0);
    for _ in 0..4 {
        for id in &ids {
            match call(&s, &HintServerCrashedRequest { server: *id }, T, |_| ()) {
                Ok(()) => ok += 1,
                Err(faascache_transport::CallError::Failed(f))
                    if f.status == faascache_transport::Status::RETRY =>
                {
                    retry += 1
                }
                Err(e) => panic!("hint refused: {e}"),
            }
        }
    }
    let during = threads_of_this_process();
    eprintln!("160 hints for 40 hung servers: {ok} taken, {retry} RETRY; threads {base} before, {during} after sending");
    assert_eq!(ok + retry, 160);
    assert!(
        during <= base + coordinator::service::HINT_THREADS + 2,
        "crash hints started threads: {base} before, {during} after"
    );
    // Every hung server is found dead in the end (hints are not lost while merged).
    eventually(Duration::from_secs(60), || {
        let up = call(
            &s,
            &GetServerListRequest {
                services: Services(0),
            },
            T,
            |r| {
                r.servers
                    .iter()
                    .filter(|e| e.status == ServerStatus::Up)
                    .count()
            },
        )
        .expect("server list");
        check(up == 0, || format!("{up} hung servers still up"))
    });
    drop(coord);
}
