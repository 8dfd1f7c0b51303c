//! The agent's HTTP API in process, over real TCP: the good path (create with a synchronous
//! shrink, start, finish, destroy, status) and every kind of bad input, each answered with a
//! clear 4xx and leaving `/v1/status` exactly as it was.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use faascache_agent::memory::NodeSource;
use faascache_agent::{
    Agent, AgentConfig, Amount, ApiConfig, BookedModel, FakeResizer, PolicyConfig, Resizer,
};
use serde_json::Value;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A shared fake cache (the agent owns a box of it; the test keeps a handle).
#[derive(Debug, Clone)]
struct Shared(Arc<FakeResizer>);

impl Resizer for Shared {
    fn budget(&self) -> Result<u64, faascache_agent::AgentError> {
        self.0.budget()
    }
    fn resize(&self, bytes: u64) -> Result<u64, faascache_agent::AgentError> {
        self.0.resize(bytes)
    }
}

struct Fixture {
    addr: SocketAddr,
    cache: Arc<FakeResizer>,
    _dir: faascache_testkit::TestDir,
}

/// An agent on a fake 10 GiB node (1 GiB used besides the cache), a 6 GiB fake cache, at most
/// `max_sandboxes` sandboxes, growth held back (settle 1 h) so that only events resize.
fn start(max_sandboxes: usize) -> Fixture {
    let dir = faascache_testkit::tempdir("agent-api");
    let meminfo = dir.join("meminfo");
    std::fs::write(
        &meminfo,
        format!(
            "MemTotal: {} kB\nMemFree: 0 kB\nMemAvailable: {} kB\n",
            10 * GIB / 1024,
            3 * GIB / 1024
        ),
    )
    .unwrap();
    let cache = Arc::new(FakeResizer::new(6 * GIB));
    let cfg = AgentConfig {
        policy: PolicyConfig {
            reserve: Amount::Bytes(0),
            settle: Duration::from_secs(3600),
            ..PolicyConfig::default()
        },
        max_sandboxes,
        cgroup_root: dir.to_path_buf(),
        ..AgentConfig::default()
    };
    let agent = Arc::new(Agent::new(
        cfg,
        NodeSource::Proc { meminfo },
        Box::new(Shared(cache.clone())),
        Box::new(BookedModel),
    ));
    let (tx, rx) = std::sync::mpsc::channel();
    let api = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ApiConfig::default()
    };
    std::thread::spawn(move || {
        faascache_agent::serve(agent, api, |a| tx.send(a).unwrap()).unwrap();
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Fixture {
        addr,
        cache,
        _dir: dir,
    }
}

/// Send one raw request; returns the status and the JSON body.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let req = match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    };
    raw(addr, req.as_bytes())
}

/// `/v1/status` without the parts that move with time alone.
fn status(addr: SocketAddr) -> Value {
    let (code, mut v) = call(addr, "GET", "/v1/status", None);
    assert_eq!(code, 200);
    v.as_object_mut().unwrap().remove("uptime_ms");
    v["plan"].as_object_mut().unwrap().remove("growing_for_ms");
    v
}

fn create_body(id: &str, booked: u64) -> String {
    format!(
        r#"{{"id":"{id}","function":"guest/resize","booked_bytes":{booked},"features":{{"input_bytes":4096}}}}"#
    )
}

