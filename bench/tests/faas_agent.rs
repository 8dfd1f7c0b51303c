//! `--faas-agent`'s events: the invoker against the minimal action proxy
//! (`tests/fixtures/echo_proxy.py`) with a tiny HTTP listener standing in for `faascache agent`.
//! One sandbox's events arrive in order — created, then start/finish per run, then DELETE
//! when its keep-alive expires — with the bodies the agent's API takes; an agent that refuses
//! events or is down fails no invocation, and its errors are counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faascache_bench::faas::agent::AgentLink;
use faascache_bench::faas::cgroup::{Cgroups, Kind};
use faascache_bench::faas::invoker::{Invoker, PoolConfig};
use faascache_bench::faas::sandbox::{Action, Runtime};
use serde_json::{json, Value};

const ECHO: &str = "def main(args):\n    return {'echo': args, 'ok': True}\n";

/// A test that cannot run here: a failure under CI=true, else a note.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and this test cannot run: {why}"
    );
    eprintln!("SKIP: {why}");
}

fn runtime(dir: &tempfile::TempDir) -> Option<Runtime> {
    let python = ["python3", "/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "pass"])
                .status()
                .is_ok_and(|s| s.success())
        })?;
    Some(Runtime {
        python,
        proxy: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo_proxy.py"),
        log_dir: dir.path().to_path_buf(),
        timeout: Duration::from_secs(20),
    })
}

/// One request the fake agent received: method, path, JSON body (None when empty).
type Seen = (String, String, Option<Value>);

/// A fake agent on 127.0.0.1: records every request and answers `answer(method, path)` with
/// a small JSON body (one request per connection: `Connection: close`).
fn fake_agent(answer: fn(&str, &str) -> u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            if let Some(req) = serve(conn, answer) {
                log.lock().unwrap().push(req);
            }
        }
    });
    (url, seen)
}

fn serve(conn: TcpStream, answer: fn(&str, &str) -> u16) -> Option<Seen> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len.min(1 << 20)];
    r.read_exact(&mut body).ok()?;
    let code = answer(&method, &path);
    let reply = if code < 300 {
        r#"{"ok": true}"#
    } else {
        r#"{"error": "refused by the test"}"#
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )
    .ok()?;
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap_or(Value::Null));
    Some((method, path, body))
}

fn ok(method: &str, _path: &str) -> u16 {
    if method == "POST" {
        201
    } else {
        200
    }
}

fn invoker(rt: Runtime, cgroups: Cgroups, keep_alive: Duration) -> Invoker {
    let cfg = PoolConfig {
        keep_alive,
        max_per_function: 1,
        acquire_timeout: Duration::from_secs(30),
    };
    let action = Action {
        name: "echo".into(),
        code: ECHO.into(),
        memory: 256 << 20,
    };
    Invoker::new(rt, cgroups, vec![action], cfg)
}

/// Waits (10 s at most) until the fake agent has seen `n` requests.
fn wait_for(seen: &Mutex<Vec<Seen>>, n: usize) -> Vec<Seen> {
    let t = Instant::now();
    loop {
        let v = seen.lock().unwrap().clone();
        if v.len() >= n || t.elapsed() > Duration::from_secs(10) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two runs of one sandbox, then its keep-alive expiry, with `cgroups`; the requests seen.
fn one_sandbox(rt: Runtime, cgroups: Cgroups) -> (Vec<Seen>, Arc<AgentLink>, String) {
    let (url, seen) = fake_agent(ok);
    let link = Arc::new(AgentLink::new(&url).unwrap());
    let inv = invoker(rt, cgroups, Duration::from_millis(400));
    inv.set_agent(Some(link.clone()));
    let f = [("input_bytes", 16384.0)];
    let a = inv.invoke_with("echo", &json!({"x": 1}), &f).unwrap();
    assert!(a.cold.is_some());
    let b = inv
        .invoke_with("echo", &json!({"x": 2}), &[("input_bytes", 1.0)])
        .unwrap();
    assert!(b.cold.is_none() && a.sandbox == b.sandbox);
    assert_eq!(b.result["echo"]["x"], 2);
    let seen = wait_for(&seen, 6);
    // The DELETE came from the keep-alive's expiry, not from dropping the invoker.
    assert_eq!(inv.stats().expired, 1, "{seen:?}");
    (seen, link, a.sandbox)
}

#[test]
fn one_sandbox_created_start_finish_then_delete_on_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rt) = runtime(&dir) else {
        return skip("no python3");
    };
    let (seen, link, id) = one_sandbox(rt, Cgroups::disabled("test"));
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    let sb = format!("/v1/sandboxes/{id}");
    let (start, finish) = (format!("{sb}/start"), format!("{sb}/finish"));
    assert_eq!(
        calls,
        [
            ("POST", "/v1/sandboxes"),
            ("POST", start.as_str()),
            ("POST", finish.as_str()),
            ("POST", start.as_str()),
            ("POST", finish.as_str()),
            ("DELETE", sb.as_str()),
        ]
    );
    assert_eq!(
        seen[0].2,
        Some(
            json!({"id": id, "function": "echo", "booked_bytes": 256u64 << 20,
                    "features": {"input_bytes": 16384.0}})
        )
    );
    assert_eq!(
        seen[1].2,
        Some(json!({"features": {"input_bytes": 16384.0}}))
    );
    assert_eq!(seen[3].2, Some(json!({"features": {"input_bytes": 1.0}})));
    // No cgroup, no peak: the agent measures.
    assert_eq!((&seen[2].2, &seen[4].2, &seen[5].2), (&None, &None, &None));
    let c = link.counts();
    assert_eq!(
        (c.created, c.started, c.finished, c.destroyed, c.failed),
        (1, 2, 2, 1, 0)
    );
    assert_eq!(link.first_error(), None);
}

