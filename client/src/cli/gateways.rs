//! The gateways `status` shows: those a cluster directory names (`DIR/gateways/<port>.addr`,
//! written by `faascache gateway --dir DIR`) or those given with `--gateway URL`, each asked
//! for `GET /_faascache/status` over a tiny HTTP/1.1 client (std only: bounded answer, one
//! deadline). A leaf: it names nothing else of the CLI, and returns lines and JSON.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The directory of a cluster directory where running gateways leave their address.
///
/// ```
/// assert_eq!(faascache_client::cli::GATEWAYS_DIR, "gateways");
/// ```
pub const GATEWAYS_DIR: &str = "gateways";

/// How long a gateway found in a cluster directory may take to answer (a file left by a
/// killed gateway must not hold `status` up).
pub const DIR_TIMEOUT: Duration = Duration::from_millis(500);

/// The most bytes of a status answer read.
const MAX_ANSWER: usize = 1 << 20;

/// The path a gateway serves its counters on.
const STATUS_PATH: &str = "/_faascache/status";

/// One gateway and what it answered.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// `http://HOST:PORT`.
    pub url: String,
    /// The address file it was found through (`None`: given with `--gateway`).
    pub file: Option<PathBuf>,
    /// Its status JSON, or why there is none.
    pub answer: Result<Value, GatewayError>,
}

/// Why a gateway's status could not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The address does not parse.
    #[error("bad gateway address {0:?}: use http://HOST:PORT")]
    BadUrl(String),
    /// Nothing answered in time.
    #[error("not answering ({0})")]
    NotAnswering(String),
    /// Something answered, but not a gateway's status.
    #[error("not a gateway's status answer ({0})")]
    BadAnswer(String),
    /// The address file cannot be read.
    #[error("cannot read {0}")]
    File(String),
}

/// A gateway to ask: the file it was found in (if any), its URL or why there is none.
type Found = (Option<PathBuf>, Result<String, GatewayError>);

