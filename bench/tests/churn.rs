//! `faascache-bench churn` as a process against an in-process cluster: 20,000 short-lived
//! clients (one tracked write each, then dropped) and a long-lived writer; every write must
//! succeed, and (with the masters' side of issue 14) their exactly-once state must end bounded.

use std::process::Command;

const CLIENTS: &str = "20000";

fn churn(extra: &[&str]) -> (bool, String) {
    let cluster = faascache_testkit::inproc::cluster(1);
    let loc = cluster.locator();
    let out = Command::new(env!("CARGO_BIN_EXE_faascache-bench"))
        .args(["churn", "--coordinator", &loc, "--churn-clients", CLIENTS])
        .args([
            "--churn-parallel",
            "8",
            "--churn-writes",
            "2000",
            "--churn-report",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.success(), text)
}

#[test]
fn every_write_of_a_churn_succeeds() {
    let (ok, text) = churn(&[]);
    assert!(ok, "churn failed:\n{text}");
    assert!(
        text.contains(&format!("churn: {CLIENTS} clients in")) && text.contains(", 0 failed;"),
        "{text}"
    );
    assert!(
        text.contains("long-lived client: 2000 writes ok, 0 failed"),
        "{text}"
    );
    assert!(text.contains("churn: ok (every write succeeded)"), "{text}");
}

#[test]
fn the_exactly_once_state_ends_bounded() {
    // Without leases 20,000 abandoned clients cost ~11 MB; the bound leaves room for the
    // long-lived client and the clients in flight only.
    let (ok, text) = churn(&["--churn-max-eo-bytes", "1048576", "--churn-settle", "20"]);
    assert!(ok, "churn failed or the state was not bounded:\n{text}");
    assert!(text.contains("churn: ok (every write succeeded)"), "{text}");
}
