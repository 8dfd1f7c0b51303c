//! The client subcommands of the `faascache` binary (`faascache_client::cli`), run in-process
//! against an in-process cluster found through `--dir` (as `faascache cluster up` leaves it) or
//! `--coordinator`: what each prints on stdout and stderr, and the exit status.

use std::process::ExitCode;

use clap::Parser;
use faascache_client::cli::{run_with, ClientCommand};

use faascache_testkit::inproc::{cluster, cluster_dir};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: ClientCommand,
}

struct Run {
    code: ExitCode,
    out: Vec<u8>,
    err: String,
}

fn faascache(args: &[&str], stdin: &[u8]) -> Run {
    let cli = Cli::try_parse_from(std::iter::once("faascache").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(cli.cmd, &mut &stdin[..], &mut out, &mut err);
    Run {
        code,
        out,
        err: String::from_utf8(err).unwrap(),
    }
}

fn ok(args: &[&str]) -> Vec<u8> {
    let r = faascache(args, b"");
    assert_eq!(r.code, ExitCode::SUCCESS, "{args:?}: {}", r.err);
    r.out
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

#[test]
fn commands_against_a_cluster_dir() {
    let c = cluster(2);
    let dir = cluster_dir(&c, "cli");
    let d = dir.to_str().unwrap();

    let out = text(ok(&["table", "create", "users", "--span", "2", "--dir", d]));
    assert!(out.starts_with("table users has id "), "{out}");
    let out = text(ok(&["table", "list", "--dir", d]));
    assert!(out.contains("users") && out.contains("TABLETS"), "{out}");

    // put from an argument and from stdin; get prints the raw bytes only.
    let out = text(ok(&["put", "users", "alice", "hello world", "--dir", d]));
    assert!(out.contains("version"), "{out}");
    assert_eq!(ok(&["get", "users", "alice", "--dir", d]), b"hello world");
    let binary = [0u8, 159, 146, 150, 10];
    let r = faascache(&["put", "users", "bin", "-", "--dir", d], &binary);
    assert_eq!(r.code, ExitCode::SUCCESS, "{}", r.err);
    assert_eq!(ok(&["get", "users", "bin", "--dir", d]), binary);
    let j: serde_json::Value =
        serde_json::from_slice(&ok(&["get", "users", "bin", "--json", "--dir", d])).unwrap();
    assert_eq!(j["value_hex"], "009f92960a");

    // incr prints the new value.
    assert_eq!(text(ok(&["incr", "users", "n", "--dir", d])), "1\n");
    assert_eq!(text(ok(&["incr", "users", "n", "-5", "--dir", d])), "-4\n");
    let r = faascache(&["incr", "users", "alice", "--dir", d], b"");
    assert_eq!(r.code, ExitCode::from(1));
    assert!(r.err.contains("not an 8-byte"), "{}", r.err);

    // rm, then get: not found is exit status 2 with a message on stderr and nothing on stdout.
    let out = text(ok(&["rm", "users", "alice", "--dir", d]));
    assert!(out.starts_with("removed users/alice"), "{out}");
    let r = faascache(&["get", "users", "alice", "--dir", d], b"");
    assert_eq!(r.code, ExitCode::from(2));
    assert!(r.out.is_empty());
    assert!(r.err.contains("no object users/alice"), "{}", r.err);
    let out = text(ok(&["rm", "users", "alice", "--dir", d]));
    assert!(out.contains("nothing removed"), "{out}");

    // status, as text and as JSON; --coordinator works too.
    let out = text(ok(&["status", "--dir", d]));
    assert!(
        out.contains("(2 up)") && out.contains("transport tcp") && out.contains("durability "),
        "{out}"
    );
    assert!(
        !out.contains("unreachable") && !out.contains("warning"),
        "{out}"
    );
    let j: serde_json::Value =
        serde_json::from_slice(&ok(&["status", "--json", "--coordinator", &c.locator()])).unwrap();
    assert_eq!(j["servers"].as_array().unwrap().len(), 2);
    assert_eq!(j["servers"][0]["transport"], "tcp");
    assert!(j["servers"][0]["durability"].is_string(), "{j}");
    let objects: u64 = (0..2)
        .map(|i| j["servers"][i]["objects"].as_u64().unwrap())
        .sum();
    assert_eq!(objects, 2, "bin and n: {j}");
    assert_eq!(j["tables"][0]["name"], "users");
    assert_eq!(j["tables"][0]["tablets"], 2);

    // Unknown table: a hint, exit status 2.
    let r = faascache(&["get", "nope", "k", "--dir", d], b"");
    assert_eq!(r.code, ExitCode::from(2));
    assert!(r.err.contains("table create"), "{}", r.err);

    let out = text(ok(&["table", "drop", "users", "--dir", d]));
    assert_eq!(out, "dropped table users\n");
    let j: serde_json::Value =
        serde_json::from_slice(&ok(&["table", "list", "--json", "--dir", d])).unwrap();
    assert_eq!(j, serde_json::json!([]));
}

#[test]
fn no_cluster_is_explained() {
    let r = faascache(&["status", "--dir", "/nonexistent/faascache-cli-test"], b"");
    assert_eq!(r.code, ExitCode::from(1));
    assert!(
        r.err
            .contains("no cluster at /nonexistent/faascache-cli-test"),
        "{}",
        r.err
    );
    assert!(r.err.contains("faascache cluster up"), "{}", r.err);
    // A locator where nothing listens.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let loc = format!("tcp:host=127.0.0.1,port={port}");
    let r = faascache(&["table", "list", "--json", "--coordinator", &loc], b"");
    assert_eq!(r.code, ExitCode::from(1));
    assert!(r.err.contains("unreachable"), "{}", r.err);
    let j: serde_json::Value = serde_json::from_slice(&r.out).unwrap();
    assert!(j["error"].as_str().unwrap().contains("coordinator"));
}
