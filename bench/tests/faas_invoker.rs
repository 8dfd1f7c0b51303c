//! The invoker against a minimal action proxy (`tests/fixtures/echo_proxy.py`): cold then warm
//! starts, keep-alive expiry, the bound per function, action errors, and an OOM kill detected
//! in a real memory cgroup when this machine has one the test can write to.

use std::path::PathBuf;
use std::time::Duration;

use faascache_bench::faas::cgroup::{Cgroups, Kind};
use faascache_bench::faas::invoker::{Invoker, PoolConfig};
use faascache_bench::faas::sandbox::{Action, Runtime};
use serde_json::json;

const ECHO: &str = "def main(args):\n    return {'echo': args, 'ok': True}\n";
const FAIL: &str = "def main(args):\n    raise ValueError('boom')\n";
const HOG: &str = "def main(args):\n    b = bytearray(args['mb'] << 20)\n    for i in range(0, len(b), 4096):\n        b[i] = 1\n    return {'n': len(b)}\n";

fn runtime(dir: &tempfile::TempDir) -> Option<Runtime> {
    let python = ["python3", "/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            std::process::Command::new(p)
                .arg("-c")
                .arg("pass")
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

fn action(name: &str, code: &str, mb: u64) -> Action {
    Action {
        name: name.into(),
        code: code.into(),
        memory: mb << 20,
    }
}

#[test]
fn cold_warm_keep_alive_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rt) = runtime(&dir) else {
        eprintln!("SKIP: no python3");
        return;
    };
    let cfg = PoolConfig {
        keep_alive: Duration::from_millis(600),
        max_per_function: 1,
        acquire_timeout: Duration::from_secs(30),
    };
    let inv = Invoker::new(
        rt,
        Cgroups::disabled("test"),
        vec![action("echo", ECHO, 256), action("fail", FAIL, 256)],
        cfg,
    );
    let a = inv.invoke("echo", &json!({"x": 1})).unwrap();
    assert!(a.cold.is_some());
    assert_eq!(a.result["echo"]["x"], 1);
    let b = inv.invoke("echo", &json!({"x": 2})).unwrap();
    assert!(b.cold.is_none(), "second run is warm");
    assert_eq!(a.sandbox, b.sandbox);
    std::thread::sleep(Duration::from_millis(1200));
    let c = inv.invoke("echo", &json!({})).unwrap();
    assert!(c.cold.is_some(), "the idle sandbox expired");
    let e = inv.invoke("fail", &json!({})).unwrap_err().to_string();
    assert!(e.contains("boom") && e.contains("502"), "{e}");
    // An action error keeps the sandbox: the next run is warm.
    assert!(inv.invoke("fail", &json!({})).is_err());
    let st = inv.stats();
    assert_eq!((st.cold_starts, st.warm_starts), (3, 2), "{st:?}");
    assert!(st.expired >= 1);
    assert!(inv.invoke("nope", &json!({})).is_err());
}

#[test]
fn oom_kill_is_detected_in_a_real_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let Some(rt) = runtime(&dir) else {
        eprintln!("SKIP: no python3");
        return;
    };
    let cg = Cgroups::detect(std::path::Path::new("/sys/fs/cgroup"));
    if cg.kind == Kind::None {
        eprintln!("SKIP: {}", cg.note);
        return;
    }
    let cfg = PoolConfig {
        keep_alive: Duration::from_secs(60),
        max_per_function: 2,
        acquire_timeout: Duration::from_secs(30),
    };
    let inv = Invoker::new(rt, cg, vec![action("hog", HOG, 64)], cfg);
    let ok = inv.invoke("hog", &json!({"mb": 8})).unwrap();
    assert_eq!(ok.result["n"], 8 << 20);
    let e = inv
        .invoke("hog", &json!({"mb": 200}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("OOM"), "{e}");
    assert_eq!(inv.stats().oom_kills, 1);
    // The pool recovers: a new sandbox is started cold.
    let again = inv.invoke("hog", &json!({"mb": 4})).unwrap();
    assert!(again.cold.is_some());
}
