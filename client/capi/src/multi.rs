//! Multi-object reads and writes: arrays of caller-owned items with per-item results.

use ::faascache_client::{TableId, WriteItem};

use crate::args::{bytes, client_ref, into_c_buf};
use crate::handle::faascache_client;
use crate::status::{faascache_status, guard, Fail};

/// One object of `faascache_multi_read`. The caller fills `table`, `key` and `key_len`; the
/// call fills the rest.
#[repr(C)]
#[derive(Debug)]
pub struct faascache_read_item {
    /// The table.
    pub table: u64,
    /// The key (`key_len` bytes).
    pub key: *const u8,
    /// The key's length.
    pub key_len: usize,
    /// Out: the value, allocated by the library (NULL when empty or on error); free it with
    /// `faascache_buf_free(value, value_len)`.
    pub value: *mut u8,
    /// Out: the value's length.
    pub value_len: usize,
    /// Out: the object's version (0 on error).
    pub version: u64,
    /// Out: this object's `faascache_status` (e.g. `FAASCACHE_STATUS_NOT_FOUND`).
    pub status: i32,
}

/// One object of `faascache_multi_write`. The caller fills `table`, `key`, `key_len`, `value`,
/// `value_len`; the call fills `version` and `status`.
#[repr(C)]
#[derive(Debug)]
pub struct faascache_write_item {
    /// The table.
    pub table: u64,
    /// The key (`key_len` bytes).
    pub key: *const u8,
    /// The key's length.
    pub key_len: usize,
    /// The value (`value_len` bytes).
    pub value: *const u8,
    /// The value's length.
    pub value_len: usize,
    /// Out: the new version (0 on error).
    pub version: u64,
    /// Out: this object's `faascache_status`.
    pub status: i32,
}

/// `n` items at `p` as a mutable slice.
///
/// # Safety
/// `p` points to `n` initialised, writable items (NULL allowed when `n` is 0).
unsafe fn items<'a, T>(p: *mut T, n: usize) -> Result<&'a mut [T], Fail> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Fail::invalid(format!("items is NULL with n = {n}")));
    }
    if n.checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Fail::invalid(format!("n = {n} items is impossible")));
    }
    // SAFETY: non-NULL, `n` items, size checked, per contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

fn code<T>(r: &::faascache_client::Result<T>) -> i32 {
    match r {
        Ok(_) => faascache_status::Ok as i32,
        Err(e) => faascache_status::of(e) as i32,
    }
}

/// Reads `n` objects (grouped by master, sent in parallel). Returns `FAASCACHE_STATUS_OK` once
/// every item has its own `status` (missing objects are `FAASCACHE_STATUS_NOT_FOUND` there);
/// another code means the arguments were bad and no item was touched.
///
/// # Safety
/// `client` is a live handle; `items` points to `n` writable items whose keys point to
/// `key_len` readable bytes each.
#[no_mangle]
pub unsafe extern "C" fn faascache_multi_read(
    client: *const faascache_client,
    items: *mut faascache_read_item,
    n: usize,
) -> faascache_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (c, items) = unsafe { (client_ref(client)?, self::items(items, n)?) };
        let mut keys: Vec<(TableId, &[u8])> = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            // SAFETY: per this function's contract.
            keys.push((it.table, unsafe {
                bytes(it.key, it.key_len, &format!("items[{i}].key"))
            }?));
        }
        let results = c.inner.multi_read(&keys);
        drop(keys);
        for (it, r) in items.iter_mut().zip(results) {
            it.status = code(&r);
            let (value, version) = match r {
                Ok(o) => (o.value, o.version),
                Err(_) => (Vec::new(), 0),
            };
            (it.value, it.value_len) = into_c_buf(value);
            it.version = version;
        }
        Ok(())
    })
}

/// Writes `n` objects (grouped by master, sent in parallel; each atomic on its own). Returns
/// `FAASCACHE_STATUS_OK` once every item has its own `status` and `version`; another code means
/// the arguments were bad and nothing was written.
///
/// # Safety
/// `client` is a live handle; `items` points to `n` writable items whose keys and values point
/// to `key_len` and `value_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn faascache_multi_write(
    client: *const faascache_client,
    items: *mut faascache_write_item,
    n: usize,
) -> faascache_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (c, items) = unsafe { (client_ref(client)?, self::items(items, n)?) };
        let mut writes: Vec<WriteItem<'_>> = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            // SAFETY: per this function's contract.
            let (key, value) = unsafe {
                (
                    bytes(it.key, it.key_len, &format!("items[{i}].key"))?,
                    bytes(it.value, it.value_len, &format!("items[{i}].value"))?,
                )
            };
            writes.push(WriteItem::new(it.table, key, value));
        }
        let results = c.inner.multi_write(&writes);
        drop(writes);
        for (it, r) in items.iter_mut().zip(results) {
            it.status = code(&r);
            it.version = r.unwrap_or(0);
        }
        Ok(())
    })
}
