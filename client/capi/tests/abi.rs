//! The C functions called from Rust (through the rlib) against an in-process cluster: the edge
//! cases the C example does not reach — NULL outputs, length queries, non-UTF-8 names, a NULL
//! key inside a multi-op, eight threads sharing one handle.

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use faascache_capi::*;
use faascache_testkit::inproc::cluster;

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string that lives until this thread's next call.
    unsafe { CStr::from_ptr(faascache_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn connect(locator: &str) -> *mut faascache_client {
    let loc = std::ffi::CString::new(locator).unwrap();
    let mut c = null_mut();
    // SAFETY: a valid string and out pointer.
    let s = unsafe { faascache_connect(loc.as_ptr(), 10_000, &mut c) };
    assert_eq!(s, faascache_status::Ok, "{}", last_error());
    assert!(!c.is_null());
    c
}

/// A handle shared by threads (the library's client is thread-safe).
#[derive(Clone, Copy)]
struct Shared(*const faascache_client);
// SAFETY: `faascache_client` wraps a `Send + Sync` client; the C API documents sharing it.
unsafe impl Send for Shared {}

/// A value above 1 MiB to a backed table: written in chunks, read back whole.
#[test]
fn large_values_of_a_backed_table() {
    let cl = cluster(1);
    let c = connect(&cl.locator());
    let rust = ::faascache_client::Client::connect(&cl.locator()).unwrap();
    let backing =
        ::faascache_client::TableBacking::new("", ::faascache_client::WritePolicy::Ephemeral);
    let bt = rust.create_backed_table("abi_big", 1, &backing).unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: usize| (i % 253) as u8).collect();
    let (mut v, mut out) = (0u64, vec![0u8; big.len()]);
    let (mut len, mut rv) = (out.len(), 0u64);
    // SAFETY: valid pointers and lengths for every argument.
    unsafe {
        let s = faascache_write(
            c,
            bt,
            b"big".as_ptr(),
            3,
            big.as_ptr(),
            big.len(),
            null(),
            &mut v,
        );
        assert_eq!(s, faascache_status::Ok, "{}", last_error());
        let s = faascache_read(
            c,
            bt,
            b"big".as_ptr(),
            3,
            out.as_mut_ptr(),
            &mut len,
            &mut rv,
        );
        assert_eq!(s, faascache_status::Ok, "{}", last_error());
        faascache_free(c);
    }
    assert!(len == big.len() && out == big && rv == v);
}

#[test]
fn edge_cases_and_threads() {
    let cl = cluster(1);
    let c = connect(&cl.locator());
    // SAFETY: every pointer below is valid for what the function reads or writes, or NULL where
    // the API allows it (or where the test checks that NULL is refused).
    unsafe {
        let mut t = 0u64;
        assert_eq!(
            faascache_create_table(c, c"abi".as_ptr(), 1, &mut t),
            faascache_status::Ok
        );
        assert_eq!(
            faascache_write(
                c,
                t,
                b"k".as_ptr(),
                1,
                b"value".as_ptr(),
                5,
                null(),
                null_mut()
            ),
            faascache_status::Ok,
            "NULL version_out is allowed"
        );
        // Ask for the length with a NULL buffer of capacity 0.
        let mut len = 0usize;
        let s = faascache_read(c, t, b"k".as_ptr(), 1, null_mut(), &mut len, null_mut());
        assert_eq!((s, len), (faascache_status::BufferTooSmall, 5));
        assert!(last_error().contains("5 bytes"), "{}", last_error());
        // A NULL buffer with a capacity is refused before any request.
        let mut len = 8usize;
        let s = faascache_read(c, t, b"k".as_ptr(), 1, null_mut(), &mut len, null_mut());
        assert_eq!(s, faascache_status::InvalidArgument);
        assert_eq!(
            faascache_read(c, t, b"k".as_ptr(), 1, null_mut(), null_mut(), null_mut()),
            faascache_status::InvalidArgument
        );
        // An empty value comes back as NULL with length 0.
        faascache_write(c, t, b"e".as_ptr(), 1, null(), 0, null(), null_mut());
        let (mut p, mut n) = (b"x".as_ptr().cast_mut(), 7usize);
        let s = faascache_read_alloc(c, t, b"e".as_ptr(), 1, &mut p, &mut n, null_mut());
        assert_eq!((s, p.is_null(), n), (faascache_status::Ok, true, 0));
        // Names must be UTF-8; handles must not be NULL; connect needs an out pointer.
        let bad: *const c_char = c"\xff\xfe".as_ptr();
        assert_eq!(
            faascache_get_table_id(c, bad, &mut t),
            faascache_status::InvalidArgument
        );
        assert!(last_error().contains("UTF-8"));
        assert_eq!(
            faascache_drop_table(null(), c"abi".as_ptr()),
            faascache_status::InvalidArgument
        );
        assert_eq!(
            faascache_connect(c"tcp:host=127.0.0.1,port=1".as_ptr(), 0, null_mut()),
            faascache_status::InvalidArgument
        );
        let mut none = null_mut();
        assert_eq!(
            faascache_connect_dir(c"/nonexistent-faascache-dir".as_ptr(), 0, &mut none),
            faascache_status::BadLocator
        );
        assert!(none.is_null() && last_error().contains("cluster up"));
        // A NULL key inside a multi-op: the whole call is refused, no item is touched.
        let mut items = [
            faascache_read_item {
                table: t,
                key: b"k".as_ptr(),
                key_len: 1,
                value: null_mut(),
                value_len: 0,
                version: 0,
                status: -1,
            },
            faascache_read_item {
                table: t,
                key: null(),
                key_len: 3,
                value: null_mut(),
                value_len: 0,
                version: 0,
                status: -1,
            },
        ];
        assert_eq!(
            faascache_multi_read(c, items.as_mut_ptr(), 2),
            faascache_status::InvalidArgument
        );
        assert!(last_error().contains("items[1].key"), "{}", last_error());
        assert!(items.iter().all(|i| i.status == -1));
        // A value over the limit.
        let big = vec![0u8; (1 << 20) + 1];
        let s = faascache_write(
            c,
            t,
            b"big".as_ptr(),
            3,
            big.as_ptr(),
            big.len(),
            null(),
            null_mut(),
        );
        assert_eq!(s, faascache_status::TooLarge);
        let name = CStr::from_ptr(faascache_status_name(s as i32));
        assert_eq!(name, c"FAASCACHE_STATUS_TOO_LARGE");
    }

    // Eight threads, one handle: increments are not lost.
    let shared = Shared(c);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let h = shared;
                for _ in 0..100 {
                    let mut t = 0;
                    // SAFETY: the handle lives until every thread is joined.
                    unsafe {
                        assert_eq!(
                            faascache_get_table_id(h.0, c"abi".as_ptr(), &mut t),
                            faascache_status::Ok
                        );
                        let s = faascache_incr(h.0, t, b"n".as_ptr(), 1, 1, null_mut(), null_mut());
                        assert_eq!(s, faascache_status::Ok, "{}", last_error());
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    // SAFETY: valid pointers; the handle is freed once, by this thread, after the others ended.
    unsafe {
        let (mut t, mut n) = (0u64, 0i64);
        faascache_get_table_id(c, c"abi".as_ptr(), &mut t);
        assert_eq!(
            faascache_incr(c, t, b"n".as_ptr(), 1, 0, &mut n, null_mut()),
            faascache_status::Ok
        );
        assert_eq!(n, 800);
        faascache_free(c);
        faascache_free(null_mut());
        faascache_buf_free(null_mut(), 3);
    }
}
