//! A handler panic for tests (off unless the environment asks for it): with
//! `FAASCACHE_TEST_PANIC_ON_WRITE=KEY`, the master's `Write` handler panics on a write of the
//! key KEY after the engine has applied it and before the reply, as a bug between the engine's
//! log append and its hash-table insert would. The process must then abort (the transport does
//! not catch handler panics) and the coordinator recover its tablets. Read once per process.

use std::sync::OnceLock;

/// The environment variable naming the key whose write panics.
pub const PANIC_ENV: &str = "FAASCACHE_TEST_PANIC_ON_WRITE";

fn key() -> Option<&'static [u8]> {
    static KEY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    KEY.get_or_init(|| {
        let k = std::env::var_os(PANIC_ENV)
            .map(|v| v.into_encoded_bytes())
            .filter(|k| !k.is_empty());
        if let Some(k) = &k {
            tracing::warn!(
                key = %String::from_utf8_lossy(k),
                "{PANIC_ENV} is set: a write of this key panics the master (for tests only)"
            );
        }
        k
    })
    .as_deref()
}

/// Called by the `Write` handler once the engine has applied a write of `k`.
pub fn after_write(k: &[u8]) {
    if key() == Some(k) {
        panic!(
            "injected panic ({PANIC_ENV}) after writing key {:?}",
            String::from_utf8_lossy(k)
        );
    }
}
