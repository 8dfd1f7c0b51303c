//! Formatting of `status` and `resize` output that needs nothing of the command runner: a
//! master's cache counters, sizes, a resize report (text and JSON).

use serde_json::json;

use crate::{DrainReport, ResizeReport};

pub(super) fn cache_json(c: &crate::CacheStats) -> serde_json::Value {
    json!({
        "dirty_objects": c.dirty_objects, "dirty_bytes": c.dirty_bytes,
        "oldest_dirty_ms": c.oldest_dirty_ms, "dirty_limit_bytes": c.dirty_limit_bytes,
        "uploads": c.uploads, "upload_errors": c.upload_errors,
        "hits": c.hits, "misses": c.misses, "negative_hits": c.negative_hits,
        "store_reads": c.store_reads, "store_read_errors": c.store_read_errors,
        "not_admitted": c.not_admitted, "invalidated": c.invalidated, "evicted": c.evicted,
        "last_error": c.last_error,
    })
}

/// One line of a master's backed-table counters for `status`.
pub(super) fn cache_text(c: &crate::CacheStats) -> String {
    let mut s = format!(
        "dirty {} objects, {} of {} (oldest {:.1}s); uploads {} ({} failed); hits {}, misses {}, negative {}; store reads {} ({} failed); not admitted {}, invalidated {}, evicted {}",
        c.dirty_objects,
        mib(c.dirty_bytes),
        mib(c.dirty_limit_bytes),
        c.oldest_dirty_ms as f64 / 1000.0,
        c.uploads,
        c.upload_errors,
        c.hits,
        c.misses,
        c.negative_hits,
        c.store_reads,
        c.store_read_errors,
        c.not_admitted,
        c.invalidated,
        c.evicted,
    );
    if !c.last_error.is_empty() {
        s.push_str(&format!("; last store error: {}", c.last_error));
    }
    s
}

pub(super) fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

pub(super) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// `resize` as one line of text.
pub(super) fn resize_text(r: &ResizeReport) -> String {
    format!(
        "server {}: memory {} -> {} (at most {}); live {}; evicted {} objects, moved {} in {:.1} ms",
        r.server,
        mib(r.previous_bytes),
        mib(r.budget_bytes),
        mib(r.max_bytes),
        mib(r.live_bytes),
        r.evicted_objects,
        mib(r.relocated_bytes),
        r.server_time.as_secs_f64() * 1000.0
    )
}

/// `resize --json`.
pub(super) fn resize_json(r: &ResizeReport) -> serde_json::Value {
    json!({
        "server": r.server, "previous_bytes": r.previous_bytes, "budget_bytes": r.budget_bytes,
        "max_bytes": r.max_bytes, "live_bytes": r.live_bytes,
        "evicted_objects": r.evicted_objects, "relocated_bytes": r.relocated_bytes,
        "server_us": r.server_time.as_micros() as u64,
    })
}

/// `drain`, as text.
pub(super) fn drain_text(r: &DrainReport) -> String {
    let retired = if r.retired {
        "it retires and exits"
    } else {
        "it did not acknowledge retiring: if it still runs it re-enlists as a new empty server, stop it"
    };
    format!(
        "server {} ({}): {} tablets moved to other masters in {:.3} s; removed from the cluster; {retired}",
        r.server,
        r.locator,
        r.tablets_moved,
        r.elapsed.as_secs_f64()
    )
}

/// `drain --json`.
pub(super) fn drain_json(r: &DrainReport) -> serde_json::Value {
    json!({
        "server": r.server, "locator": r.locator, "tablets_moved": r.tablets_moved,
        "retired": r.retired, "elapsed_us": r.elapsed.as_micros() as u64,
    })
}
