//! Object stores for tests: OpenStack Swift (`scripts/swift.sh`: tempauth + s3api on one
//! proxy) and moto's S3 server (`scripts/moto.sh`), started through the project's scripts
//! once per test binary and left running for the next one (the scripts' `start` is a no-op
//! when they are up; `scripts/{swift,moto}.sh stop` stops them).
//!
//! A test calls [`swift`] or [`moto`]: `None` (after a printed SKIP) when the store is not
//! installed, or a panic when `FAASCACHE_REQUIRE` names it (`swift`, `moto`); a store that is
//! installed but does not start always fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variables a store's `env` command printed (`ST_AUTH`, `FAASCACHE_MOTO_ENDPOINT`, ...).
#[derive(Debug, Clone)]
pub struct StoreEnv {
    vars: BTreeMap<String, String>,
}

impl StoreEnv {
    /// The value of `name`; panics naming the script if it did not print it.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("the store script printed no {name} (see its `env`)"))
    }
}

/// The repository's `scripts/` directory.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Why Swift cannot run here, if it cannot.
pub fn swift_missing() -> Option<String> {
    for bin in [
        "/usr/bin/swift-proxy-server",
        "/usr/bin/swift-object-server",
    ] {
        if !Path::new(bin).is_file() {
            return Some(format!(
                "Swift is not installed ({bin} missing): run scripts/swift.sh install"
            ));
        }
    }
    for bin in ["memcached", "curl"] {
        if !on_path(bin) {
            return Some(format!(
                "{bin} is not on PATH: run scripts/swift.sh install"
            ));
        }
    }
    None
}

/// Why moto cannot run here, if it cannot.
pub fn moto_missing() -> Option<String> {
    let dir = std::env::var("MOTO_DIR").unwrap_or_else(|_| "/tmp/faascache-moto".into());
    if Path::new(&dir).join("venv/bin/moto_server").is_file() || on_path("moto_server") {
        return None;
    }
    Some("moto is not installed (no moto_server): run scripts/moto.sh install".into())
}

/// Why a store script's `start` failed (its output).
#[derive(Debug)]
pub struct StartFailed(String);

impl std::fmt::Display for StartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn run_script(script: &str) -> Result<StoreEnv, StartFailed> {
    let path = scripts_dir().join(script);
    let out = Command::new("bash")
        .arg(&path)
        .arg("start")
        .output()
        .map_err(|e| StartFailed(format!("cannot run {}: {e}", path.display())))?;
    if !out.status.success() {
        return Err(StartFailed(format!(
            "{} start failed ({}):\n{}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let out = Command::new("bash")
        .arg(&path)
        .arg("env")
        .output()
        .map_err(|e| StartFailed(format!("cannot run {} env: {e}", path.display())))?;
    let vars = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(StoreEnv { vars })
}

fn get(
    part: &str,
    test: &str,
    missing: Option<String>,
    cell: &'static OnceLock<Result<StoreEnv, StartFailed>>,
    script: &str,
) -> Option<&'static StoreEnv> {
    if !crate::require::require_or_skip(part, test, missing) {
        return None;
    }
    match cell.get_or_init(|| run_script(script)) {
        Ok(env) => Some(env),
        Err(e) => panic!("{test}: {part} is installed but did not start: {e}"),
    }
}

/// Swift, started if needed (see the module documentation).
pub fn swift(test: &str) -> Option<&'static StoreEnv> {
    static CELL: OnceLock<Result<StoreEnv, StartFailed>> = OnceLock::new();
    get("swift", test, swift_missing(), &CELL, "swift.sh")
}

/// moto, started if needed (see the module documentation).
pub fn moto(test: &str) -> Option<&'static StoreEnv> {
    static CELL: OnceLock<Result<StoreEnv, StartFailed>> = OnceLock::new();
    get("moto", test, moto_missing(), &CELL, "moto.sh")
}
