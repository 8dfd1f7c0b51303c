//! Backed tables from the command line, with real processes: `table create --backing`,
//! `table list`, argument errors of `table create`, `flush` and `invalidate`, the cache
//! counters in `status --json`, and the servers' `--store-config` start-up errors.
//!
//! The masters' FlushObjects / InvalidateObjects handlers are not tested here (their own
//! tests are); these tests check what the coordinator, the client and the CLI do.

mod cluster_util;

use std::process::{Command, Output};

use cluster_util::*;

fn faascache(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn backed_tables_from_the_cli() {
    let dir = tempdir("cli-backed");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (_s1, _) = server(&dir, &coord, "s1");
    let c = ["--coordinator", coord.as_str()];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&c);
        faascache(&all)
    };

    // The servers have no S3 credentials: a server checks the backing before the table is
    // created, and the create fails saying so.
    let o = run(&["table", "create", "photos", "--backing", "s3://bucket/p"]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}{err}");
    assert!(err.contains("no S3 credentials"), "{err}");
    // Without the check (credentials may come later), it is created.
    let o = run(&[
        "table",
        "create",
        "photos",
        "--backing",
        "s3://bucket/p",
        "--span",
        "2",
        "--no-check",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("backing s3://bucket/p, write-back"), "{out}");
    // Again with the same backing: the same table; with another: refused, naming the backing.
    let o = run(&[
        "table",
        "create",
        "photos",
        "--backing",
        "s3://bucket/p",
        "--json",
        "--no-check",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["id"], 1);
    let o = run(&["table", "create", "photos", "--backing", "swift://c"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("exists with backing s3://bucket/p (write-back)"),
        "{err}"
    );
    let o = run(&["table", "create", "photos"]);
    assert!(text(&o).1.contains("exists with backing s3://bucket/p"));

    let o = run(&[
        "table",
        "create",
        "tmp",
        "--policy",
        "ephemeral",
        "--ttl",
        "10m",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    run(&["table", "create", "plain"]);
    let o = run(&["table", "list"]);
    let (out, _) = text(&o);
    assert!(out.contains("BACKING") && out.contains("POLICY"), "{out}");
    let line = |name: &str| out.lines().find(|l| l.contains(name)).unwrap().to_string();
    assert!(line("photos").contains("s3://bucket/p") && line("photos").contains("write-back"));
    assert!(line("tmp").contains("(none)") && line("tmp").contains("ephemeral"));
    assert!(line("plain").ends_with('-'), "{}", line("plain"));
    let o = run(&["table", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let photos = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "photos")
        .unwrap();
    assert_eq!(
        (photos["backing"].as_str(), photos["tablets"].as_u64()),
        (Some("s3://bucket/p"), Some(2))
    );

    // Argument errors: clear, exit 1 (or clap's 2), and nothing created.
    for (args, want) in [
        (
            &["table", "create", "x", "--backing", "gs://b"][..],
            "unsupported backing",
        ),
        (
            &["table", "create", "x", "--backing", "s3://b", "--ttl", "1m"],
            "--policy ephemeral",
        ),
        (
            &["table", "create", "x", "--policy", "write-through"],
            "needs a store",
        ),
        (
            &["table", "create", "x", "--policy", "lazy"],
            "write-back, write-through or ephemeral",
        ),
        (
            &[
                "table",
                "create",
                "x",
                "--admit-max",
                "lots",
                "--backing",
                "s3://b",
            ],
            "bad size",
        ),
        (&["invalidate", "photos"], "give a KEY or --prefix P"),
        (
            &["invalidate", "photos", "k", "--prefix", "p"],
            "cannot be used with",
        ),
    ] {
        let o = run(args);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{args:?}: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!text(&run(&["table", "list"])).0.contains(" x "));
    // Flush and invalidate of a table that does not exist: exit 2.
    for args in [&["flush", "nope"][..], &["invalidate", "nope", "k"]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
    }

    status_has_cache_counters(&run(&["status", "--json"]));

    // Dropping the table forgets its backing: the name can take another.
    assert!(run(&["table", "drop", "photos"]).status.success());
    let o = run(&[
        "table",
        "create",
        "photos",
        "--backing",
        "swift://c",
        "--no-check",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// `status --json`: every up server has its cache counters.
fn status_has_cache_counters(o: &std::process::Output) {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["servers"][0];
    assert!(s["cache"]["dirty_bytes"].is_u64(), "{s}");
    assert!(s["cache"]["last_error"].is_string(), "{s}");
}

#[test]
fn a_bad_store_config_stops_the_server_at_start() {
    let dir = tempdir("store-config");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let base = [
        "server",
        "--coordinator",
        coord.as_str(),
        "--memory",
        "48MiB",
        "--replicas",
        "0",
        "--poll",
        "block",
        "--no-pin",
    ];
    let missing = dir.join("missing.toml");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[s3]\nsecret_access_key = \"SEKRIT\"\nregion = [oops\n",
    )
    .unwrap();
    let start = |extra: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(base)
            .args(extra)
            .env_remove("FAASCACHE_STORE_CONFIG");
        if let Some(f) = env {
            cmd.env("FAASCACHE_STORE_CONFIG", f);
        }
        cmd.output().unwrap()
    };
    for (extra, env, want) in [
        (
            vec!["--store-config", missing.to_str().unwrap()],
            None,
            "--store-config",
        ),
        (
            vec!["--store-config", bad.to_str().unwrap()],
            None,
            "bad.toml",
        ),
        (
            vec![],
            Some(missing.to_str().unwrap()),
            "FAASCACHE_STORE_CONFIG",
        ),
        (vec!["--write-back-limit", "0"], None, "--write-back-limit"),
    ] {
        let o = start(&extra, env);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{extra:?} started: {out}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains("SEKRIT"), "a secret in an error: {err}");
    }
    // A good file (and a write-back limit) start a server.
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[s3]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (_s, loc) = server_with(
        &dir,
        &coord,
        "s1",
        &[
            "--replicas",
            "0",
            "--store-config",
            good.to_str().unwrap(),
            "--write-back-limit",
            "8MiB",
        ],
    );
    assert!(loc.starts_with("tcp:"), "{loc}");
}

/// On drop (also when the test fails): `cluster down`.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["cluster", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

#[test]
fn cluster_up_passes_the_store_settings_to_its_servers() {
    let dir = tempdir("up-store");
    let cdir = dir.join("cluster");
    let d = cdir.to_str().unwrap();
    let _down = Down(cdir.clone());
    // A missing file: refused before anything starts.
    let missing = dir.join("missing.toml");
    let base = [
        "cluster",
        "up",
        "--dir",
        d,
        "--servers",
        "1",
        "--memory",
        "48MiB",
        "--poll",
        "block",
    ];
    let mut args = base.to_vec();
    args.extend(["--store-config", missing.to_str().unwrap()]);
    let o = faascache(&args);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("cannot find --store-config"),
        "{err}"
    );
    assert!(!cdir.join("coordinator.locator").exists());

    let good = dir.join("store.toml");
    std::fs::write(&good, "[s3]\nregion = \"us-east-1\"\n").unwrap();
    let mut args = base.to_vec();
    args.extend([
        "--store-config",
        good.to_str().unwrap(),
        "--write-back-limit",
        "8MiB",
    ]);
    let mut up = faascache_launch::Launch::new("up", BIN, dir.join("up.log"))
        .args(&args)
        .envs([("AWS_ACCESS_KEY_ID", "inherited-by-servers")])
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    wait_up(&mut up, &cdir.join("coordinator.locator"), T);
    let pid = std::fs::read_to_string(cdir.join("pids").join("server-1.pid")).unwrap();
    let proc_file = |f: &str| {
        let b = std::fs::read(format!("/proc/{}/{f}", pid.trim())).unwrap();
        String::from_utf8_lossy(&b).replace('\0', " ")
    };
    let cmdline = proc_file("cmdline");
    let abs = std::fs::canonicalize(&good).unwrap();
    assert!(
        cmdline.contains(&format!("--store-config {}", abs.display())),
        "{cmdline}"
    );
    assert!(cmdline.contains("--write-back-limit 8388608"), "{cmdline}");
    let environ = proc_file("environ");
    assert!(environ.contains("AWS_ACCESS_KEY_ID=inherited-by-servers"));
    up.terminate();
    assert!(up
        .wait_until(std::time::Instant::now() + std::time::Duration::from_secs(20))
        .is_some());
}