/// The gateways to show: `explicit` ones (`--gateway`, waited for up to `timeout`), else those
/// named in `dir/gateways` (each waited for at most [`DIR_TIMEOUT`]); asked in parallel.
pub(crate) fn collect(dir: Option<&Path>, explicit: &[String], timeout: Duration) -> Vec<Gateway> {
    let (found, wait): (Vec<Found>, _) = if explicit.is_empty() {
        (
            dir.map(discover).unwrap_or_default(),
            timeout.min(DIR_TIMEOUT),
        )
    } else {
        let urls = explicit.iter().map(|u| (None, Ok(u.clone()))).collect();
        (urls, timeout)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = found
            .into_iter()
            .map(|(file, url)| {
                s.spawn(move || match url {
                    Ok(url) => Gateway {
                        answer: query(&url, wait),
                        url,
                        file,
                    },
                    Err(e) => Gateway {
                        url: String::new(),
                        file,
                        answer: Err(e),
                    },
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// The address files of `dir/gateways`, in name order.
fn discover(dir: &Path) -> Vec<Found> {
    let Ok(rd) = std::fs::read_dir(dir.join(GATEWAYS_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "addr"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let url = std::fs::read_to_string(&f)
                .map(|s| s.trim().to_string())
                .map_err(|e| GatewayError::File(format!("{}: {e}", f.display())));
            (Some(f), url)
        })
        .collect()
}

/// `HOST:PORT` of `http://HOST:PORT[/...]` (or of a bare `HOST:PORT`; port 80 if none).
fn authority(url: &str) -> Result<String, GatewayError> {
    let bad = || GatewayError::BadUrl(url.to_string());
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(bad()),
        None => url,
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        return Err(bad());
    }
    // A port after the host (`]` ends an IPv6 literal).
    let has_port = host.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|c| c.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    Ok(if has_port {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// `GET /_faascache/status` of the gateway at `url`, within `timeout` in all.
pub(crate) fn query(url: &str, timeout: Duration) -> Result<Value, GatewayError> {
    let host = authority(url)?;
    let deadline = Instant::now() + timeout;
    let no = |e: std::io::Error| GatewayError::NotAnswering(e.to_string());
    let addrs: Vec<_> = host.to_socket_addrs().map_err(no)?.collect();
    let mut last = GatewayError::NotAnswering(format!("{host} resolves to no address"));
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = no(e),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_write_timeout(Some(left(deadline)?)).map_err(no)?;
    let req =
        format!("GET {STATUS_PATH} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(no)?;
    let raw = read_answer(&mut s, deadline)?;
    let body = parse_answer(&raw)?;
    serde_json::from_slice(&body).map_err(|e| GatewayError::BadAnswer(format!("JSON: {e}")))
}

/// The time left before `deadline`, or "timed out".
fn left(deadline: Instant) -> Result<Duration, GatewayError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(GatewayError::NotAnswering("timed out".into()));
    }
    Ok(d)
}

/// Read the answer until the end of its body (by its length), the connection's end, the
/// deadline, or [`MAX_ANSWER`] bytes.
fn read_answer(s: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, GatewayError> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left(deadline)?))
            .map_err(|e| GatewayError::NotAnswering(e.to_string()))?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(GatewayError::NotAnswering("timed out".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(GatewayError::NotAnswering(e.to_string())),
        };
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_ANSWER {
            return Err(GatewayError::BadAnswer(format!(
                "more than {MAX_ANSWER} bytes"
            )));
        }
        if complete(&raw) {
            return Ok(raw);
        }
    }
}

/// Whether `raw` holds a whole answer with a `Content-Length`.
fn complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    header(head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

fn split_head(raw: &[u8]) -> Option<(&str, &[u8])> {
    let i = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((std::str::from_utf8(&raw[..i]).ok()?, &raw[i + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The body of a `200` answer (by `Content-Length`, chunked, or up to the end).
fn parse_answer(raw: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let bad = |m: &str| GatewayError::BadAnswer(m.to_string());
    if raw.is_empty() {
        return Err(GatewayError::NotAnswering(
            "the connection closed without an answer".into(),
        ));
    }
    let (head, body) = split_head(raw).ok_or_else(|| bad("no complete HTTP header"))?;
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(bad(&format!("{status:?} to GET {STATUS_PATH}")));
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).ok_or_else(|| bad("broken chunked body"));
    }
    match header(head, "content-length") {
        Some(v) => {
            let n: usize = v.parse().map_err(|_| bad("bad Content-Length"))?;
            body.get(..n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad("the body ended early"))
        }
        None => Ok(body.to_vec()),
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..i]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// `status --json`: one object per gateway.
pub(crate) fn to_json(gws: &[Gateway]) -> Value {
    gws.iter()
        .map(|g| {
            let mut v = json!({ "url": g.url, "file": g.file });
            match &g.answer {
                Ok(s) => v["status"] = s.clone(),
                Err(e) => v["error"] = json!(e.to_string()),
            }
            v
        })
        .collect()
}

/// `status` text: a few lines per gateway, then where hits and misses are counted.
pub(crate) fn text(gws: &[Gateway]) -> Vec<String> {
    if gws.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!("gateways     {}", gws.len())];
    for g in gws {
        let name = if g.url.is_empty() { "?" } else { &g.url };
        match &g.answer {
            Ok(s) => {
                out.push(format!("gateway      {name}: {}", summary(s)));
                let ops = operations(s);
                if !ops.is_empty() {
                    out.push(format!("gateway      {name} operations: {ops}"));
                }
            }
            Err(e) => {
                let file = g
                    .file
                    .as_ref()
                    .map(|f| {
                        format!(
                            " (from {}; a gateway that ended without removing it leaves it)",
                            f.display()
                        )
                    })
                    .unwrap_or_default();
                out.push(format!("gateway      {name}: {e}{file}"));
            }
        }
    }
    out.push("gateway      hits and misses: the gateway cannot tell whether an object came from the cache or the store; the masters count them (the \"cache\" lines, `status --json` servers[].cache)".into());
    out
}

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn summary(s: &Value) -> String {
    let r = |c: &str| num(s, &["requests", c]);
    format!(
        "up {}s; {} requests (2xx {}, 3xx {}, 4xx {}, 5xx {}), {} errors; in {}, out {}; buffered {} of {}; {} direct store writes",
        num(s, &["uptime_s"]),
        r("total"),
        r("2xx"),
        r("3xx"),
        r("4xx"),
        r("5xx"),
        num(s, &["errors"]),
        bytes(num(s, &["bytes_in"])),
        bytes(num(s, &["bytes_out"])),
        bytes(num(s, &["buffered_bytes"])),
        bytes(num(s, &["buffer_limit"])),
        num(s, &["direct_puts"]),
    )
}

/// `Op N (p50 .., p99 ..)` for each operation counted, and requests of no operation.
fn operations(s: &Value) -> String {
    let empty = serde_json::Map::new();
    let counts = s
        .get("operations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let lat = s
        .get("latency_us")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut names: Vec<&String> = counts.keys().chain(lat.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|op| {
            let n = counts
                .get(op)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| num(s, &["latency_us", op, "count"]));
            match lat.get(op) {
                Some(l) => format!(
                    "{op} {n} (p50 {}, p99 {})",
                    micros(num(l, &["p50"])),
                    micros(num(l, &["p99"]))
                ),
                None => format!("{op} {n}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            authority("http://127.0.0.1:9100").unwrap(),
            "127.0.0.1:9100"
        );
        assert_eq!(authority("http://h:1/x/y").unwrap(), "h:1");
        assert_eq!(authority("127.0.0.1:9100").unwrap(), "127.0.0.1:9100");
        assert_eq!(authority("http://gw").unwrap(), "gw:80");
        assert_eq!(authority("http://[::1]:9100/").unwrap(), "[::1]:9100");
        assert_eq!(authority("[::1]").unwrap(), "[::1]:80");
        for bad in ["https://h:1", "http://", "", "http://u@h:1", "ftp://h"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n";
        assert_eq!(parse_answer(ok).unwrap(), b"{\"a\":1}\n");
        assert!(complete(ok));
        assert!(!complete(&ok[..ok.len() - 1]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), b"{\"a\":1}");
        let to_end = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_answer(to_end).unwrap(), b"{}");
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_silent_or_absent_gateway_is_not_answering() {
        // Accepted by the kernel (backlog), never answered.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = Instant::now();
        let e = query(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, GatewayError::NotAnswering(_)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(l);
        let e = query(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, GatewayError::NotAnswering(_)), "{e}");
    }

    #[test]
    fn text_of_a_status() {
        let s = json!({
            "uptime_s": 3, "requests": {"total": 3, "2xx": 1, "4xx": 2},
            "latency_us": {"GetObject": {"count": 2, "p50": 800, "p99": 1500}, "Other": {"count": 1, "p50": 5, "p99": 5}},
            "operations": {"GetObject": 2}, "errors": 2, "bytes_in": 0, "bytes_out": 2048,
            "buffered_bytes": 0, "buffer_limit": 1u64 << 30, "direct_puts": 0,
        });
        let gws = [
            Gateway {
                url: "http://a:1".into(),
                file: None,
                answer: Ok(s),
            },
            Gateway {
                url: "http://b:2".into(),
                file: Some("d/gateways/2.addr".into()),
                answer: Err(GatewayError::NotAnswering("timed out".into())),
            },
        ];
        let t = text(&gws).join("\n");
        assert!(t.contains("3 requests (2xx 1, 3xx 0, 4xx 2, 5xx 0), 2 errors; in 0 B, out 2.0 KiB; buffered 0 B of 1.0 GiB"), "{t}");
        assert!(
            t.contains("GetObject 2 (p50 800 µs, p99 1.5 ms), Other 1 (p50 5 µs, p99 5 µs)"),
            "{t}"
        );
        assert!(
            t.contains("http://b:2: not answering (timed out) (from d/gateways/2.addr"),
            "{t}"
        );
        let j = to_json(&gws);
        assert_eq!(j[0]["status"]["errors"], 2);
        assert_eq!(j[1]["file"], "d/gateways/2.addr");
        assert!(j[1]["error"].as_str().unwrap().contains("not answering"));
        assert!(text(&[]).is_empty());
    }
}