#[test]
fn in_a_real_cgroup_the_agent_gets_its_path_and_the_runs_peak() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rt) = runtime(&dir) else {
        return skip("no python3");
    };
    let cg = Cgroups::detect(std::path::Path::new("/sys/fs/cgroup"));
    if cg.kind == Kind::None {
        return skip(&cg.note);
    }
    let parent = cg.parent.clone();
    let kind = cg.kind;
    let (seen, link, id) = one_sandbox(rt, cg);
    assert_eq!(seen.len(), 6, "{seen:?}");
    let created = seen[0].2.as_ref().unwrap();
    assert_eq!(
        created["cgroup"],
        json!(parent.join(&id).display().to_string())
    );
    let finish = &seen[2].2;
    if kind == Kind::V1 {
        // A python process's peak: well above 1 MiB, below the 256 MiB limit.
        let peak = finish.as_ref().unwrap()["peak_bytes"].as_u64().unwrap();
        assert!((1 << 20..256 << 20).contains(&peak), "{peak}");
    } else {
        assert_eq!(finish, &None, "v2: the agent measures");
    }
    assert_eq!(seen[5].0, "DELETE");
    assert_eq!(link.counts().failed, 0);
}

#[test]
fn an_agent_that_refuses_or_is_down_fails_no_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rt) = runtime(&dir) else {
        return skip("no python3");
    };
    // Refuses `start` (as a 409 would): the runs succeed, each refusal is counted.
    fn no_start(m: &str, p: &str) -> u16 {
        if p.ends_with("/start") {
            409
        } else {
            ok(m, p)
        }
    }
    let (url, seen) = fake_agent(no_start);
    let link = Arc::new(AgentLink::new(&url).unwrap());
    let inv = invoker(
        rt.clone(),
        Cgroups::disabled("test"),
        Duration::from_secs(60),
    );
    inv.set_agent(Some(link.clone()));
    for i in 0..3 {
        let r = inv.invoke_with("echo", &json!({"i": i}), &[]).unwrap();
        assert_eq!(r.result["echo"]["i"], i);
    }
    drop(inv);
    let c = link.counts();
    assert_eq!(
        (c.created, c.started, c.finished, c.destroyed, c.failed),
        (1, 0, 3, 1, 3)
    );
    assert!(
        link.first_error()
            .unwrap()
            .contains("HTTP 409: refused by the test"),
        "{:?}",
        link.first_error()
    );
    assert_eq!(wait_for(&seen, 8).len(), 8);

    // Down: `created` fails, the sandbox is not the agent's, nothing more is sent.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = Arc::new(AgentLink::new(&format!("http://127.0.0.1:{port}")).unwrap());
    let inv = invoker(rt, Cgroups::disabled("test"), Duration::from_secs(60));
    inv.set_agent(Some(down.clone()));
    let t = Instant::now();
    for _ in 0..2 {
        assert_eq!(
            inv.invoke_with("echo", &json!({}), &[]).unwrap().result["ok"],
            true
        );
    }
    drop(inv);
    assert!(t.elapsed() < Duration::from_secs(15));
    let c = down.counts();
    assert_eq!((c.sent(), c.failed), (0, 1), "{c:?}");
}
