//! Keystone v3 password auth against the real Swift: no Keystone runs here, so a stand-in
//! identity endpoint on loopback checks the v3 request (user, password, project, domains) and
//! answers like Keystone — `X-Subject-Token` and a catalog whose `object-store` endpoint is the
//! real Swift — with a token it got from Swift's tempauth. Everything after the login is real.
//! The stand-in first hands out a token Swift rejects, so the client's re-login on 401 runs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{unique_prefix, Backend};
use faascache_objstore::config::SwiftSettings;
use faascache_objstore::{
    ClientOptions, Error, GetResult, ObjectStore, PutMeta, Secret, SwiftStore,
};

/// `GET url` with `headers` over a fresh connection; the answer's status and headers.
fn http_get(host_port: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>) {
    let mut s = TcpStream::connect(host_port).expect("connect to swift");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers)
}

/// Serve Keystone's `POST /v3/auth/tokens` on a loopback port: tokens from `tokens` in turn
/// (the last one repeats) for the right password, 401 for a wrong one. Returns the port and
/// the number of logins served.
fn stand_in_keystone(storage_url: String, tokens: Vec<String>) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(16) {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = Vec::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push(line);
            }
            let mut body = vec![0; len.min(1 << 16)];
            r.read_exact(&mut body).unwrap();
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let user = &req["auth"]["identity"]["password"]["user"];
            let scope = &req["auth"]["scope"]["project"];
            let ok = head[0].starts_with("POST /v3/auth/tokens ")
                && user["name"] == "alice"
                && user["password"] == "wonderland"
                && user["domain"]["name"] == "Default"
                && scope["name"] == "faas"
                && scope["domain"]["name"] == "Default";
            let answer = if ok {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let token = &tokens[n.min(tokens.len() - 1)];
                let catalog = serde_json::json!({"token": {"catalog": [
                    {"type": "identity", "endpoints": [{"interface": "public", "url": "http://x/v3", "region": "RegionOne"}]},
                    {"type": "object-store", "endpoints": [
                        {"interface": "internal", "url": "http://127.0.0.1:1/v1/wrong", "region": "RegionOne"},
                        {"interface": "public", "url": storage_url, "region": "RegionOne"}]}]}})
                .to_string();
                format!("HTTP/1.1 201 Created\r\nX-Subject-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{catalog}", catalog.len())
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, served)
}

#[test]
fn keystone_v3_login_and_relogin_against_real_swift() {
    let Some(env) = Backend::SwiftNative.env("keystone_v3") else {
        return;
    };
    let auth = env.var("ST_AUTH").trim_start_matches("http://");
    let (host_port, path) = auth.split_once('/').unwrap();
    let (status, headers) = http_get(
        host_port,
        &format!("/{path}"),
        &[
            ("X-Auth-User", env.var("ST_USER")),
            ("X-Auth-Key", env.var("ST_KEY")),
        ],
    );
    assert_eq!(status, 200, "tempauth login");
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (storage_url, token) = (find("x-storage-url"), find("x-auth-token"));
    let (port, served) = stand_in_keystone(storage_url, vec!["AUTH_tkexpired0000".into(), token]);
    let settings = |password: &str| SwiftSettings {
        auth_url: Some(format!("http://127.0.0.1:{port}/v3")),
        username: Some("alice".into()),
        password: Some(Secret::new(password)),
        project_name: Some("faas".into()),
        ..Default::default()
    };
    let container = env.var("FAASCACHE_SWIFT_CONTAINER");
    let url = format!("swift://{container}/{}", unique_prefix("keystone"))
        .parse()
        .unwrap();
    let s = SwiftStore::new(url, &settings("wonderland"), &ClientOptions::default()).unwrap();
    // The first token is rejected by Swift (401): the client logs in again and goes on.
    let put = s
        .put("k", b"via keystone".to_vec().into(), &PutMeta::default())
        .unwrap();
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "one login, one re-login after the 401"
    );
    let GetResult::Found { body, meta } = s.get("k", None).unwrap() else {
        panic!("missing")
    };
    assert_eq!((&body[..], meta.etag), (&b"via keystone"[..], put.etag));
    s.delete("k").unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 2, "the token is reused");
    // A wrong password is refused by the identity service.
    let url = format!("swift://{container}/x").parse().unwrap();
    let wrong = SwiftStore::new(url, &settings("not-it"), &ClientOptions::default()).unwrap();
    let e = wrong.check().unwrap_err();
    assert!(matches!(e, Error::BadCredentials { .. }), "{e}");
    assert!(!e.to_string().contains("not-it"), "{e}");
}