#[test]
fn events_reserve_memory_and_a_create_shrinks_before_it_is_answered() {
    let f = start(100);
    let (code, v) = call(f.addr, "GET", "/healthz", None);
    assert_eq!((code, &v["ok"]), (200, &Value::Bool(true)));
    // 10 GiB node, 1 GiB used besides the 6 GiB cache: a 2 GiB sandbox fits (target 7 GiB).
    let (code, v) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("s1", 2 * GIB)),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["reserved_bytes"], 2 * GIB);
    assert_eq!(v["resize"], Value::Null);
    assert!(f.cache.calls().is_empty());
    // A 3 GiB one does not (target 4 GiB): the answer comes after the shrink.
    let (code, v) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("s2", 3 * GIB)),
    );
    assert_eq!(code, 201, "{v}");
    let slack = Amount::Percent(2.0).of(10 * GIB);
    assert_eq!(v["resize"]["to_bytes"], 4 * GIB - slack, "{v}");
    assert_eq!(v["resize"]["reason"], "predicted");
    assert_eq!(v["resize"]["trigger"], "created s2");
    assert_eq!(f.cache.budget().unwrap(), 4 * GIB - slack);
    let st = status(f.addr);
    assert_eq!(st["shrink_latency_us"]["count"], 1, "{st}");
    assert_eq!(st["cache"]["budget_bytes"], 4 * GIB - slack);
    assert_eq!(st["counts"]["sandboxes"], 2);
    // An invocation: start, finish with its peak, destroy.
    let (code, v) = call(f.addr, "POST", "/v1/sandboxes/s1/start", None);
    assert_eq!((code, &v["phase"]), (200, &Value::from("running")), "{v}");
    let (code, v) = call(
        f.addr,
        "POST",
        "/v1/sandboxes/s1/finish",
        Some(r#"{"peak_bytes":104857600}"#),
    );
    assert_eq!(
        (code, &v["peak_bytes"]),
        (200, &Value::from(100 * MIB)),
        "{v}"
    );
    let (code, v) = call(f.addr, "GET", "/v1/sandboxes/s1", None);
    assert_eq!(code, 200);
    assert_eq!(v["phase"], "idle");
    assert_eq!(v["reserved_bytes"], 100 * MIB, "idle: its last peak");
    let (code, _) = call(f.addr, "DELETE", "/v1/sandboxes/s1", None);
    assert_eq!(code, 200);
    assert_eq!(status(f.addr)["counts"]["sandboxes"], 1);
}

#[test]
fn a_refused_shrink_is_shown_not_fatal() {
    let f = start(100);
    f.cache.refuse_below(5 * GIB);
    let (code, v) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("big", 4 * GIB)),
    );
    assert_eq!(
        code, 201,
        "the sandbox is registered whatever the cache says: {v}"
    );
    assert!(
        v["resize"]["error"]
            .as_str()
            .unwrap()
            .contains("below the server's minimum"),
        "{v}"
    );
    let st = status(f.addr);
    assert_eq!(st["counts"]["refusals"], 1);
    assert!(st["last_refusal"]["error"].is_string(), "{st}");
    assert_eq!(st["counts"]["sandboxes"], 1);
}

/// (method, path, content type, body, expected status, expected text in the error).
type Case = (
    &'static str,
    String,
    &'static str,
    String,
    u16,
    &'static str,
);

