//! C arguments to Rust values: NULL checks, length checks, UTF-8 checks, library-owned buffers.

use std::ffi::{c_char, CStr};

use crate::handle::faascache_client;
use crate::status::Fail;

/// The client behind a handle.
///
/// # Safety
/// `p` is NULL or a live handle from `faascache_connect*`.
pub unsafe fn client_ref<'a>(p: *const faascache_client) -> Result<&'a faascache_client, Fail> {
    // SAFETY: NULL or live, per contract.
    unsafe { p.as_ref() }.ok_or_else(|| Fail::invalid("client is NULL"))
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives `'a`.
pub unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated, per contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|e| Fail::invalid(format!("{what} is not UTF-8: {e}")))
}

/// `len` bytes at `p` (NULL allowed when `len` is 0).
///
/// # Safety
/// `p` points to `len` readable bytes that outlive `'a`, or `len` is 0.
pub unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL with length {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!("{what} length {len} is impossible")));
    }
    // SAFETY: non-NULL, `len` readable bytes, per contract; `len` <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Stores `v` through `p` unless `p` is NULL.
///
/// # Safety
/// `p` is NULL or writable and aligned.
pub unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable, per contract.
        unsafe { p.write(v) };
    }
}

/// Stores a call's version through `p`: the new version on success, the current one on a
/// version mismatch, else 0.
///
/// # Safety
/// As [`put`].
pub unsafe fn put_version(p: *mut u64, r: &::faascache_client::Result<u64>) {
    let v = match r {
        Ok(v) => *v,
        Err(::faascache_client::Error::VersionMismatch { current }) => *current,
        Err(_) => 0,
    };
    // SAFETY: per contract.
    unsafe { put(p, v) };
}

/// Copies `src` to `dst`.
///
/// # Safety
/// `dst` has `src.len()` writable bytes (it may be NULL when `src` is empty).
pub unsafe fn copy_out(src: &[u8], dst: *mut u8) {
    if !src.is_empty() {
        // SAFETY: per contract; a caller's buffer never overlaps our fresh value.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }
}

/// A value as a library-owned C buffer (NULL for an empty value); free with [`free_c_buf`].
pub fn into_c_buf(v: Vec<u8>) -> (*mut u8, usize) {
    if v.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let n = v.len();
    (Box::into_raw(v.into_boxed_slice()).cast::<u8>(), n)
}

/// Frees a buffer of [`into_c_buf`].
///
/// # Safety
/// `p` is NULL or came from [`into_c_buf`] with this `len`, and is freed once.
pub unsafe fn free_c_buf(p: *mut u8, len: usize) {
    if p.is_null() || len == 0 {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(p, len);
    // SAFETY: the box was leaked by `into_c_buf` with exactly this length.
    drop(unsafe { Box::from_raw(slice) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_bad_arguments_are_errors() {
        // SAFETY: NULL and a valid string are what these accept.
        unsafe {
            assert!(text(std::ptr::null(), "name")
                .unwrap_err()
                .msg
                .contains("name is NULL"));
            assert!(text(c"\xff".as_ptr(), "name")
                .unwrap_err()
                .msg
                .contains("UTF-8"));
            assert_eq!(text(c"ok".as_ptr(), "name").unwrap(), "ok");
            assert_eq!(bytes(std::ptr::null(), 0, "key").unwrap(), b"");
            assert!(bytes(std::ptr::null(), 3, "key").is_err());
            assert!(bytes(b"x".as_ptr(), usize::MAX, "key").is_err());
            assert!(client_ref(std::ptr::null()).is_err());
        }
    }

    #[test]
    fn library_buffers_round_trip() {
        let (p, n) = into_c_buf(b"hello".to_vec());
        assert_eq!(n, 5);
        // SAFETY: `p` came from `into_c_buf` with length 5.
        unsafe {
            assert_eq!(std::slice::from_raw_parts(p, n), b"hello");
            free_c_buf(p, n);
        }
        assert_eq!(into_c_buf(Vec::new()), (std::ptr::null_mut(), 0));
    }
}
