//! The store down for 60 s during writes, with real processes and a PRIVATE moto S3 server
//! (its own port: the shared one other test binaries use is never touched).
//!
//! A coordinator and one server (`--write-back-limit 4MiB`) with a write-back table on the
//! private moto. Objects are written and flushed; moto is killed (SIGKILL: the store is gone,
//! connections are refused) while a writer keeps writing for 60 s: writes are acknowledged
//! until the dirty bytes reach the limit, then refused `WriteBackFull` naming the limit;
//! `status --json` shows the dirty bytes and the store's last error. moto is started again on
//! the same port; it keeps no data across restarts, so the bucket is created again and every
//! key written before the outage is rewritten during it (its last value is dirty when the
//! store returns). The queue drains (a flush succeeds) and every key's last acknowledged value
//! is in the store, read there directly.
//!
//! A second test SIGSTOPs moto for 20 s instead (a hung store; its data survives SIGCONT).
//!
//! Needs moto (`scripts/moto.sh install`): SKIP without it unless `FAASCACHE_REQUIRE` names
//! `moto`. Takes about 95 s.

mod cluster_util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions, Error};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

const BUCKET: &str = "down-test";
const OUTAGE: Duration = Duration::from_secs(60);
const LIMIT: u64 = 4 << 20;
const VALUE: usize = 16 << 10;

/// moto_server as scripts/moto.sh finds it: the venv under `$MOTO_DIR`, else `PATH`.
fn moto_bin() -> PathBuf {
    let dir = std::env::var("MOTO_DIR").unwrap_or_else(|_| "/tmp/faascache-moto".into());
    let venv = Path::new(&dir).join("venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .find(|b| b.is_file())
        })
        .expect("moto_server (checked by moto_missing)")
}

/// The status code of an unsigned request to 127.0.0.1:`port` (moto checks no signatures);
/// `None` when nothing answers.
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A private moto_server (SIGKILLed on drop).
struct Moto {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Moto {
    fn start(dir: &Path) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut m = Moto {
            child: None,
            port,
            log: dir.join("moto.log"),
        };
        m.up();
        m
    }

    /// Start it on its port, wait until it answers, create the bucket.
    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(30), || {
            http(port, "GET", "/").filter(|c| *c == 200).ok_or(format!(
                "moto on port {port} does not answer (see moto.log)"
            ))
        });
        let code = http(port, "PUT", &format!("/{BUCKET}"));
        assert!(matches!(code, Some(200 | 409)), "create bucket: {code:?}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send `sig` (`STOP`, `CONT`) to moto.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("moto runs").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn value(key: usize, seq: u64) -> Vec<u8> {
    let tag = format!("{key}:{seq}:");
    tag.bytes().cycle().take(VALUE).collect()
}

/// `faascache status --json`: this server's cache counters.
fn status_cache(coord: &str) -> serde_json::Value {
    let o = Command::new(BIN)
        .args(["status", "--json", "--coordinator", coord])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["servers"][0]["cache"].clone()
}

/// What the writer saw during the outage.
#[derive(Default)]
struct Outage {
    acked: u64,
    refused: u64,
    first_refusal: Option<String>,
    last_refusal: String,
    dirty_at_first_refusal: u64,
    slowest_ack: Duration,
}