/// Every kind of bad request, against an agent that has one sandbox, "live", created and not
/// started. One line per case (hence no rustfmt).
#[rustfmt::skip]
fn bad_cases() -> Vec<Case> {
    let j = "application/json";
    let s = |x: &str| x.to_string();
    let sb = "/v1/sandboxes".to_string();
    let n0 = create_body("n", 0);
    let big = format!(r#"{{"id":"x","function":"f","booked_bytes":1,"pad":"{}"}}"#, "a".repeat(70_000));
    vec![
        ("POST", sb.clone(), j, s("{"), 400, "not valid JSON"),
        ("POST", sb.clone(), j, s(r#"{"id":"a","function":"f","booked_bytes":1"#), 400, "not valid JSON"),
        ("POST", sb.clone(), j, s("[]"), 400, "JSON object"),
        ("POST", sb.clone(), j, s(""), 400, "no body"),
        ("POST", sb.clone(), j, n0.replace(":0,", ":-1,"), 422, "negative"),
        ("POST", sb.clone(), j, n0.clone(), 422, "it is 0"),
        ("POST", sb.clone(), j, create_body("n", (1 << 40) + 1), 422, "larger than 1 TiB"),
        ("POST", sb.clone(), j, n0.replace(":0,", ":1e30,"), 422, "larger than 1 TiB"),
        ("POST", sb.clone(), j, n0.replace(":0,", ":99999999999999999999999999,"), 422, "larger than 1 TiB"),
        ("POST", sb.clone(), j, n0.replace(":0,", ":2.5,"), 422, "fraction"),
        ("POST", sb.clone(), j, s(r#"{"id":"n","function":"f","booked_bytes":1,"features":{"w":"wide"}}"#), 422, "finite number"),
        ("POST", sb.clone(), j, s(r#"{"id":"n","function":"f","booked_bytes":1,"cgroup":"/etc"}"#), 422, "not under"),
        ("POST", sb.clone(), j, s(r#"{"id":"n","function":"f","booked_bytes":1,"mem":1}"#), 422, "unknown field"),
        ("POST", sb.clone(), j, s(r#"{"id":"bad id","function":"f","booked_bytes":1}"#), 422, "contains ' '"),
        ("POST", sb.clone(), j, create_body("live", GIB), 409, "already exists"),
        ("POST", sb.clone(), "text/plain", create_body("n", GIB), 415, "application/json"),
        ("POST", sb.clone(), j, big, 413, "larger than 65536 bytes"),
        ("POST", s("/v1/sandboxes/ghost/start"), j, s(""), 404, "no sandbox \"ghost\""),
        ("POST", s("/v1/sandboxes/ghost/finish"), j, s(r#"{"peak_bytes":5}"#), 404, "no sandbox"),
        ("DELETE", s("/v1/sandboxes/ghost"), j, s(""), 404, "no sandbox"),
        ("GET", s("/v1/sandboxes/ghost"), j, s(""), 404, "no sandbox"),
        ("POST", s("/v1/sandboxes/live/finish"), j, s(""), 409, "not running"),
        ("POST", s("/v1/sandboxes/live/finish"), j, s(r#"{"peak_bytes":-1}"#), 422, "negative"),
        ("POST", s("/v1/sandboxes/live/start"), j, s(r#"{"features":5}"#), 422, "features must be an object"),
        ("POST", s("/v1/sandboxes/live/stop"), j, s(""), 404, "no action"),
        ("POST", s("/v1/sandboxes/live"), j, s(""), 405, "use GET or DELETE"),
        ("PUT", sb.clone(), j, s("{}"), 405, "use POST"),
        ("GET", s("/v2/anything"), j, s(""), 404, "no such endpoint"),
        ("DELETE", s("/v1/sandboxes/a%20b"), j, s(""), 422, "contains '%'"),
        ("DELETE", format!("/v1/sandboxes/{}", "a".repeat(200)), j, s(""), 422, "1 to 128 bytes"),
    ]
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let f = start(2);
    let (code, _) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("live", GIB)),
    );
    assert_eq!(code, 201);
    let cases = bad_cases();
    let before = status(f.addr);
    for (method, path, ct, body, code, text) in &cases {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (got, v) = raw(f.addr, req.as_bytes());
        let short: String = body.chars().take(80).collect();
        assert_eq!(got, *code, "{method} {path} {short}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {v}"));
        assert!(
            msg.contains(text),
            "{method} {path} {short}: {msg:?} lacks {text:?}"
        );
        assert_eq!(
            status(f.addr),
            before,
            "{method} {path} {short} changed the state"
        );
    }
    // The bound: one more sandbox fits, the next is refused and changes nothing.
    let (code, _) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("second", MIB)),
    );
    assert_eq!(code, 201);
    let before = status(f.addr);
    let (code, v) = call(
        f.addr,
        "POST",
        "/v1/sandboxes",
        Some(&create_body("third", MIB)),
    );
    assert_eq!(code, 429, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--max-sandboxes"),
        "{v}"
    );
    assert_eq!(status(f.addr), before);
    // A running sandbox cannot start again.
    assert_eq!(
        call(f.addr, "POST", "/v1/sandboxes/live/start", None).0,
        200
    );
    let before = status(f.addr);
    let (code, v) = call(f.addr, "POST", "/v1/sandboxes/live/start", None);
    assert_eq!(code, 409, "{v}");
    assert_eq!(status(f.addr), before);
    // Garbage that is not HTTP: the connection is closed, the agent lives on.
    let mut s = TcpStream::connect(f.addr).unwrap();
    s.write_all(b"\x00\x01 not http\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert_eq!(status(f.addr), before);
}
