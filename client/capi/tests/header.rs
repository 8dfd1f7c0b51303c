//! `include/faascache.h` is what cbindgen generates from the sources now: regenerate it and
//! compare. After changing the C API, regenerate the committed header with
//! `FAASCACHE_BLESS=1 cargo test -p faascache-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_matches_the_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut builder = cbindgen::Builder::new().with_config(config);
    for f in [
        "src/lib.rs",
        "src/handle.rs",
        "src/status.rs",
        "src/multi.rs",
    ] {
        builder = builder.with_src(dir.join(f));
    }
    let mut generated = Vec::new();
    builder
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = dir.join("include/faascache.h");
    if std::env::var_os("FAASCACHE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/faascache.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    for name in [
        "faascache_connect",
        "faascache_read_alloc",
        "faascache_multi_write",
        "FAASCACHE_STATUS_BUFFER_TOO_SMALL",
        "typedef struct faascache_client faascache_client",
    ] {
        assert!(
            generated.contains(name),
            "the generated header lacks {name}"
        );
    }
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |i| i,
            )
            + 1;
        panic!(
            "client/capi/include/faascache.h is stale (first difference at line {line}): \
             regenerate it with `FAASCACHE_BLESS=1 cargo test -p faascache-capi --test header` \
             and commit it"
        );
    }
}