/// Write for the whole outage: first every key of `last` again, then new keys, then cycle
/// over all keys. Records each key's last acknowledged value in `last`.
fn write_through_outage(
    c: &Client,
    table: u64,
    loc: &str,
    last: &mut BTreeMap<usize, Vec<u8>>,
    outage: Duration,
) -> Outage {
    let mut o = Outage::default();
    let start = Instant::now();
    let pre = last.len() as u64;
    let mut seq = 0u64;
    let mut next_new = last.len();
    while start.elapsed() < outage {
        let key = if seq < pre {
            seq as usize
        } else if o.refused == 0 {
            next_new += 1;
            next_new - 1
        } else {
            // Known keys (acknowledged again: they are dirty already) and a few new ones
            // (refused while the queue is full).
            (seq as usize * 7) % (next_new + 8)
        };
        let v = value(key, seq);
        let sent = Instant::now();
        match c.write(table, format!("k/{key}").as_bytes(), &v) {
            Ok(_) => {
                o.slowest_ack = o.slowest_ack.max(sent.elapsed());
                o.acked += 1;
                last.insert(key, v);
            }
            Err(Error::WriteBackFull(d)) => {
                if o.first_refusal.is_none() {
                    o.dirty_at_first_refusal = c.server_stats(loc).unwrap().cache.dirty_bytes;
                    o.first_refusal = Some(d.clone());
                }
                o.refused += 1;
                o.last_refusal = d;
            }
            Err(e) => panic!("write of k/{key} during the outage: {e}"),
        }
        seq += 1;
        if o.refused > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    o
}

/// A coordinator and a server (`--write-back-limit 4MiB`) using `moto`, a write-back table on
/// its bucket, 64 keys written and flushed.
struct Setup {
    _procs: (Proc, Proc),
    coord: String,
    loc: String,
    c: Client,
    table: u64,
    url: String,
    vars: Vec<(&'static str, String)>,
    last: BTreeMap<usize, Vec<u8>>,
}

fn setup(dir: &Path, moto: &Moto) -> Setup {
    let vars = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (cp, coord) = coordinator_tcp(dir, 0, "coordinator");
    let (sp, loc) = server_env(
        dir,
        &coord,
        "s1",
        &["--replicas", "0", "--write-back-limit", "4MiB"],
        &pairs,
    );
    let url = format!("s3://{BUCKET}/down");
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let table = c
        .create_backed_table("wb", 1, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    let mut last = BTreeMap::new();
    for k in 0..64 {
        let v = value(k, 0);
        c.write(table, format!("k/{k}").as_bytes(), &v).unwrap();
        last.insert(k, v);
    }
    c.flush(table, None, Duration::from_secs(30)).unwrap();
    Setup {
        _procs: (cp, sp),
        coord,
        loc,
        c,
        table,
        url,
        vars,
        last,
    }
}

/// The store returned: the queue drains, and every key's last acknowledged value is there.
fn drains_with_last_values(s: &Setup) {
    let back = Instant::now();
    let flushed = eventually(Duration::from_secs(150), || {
        s.c.flush(s.table, None, Duration::from_secs(60))
            .map_err(|e| format!("flush: {e}"))
    });
    eprintln!(
        "store back: the queue drained in {:.1} s (flush waited for {} objects)",
        back.elapsed().as_secs_f64(),
        flushed.objects
    );
    let stats = s.c.server_stats(&s.loc).unwrap().cache;
    assert_eq!(
        (stats.dirty_objects, stats.dirty_bytes),
        (0, 0),
        "{stats:?}"
    );
    // Writes are acknowledged again.
    s.c.write(s.table, b"k/after", b"x").unwrap();
    let settings =
        Settings::from_env_with(|n| s.vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(&s.url, &settings, &StoreOptions::default()).unwrap();
    let mut wrong = Vec::new();
    for (k, v) in &s.last {
        match store.get(&format!("k/{k}"), None).unwrap() {
            GetResult::Found { body, .. } if body.as_ref() == v.as_slice() => {}
            GetResult::Found { body, .. } => wrong.push(format!(
                "k/{k}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(16)])
            )),
            _ => wrong.push(format!("k/{k}: missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} keys lack their last acknowledged value: {:?}",
        wrong.len(),
        s.last.len(),
        &wrong[..wrong.len().min(5)]
    );
    eprintln!(
        "all {} keys hold their last acknowledged value",
        s.last.len()
    );
}

/// Refused only when the next object would not fit under the limit, naming it.
fn refused_at_the_limit(o: &Outage) {
    let d = o
        .first_refusal
        .as_deref()
        .unwrap_or_else(|| panic!("{} writes without the store, none refused", o.acked));
    eprintln!(
        "outage: {} writes acknowledged (slowest {:?}), {} refused; first refusal at {} dirty bytes: {d}",
        o.acked, o.slowest_ack, o.refused, o.dirty_at_first_refusal
    );
    assert!(
        d.contains("--write-back-limit") && d.contains(&LIMIT.to_string()),
        "{d}"
    );
    assert!(
        o.dirty_at_first_refusal + SLACK > LIMIT && o.dirty_at_first_refusal <= LIMIT,
        "refused at {} dirty bytes (limit {LIMIT})",
        o.dirty_at_first_refusal
    );
}

/// Two values' envelopes: how far below the limit a refusal may come.
const SLACK: u64 = 2 * VALUE as u64;

#[test]
fn the_store_down_for_60_s_during_writes() {
    const TEST: &str = "the_store_down_for_60_s_during_writes";
    if !faascache_testkit::require::require_or_skip(
        "moto",
        TEST,
        faascache_testkit::stores::moto_missing(),
    ) {
        return;
    }
    let dir = tempdir("backed-down");
    let mut moto = Moto::start(&dir);
    let mut s = setup(&dir, &moto);
    moto.kill();
    let o = write_through_outage(&s.c, s.table, &s.loc, &mut s.last, OUTAGE);
    refused_at_the_limit(&o);
    // By the end, the refusal names why the queue does not drain: the store's error.
    let l = &o.last_refusal;
    eprintln!("last refusal: {l}");
    assert!(
        l.contains("Connection refused") && l.contains("--write-back-limit"),
        "{l}"
    );
    let cache = status_cache(&s.coord);
    eprintln!("status --json during the outage: {cache}");
    assert!(
        cache["dirty_bytes"].as_u64().unwrap() > LIMIT - SLACK,
        "{cache}"
    );
    assert_eq!(cache["dirty_limit_bytes"].as_u64(), Some(LIMIT), "{cache}");
    assert!(!cache["last_error"].as_str().unwrap().is_empty(), "{cache}");
    // The store returns (empty: moto keeps nothing, but every key was rewritten meanwhile).
    moto.up();
    drains_with_last_values(&s);
}

/// The store hangs instead (moto SIGSTOPped for 20 s: connections are accepted, never
/// answered; uploads wait for the store client's 30 s timeout): writes are still acknowledged
/// at once up to the limit, the server keeps answering, and after SIGCONT (its data intact)
/// the queue drains.
#[test]
fn a_hung_store_stalls_no_write() {
    const TEST: &str = "a_hung_store_stalls_no_write";
    if !faascache_testkit::require::require_or_skip(
        "moto",
        TEST,
        faascache_testkit::stores::moto_missing(),
    ) {
        return;
    }
    let dir = tempdir("backed-hung");
    let moto = Moto::start(&dir);
    let mut s = setup(&dir, &moto);
    moto.signal("STOP");
    let o = write_through_outage(&s.c, s.table, &s.loc, &mut s.last, Duration::from_secs(20));
    moto.signal("CONT");
    refused_at_the_limit(&o);
    assert!(
        o.slowest_ack < Duration::from_secs(2),
        "a write-back write waited {:?} for a hung store",
        o.slowest_ack
    );
    drains_with_last_values(&s);
}
