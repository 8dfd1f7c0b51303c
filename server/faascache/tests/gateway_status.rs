//! `faascache gateway --dir D` leaves its address in `D/gateways/<port>.addr`, and
//! `faascache status --dir D` (text and `--json`) shows its counters from `/_faascache/status`;
//! `status --gateway URL` asks one gateway by hand (with `--coordinator`); a file left by a
//! gateway that is gone, or a port that never answers, is shown as not answering without
//! holding `status` up; SIGTERM removes the file.

mod cluster_util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cluster_util::*;

fn faascache(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// One request over a fresh connection; the status code and the whole answer.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (code, text)
}

fn addr_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("gateways"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn status_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let o = faascache(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn status_shows_the_gateways_counters() {
    let dir = tempdir("gw-status");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (_s1, _) = server(&dir, &coord, "s1");
    let d = dir.to_str().unwrap();
    let args = [
        "gateway",
        "--no-auth",
        "--backing",
        "none",
        "--dir",
        d,
        "--listen",
        "127.0.0.1:0",
    ];
    let mut gw = spawn("gateway", &args, &dir);
    let file = eventually(T, || match addr_files(&dir).as_slice() {
        [f] => Ok(f.clone()),
        other => Err(format!("address files: {other:?}; log: {}", gw.log_tail(5))),
    });
    let url = std::fs::read_to_string(&file).unwrap().trim().to_string();
    let addr = url.strip_prefix("http://").unwrap().to_string();
    assert!(file.ends_with(format!(
        "gateways/{}.addr",
        addr.rsplit(':').next().unwrap()
    )));

    // Three failed requests: two operations on a bucket that has no table, one unknown method.
    assert_eq!(http(&addr, "GET", "/nobucket/key").0, 404);
    assert_eq!(http(&addr, "HEAD", "/nobucket").0, 404);
    assert_eq!(http(&addr, "PATCH", "/").0, 405);
    // Its own status (not counted).
    let (code, body) = http(&addr, "GET", "/_faascache/status");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"GetObject\":1"), "{body}");

    let v = status_json(&["--dir", d]);
    let gws = v["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 1, "{v}");
    assert_eq!(gws[0]["url"], url.as_str());
    let s = &gws[0]["status"];
    assert_eq!(s["requests"]["total"], 3, "{s}");
    assert_eq!(s["requests"]["4xx"], 3, "{s}");
    assert_eq!(s["requests"]["2xx"], 0, "{s}");
    assert_eq!(s["errors"], 3, "{s}");
    assert_eq!(s["operations"]["GetObject"], 1, "{s}");
    assert_eq!(s["operations"]["HeadBucket"], 1, "{s}");
    assert_eq!(s["latency_us"]["GetObject"]["count"], 1, "{s}");
    assert_eq!(s["latency_us"]["Other"]["count"], 1, "{s}");
    assert!(s["buffer_limit"].as_u64().unwrap() > 0, "{s}");

    let o = faascache(&["status", "--dir", d]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("gateways     1"), "{text}");
    assert!(
        text.contains(&format!("gateway      {url}: up "))
            && text.contains("3 requests (2xx 0, 3xx 0, 4xx 3, 5xx 0), 3 errors"),
        "{text}"
    );
    assert!(text.contains("GetObject 1 (p50 "), "{text}");
    assert!(text.contains("hits and misses"), "{text}");

    // By hand, against a cluster given by its coordinator.
    let v = status_json(&["--coordinator", &coord, "--gateway", &url]);
    assert_eq!(v["gateways"][0]["status"]["requests"]["total"], 3, "{v}");
    assert_eq!(v["gateways"][0]["file"], serde_json::Value::Null);

    // A file of a gateway that is gone, and one of a port that accepts but never answers.
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    std::fs::write(dir.join("gateways/1.addr"), &gone_url).unwrap();
    std::fs::write(dir.join("gateways/2.addr"), &silent_url).unwrap();
    let t = Instant::now();
    let v = status_json(&["--dir", d]);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let gws = v["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 3, "{v}");
    for g in gws {
        if g["url"] == url.as_str() {
            assert_eq!(g["status"]["requests"]["total"], 3, "{g}");
        } else {
            let e = g["error"].as_str().unwrap_or_else(|| panic!("{g}"));
            assert!(e.starts_with("not answering"), "{g}");
        }
    }
    let o = faascache(&["status", "--dir", d]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "gateway      {silent_url}: not answering (timed out)"
        )),
        "{text}"
    );
    drop(silent);
    std::fs::remove_file(dir.join("gateways/1.addr")).unwrap();
    std::fs::remove_file(dir.join("gateways/2.addr")).unwrap();

    // Stopped by SIGTERM, it removes its file.
    gw.terminate();
    let exit = gw
        .wait_until(Instant::now() + T)
        .expect("the gateway did not stop");
    assert!(exit.success(), "{exit:?}");
    assert!(addr_files(&dir).is_empty(), "{:?}", addr_files(&dir));
    let v = status_json(&["--dir", d]);
    assert_eq!(v["gateways"], serde_json::json!([]));
}
