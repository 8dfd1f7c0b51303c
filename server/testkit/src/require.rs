//! Skipping a test whose outside dependency is missing — or failing it, when the run says the
//! dependency is required.
//!
//! `FAASCACHE_REQUIRE` is a comma-separated list of parts that must be present (CI sets
//! `FAASCACHE_REQUIRE=zk,peers,netns,swift,moto`): `zk` (ZooKeeper), `peers` (Redis and
//! memcached), `netns` (network namespaces), `swift` (OpenStack Swift, `scripts/swift.sh`),
//! `moto` (moto's S3 server, `scripts/moto.sh`). A test that finds a listed part missing fails
//! instead of skipping.

/// The environment variable naming the required parts.
pub const REQUIRE_ENV: &str = "FAASCACHE_REQUIRE";

/// Whether `FAASCACHE_REQUIRE` names `part` (`all` names every part).
pub fn required(part: &str) -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| required_in(&v, part))
}

fn required_in(list: &str, part: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case(part) || p.eq_ignore_ascii_case("all"))
}

/// A test cannot run because `part` is missing (`why`, with what to do about it): panics if
/// `FAASCACHE_REQUIRE` names `part`, else prints `SKIP: {test}: {why}` and returns `false` so
/// the caller can return. Use as `if !dependency_present { skip_or_fail("zk", ...); return; }`.
#[track_caller]
pub fn skip_or_fail(part: &str, test: &str, why: &str) -> bool {
    if required(part) {
        panic!(
            "{test}: `{part}` is required ({REQUIRE_ENV}={}) but {why}",
            std::env::var(REQUIRE_ENV).unwrap_or_default()
        );
    }
    println!("SKIP: {test}: {why}");
    false
}

/// `true` if `missing` is `None` (the part is there); else [`skip_or_fail`].
#[track_caller]
pub fn require_or_skip(part: &str, test: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) => skip_or_fail(part, test, &why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_parts() {
        assert!(required_in("zk,peers", "zk"));
        assert!(required_in(" zk , peers ", "peers"));
        assert!(required_in("all", "moto"));
        assert!(!required_in("zk", "peers"));
        assert!(!required_in("", "zk"));
        assert!(!required_in("zkx", "zk"));
    }

    #[test]
    fn present_parts_run() {
        assert!(require_or_skip("nothing-requires-this-part", "t", None));
        assert!(!require_or_skip(
            "nothing-requires-this-part",
            "t",
            Some("it is missing".into())
        ));
    }
}
