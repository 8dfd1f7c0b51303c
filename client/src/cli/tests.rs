//! Tests of the client subcommands' argument parsing and helpers.
use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: ClientCommand,
}

fn parse(args: &[&str]) -> ClientCommand {
    Cli::try_parse_from(std::iter::once("faascache").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .cmd
}

#[test]
fn commands_parse() {
    match parse(&[
        "put",
        "users",
        "alice",
        "-",
        "--coordinator",
        "tcp:host=h,port=1",
    ]) {
        ClientCommand::Put { value, target, .. } => {
            assert_eq!(value, "-");
            assert_eq!(target.locator().unwrap(), "tcp:host=h,port=1");
        }
        c => panic!("{c:?}"),
    }
    match parse(&["incr", "t", "k", "-5", "--json"]) {
        ClientCommand::Incr { delta, target, .. } => {
            assert_eq!(delta, -5);
            assert!(target.json);
        }
        c => panic!("{c:?}"),
    }
    match parse(&["incr", "t", "k"]) {
        ClientCommand::Incr { delta, .. } => assert_eq!(delta, 1),
        c => panic!("{c:?}"),
    }
    match parse(&[
        "table",
        "create",
        "users",
        "--span",
        "3",
        "--timeout",
        "250ms",
    ]) {
        ClientCommand::Table {
            cmd: TableCommand::Create { span, target, .. },
        } => {
            assert_eq!(span, 3);
            assert_eq!(target.timeout, Duration::from_millis(250));
        }
        c => panic!("{c:?}"),
    }
    assert!(matches!(parse(&["status"]), ClientCommand::Status { .. }));
    assert!(Cli::try_parse_from([
        "faascache",
        "get",
        "t",
        "k",
        "--dir",
        "d",
        "--coordinator",
        "c"
    ])
    .is_err());
}

#[test]
fn missing_cluster_dir_gives_a_hint() {
    let e = locator_from_dir(Path::new("/nonexistent/faascache-test-dir"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no cluster at /nonexistent/faascache-test-dir"),
        "{e}"
    );
    assert!(e.contains("faascache cluster up"), "{e}");
    let code = run(parse(&[
        "get",
        "t",
        "k",
        "--dir",
        "/nonexistent/faascache-test-dir",
    ]));
    assert_eq!(code, ExitCode::from(1));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("5 fortnights").is_err());
}

#[test]
fn durations_beyond_range_are_errors_not_panics() {
    // 1e23 seconds does not fit a Duration (Duration::from_secs_f64 would panic).
    let e = parse_duration("99999999999999999999999").unwrap_err();
    assert_eq!(e, DurationError::Range("99999999999999999999999".into()));
    assert!(e.to_string().contains("non-negative"), "{e}");
    assert!(matches!(
        parse_duration("1e9999h"),
        Err(DurationError::Unit { .. })
    ));
    assert_eq!(
        parse_duration("-1s"),
        Err(DurationError::Range("-1s".into()))
    );
    assert!(matches!(
        parse_duration("soon"),
        Err(DurationError::Number(_))
    ));
}

fn backing_of(args: &[&str]) -> Result<Option<TableBacking>, ArgError> {
    let mut all = vec!["table", "create", "t"];
    all.extend_from_slice(args);
    match parse(&all) {
        ClientCommand::Table {
            cmd: TableCommand::Create { backing, .. },
        } => backing.to_backing(),
        c => panic!("{c:?}"),
    }
}

#[test]
fn table_create_backing_flags() {
    use crate::WritePolicy;
    assert_eq!(backing_of(&["--span", "2"]).unwrap(), None);
    let b = backing_of(&[
        "--backing",
        "swift://c/p",
        "--policy",
        "write-through",
        "--negative-ttl",
        "250ms",
        "--revalidate",
        "1m",
        "--admit-max",
        "8MiB",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(b.url, "swift://c/p");
    assert_eq!(b.policy, WritePolicy::WriteThrough);
    assert_eq!((b.negative_ttl_ms, b.revalidate_ms), (250, 60_000));
    assert_eq!(b.admit_max_bytes, 8 << 20);
    // Defaults: write-back, 1 s negative TTL, no revalidation.
    let b = backing_of(&["--backing", "s3://b"]).unwrap().unwrap();
    assert_eq!(b, TableBacking::new("s3://b", WritePolicy::WriteBack));
    // An ephemeral table may omit --backing and take a TTL.
    let b = backing_of(&["--policy", "ephemeral", "--ttl", "10m"])
        .unwrap()
        .unwrap();
    assert_eq!((b.url.as_str(), b.ttl_ms), ("", 600_000));
    // Bad combinations, each with a message that says what to do.
    for (args, want) in [
        (&["--ttl", "1m"][..], "--ttl applies to backed tables"),
        (
            &["--backing", "s3://b", "--ttl", "1m"],
            "only to --policy ephemeral",
        ),
        (&["--backing", "gs://b"], "unsupported backing"),
        (&["--policy", "write-back"], "needs a store"),
        (
            &["--revalidate", "5s"],
            "--revalidate applies to backed tables",
        ),
    ] {
        let e = backing_of(args).unwrap_err().0;
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let e = Cli::try_parse_from(["faascache", "table", "create", "t", "--revalidate", "2d"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad duration unit"), "{e}");
    // Unknown policy: refused by the parser with the choices.
    let e = Cli::try_parse_from(["faascache", "table", "create", "t", "--policy", "lazy"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("write-back, write-through or ephemeral"), "{e}");
}

#[test]
fn flush_and_invalidate_parse() {
    match parse(&["flush", "photos", "k1", "--timeout", "30s", "--dir", "d"]) {
        ClientCommand::Flush { table, key, target } => {
            assert_eq!((table.as_str(), key.as_deref()), ("photos", Some("k1")));
            assert_eq!(target.timeout, Duration::from_secs(30));
        }
        c => panic!("{c:?}"),
    }
    match parse(&["invalidate", "photos", "--prefix", "2024/"]) {
        ClientCommand::Invalidate { key, prefix, .. } => {
            assert_eq!((key, prefix.as_deref()), (None, Some("2024/")));
        }
        c => panic!("{c:?}"),
    }
    assert!(Cli::try_parse_from(["faascache", "invalidate", "t", "k", "--prefix", "p"]).is_err());
    // Neither a key nor a prefix: a usage error before connecting.
    let cmd = parse(&[
        "invalidate",
        "t",
        "--coordinator",
        "tcp:host=127.0.0.1,port=1",
    ]);
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = run_with(cmd, &mut std::io::empty(), &mut o, &mut e);
    assert_eq!(code, ExitCode::from(1));
    let e = String::from_utf8(e).unwrap();
    assert!(e.contains("give a KEY or --prefix P"), "{e}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
    assert!(parse_size("-1").is_err());
    assert!(parse_size("1e30").is_err());
    assert!(parse_size("3 parsecs")
        .unwrap_err()
        .0
        .contains("bad size unit"));
}
