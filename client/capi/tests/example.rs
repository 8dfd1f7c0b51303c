//! The C example (`examples/example.c`) compiled with `cc` against the header and the shared
//! library, and run against an in-process cluster: once by locator, once by cluster directory,
//! and once under valgrind when it is installed (`FAASCACHE_REQUIRE=valgrind` makes a missing
//! valgrind fail the test instead of skipping that run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faascache_testkit::inproc::{cluster, cluster_dir};
use faascache_testkit::require::skip_or_fail;

/// The directory holding `libfaascache_capi.so` of this build (the test binary's `deps/`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    for d in [
        deps.clone(),
        deps.parent().expect("profile dir").to_path_buf(),
    ] {
        if d.join("libfaascache_capi.so").exists() {
            return d;
        }
    }
    panic!(
        "libfaascache_capi.so is not next to {}: cargo builds the cdylib with the tests",
        exe.display()
    );
}

fn compile() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faascache-capi-example");
    let lib = lib_dir();
    let r = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/example.c"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lfaascache_capi", "-o"])
        .arg(&out)
        .output()
        .expect("cc runs (a C compiler is needed for this test)");
    assert!(
        r.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

fn check(what: &str, r: &Output) {
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success() && stdout.contains("example: ok"),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        r.status
    );
}

#[test]
fn the_c_example_runs_against_a_cluster() {
    let exe = compile();
    let c = cluster(2);
    check(
        "by locator",
        &Command::new(&exe).arg(c.locator()).output().unwrap(),
    );
    let dir = cluster_dir(&c, "capi");
    check(
        "by --dir",
        &Command::new(&exe)
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    let usage = Command::new(&exe).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "no arguments: usage");
    let bad = Command::new(&exe).arg("tcp:nonsense").output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("FAASCACHE_STATUS_BAD_LOCATOR"),
        "a bad locator is reported: {}",
        String::from_utf8_lossy(&bad.stderr)
    );

    if Command::new("valgrind").arg("--version").output().is_err() {
        skip_or_fail(
            "valgrind",
            "the_c_example_runs_against_a_cluster",
            "valgrind is not installed",
        );
        return;
    }
    let t0 = std::time::Instant::now();
    let r = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(&exe)
        .arg(c.locator())
        .output()
        .unwrap();
    check("under valgrind", &r);
    println!("the example ran clean under valgrind in {:?}", t0.elapsed());
}
