//! [`list_store`] against a brute-force listing: every prefix, delimiter, page size and store
//! page size over nested keys gives each object and common prefix exactly once, in key order.
//!
//! The keys include names FaaSCache itself refuses to write (`a/`, `b//x`) but a store holds
//! when another writer made them (folder markers of the S3 console, Swift pseudo-folders), so
//! they are listed from [`Keys`], a store that only lists; [`MemoryStore`] checks the rest.

use std::collections::BTreeMap;

use faascache_objstore::{
    ETag, Error as StoreError, GetStream, ListEntry, ListPage, MemoryStore, ObjectMeta,
    ObjectStore, PutMeta, PutResult, Result as StoreResult,
};

use super::*;

/// Keys with nested prefixes, folder markers (`a/`, `e/x/`), doubled delimiters, non-ASCII
/// and a key past the skip mark of its common prefix (U+10FFFF).
const KEYS: &[&str] = &[
    "a",
    "a/",
    "a/b",
    "a/b/",
    "a/b/c",
    "a/b/c/d",
    "a/b/d",
    "a/c",
    "a-x",
    "a0",
    "b//x",
    "b/x/y",
    "b/x/z",
    "b/y",
    "c",
    "d/e/f",
    "d/e/g",
    "d/f",
    "d/g/",
    "e",
    "e/",
    "e/x",
    "e/x/",
    "f/a",
    "f/\u{10FFFF}x",
    "g/é/x",
    "g/é/y",
    "g/ü",
    "h//",
    "h//i",
    "z",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Object(String),
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(k) | Entry::Prefix(k) => k,
        }
    }
}

/// A store that only lists (every key of [`KEYS`], whatever its name), as the memory store
/// does.
#[derive(Debug)]
struct Keys(BTreeMap<String, u64>);

fn refused() -> StoreError {
    StoreError::Config("this test store only lists".into())
}

impl ObjectStore for Keys {
    fn describe(&self) -> String {
        "keys".into()
    }
    fn check(&self) -> StoreResult<()> {
        Ok(())
    }
    fn get_stream(&self, _: &str, _: Option<&ETag>) -> StoreResult<GetStream> {
        Err(refused())
    }
    fn put(&self, _: &str, _: Payload, _: &PutMeta) -> StoreResult<PutResult> {
        Err(refused())
    }
    fn head(&self, _: &str) -> StoreResult<Option<ObjectMeta>> {
        Err(refused())
    }
    fn delete(&self, _: &str) -> StoreResult<()> {
        Err(refused())
    }
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        let from = start_after.map_or(std::ops::Bound::Unbounded, |s| {
            std::ops::Bound::Excluded(s.to_string())
        });
        let mut entries: Vec<ListEntry> = self
            .0
            .range((from, std::ops::Bound::Unbounded))
            .filter(|(k, _)| k.starts_with(prefix))
            .take(limit + 1)
            .map(|(k, len)| ListEntry {
                key: k.clone(),
                len: *len,
                etag: ETag::new(k),
                last_modified: None,
            })
            .collect();
        let next = (entries.len() > limit).then(|| {
            entries.truncate(limit);
            entries[limit - 1].key.clone()
        });
        Ok(ListPage { entries, next })
    }
}

fn store() -> Keys {
    Keys(
        KEYS.iter()
            .map(|k| (k.to_string(), k.len() as u64))
            .collect(),
    )
}

/// Every entry of the listing, the obvious way.
fn reference(prefix: &str, delimiter: Option<&str>) -> Vec<Entry> {
    let mut keys: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| k.starts_with(prefix))
        .collect();
    keys.sort_unstable();
    let mut out: Vec<Entry> = Vec::new();
    for k in keys {
        let rest = &k[prefix.len()..];
        let e = match delimiter.and_then(|d| rest.find(d).map(|i| (i, d))) {
            Some((i, d)) => Entry::Prefix(k[..prefix.len() + i + d.len()].to_string()),
            None => Entry::Object(k.to_string()),
        };
        if out.last() != Some(&e) {
            out.push(e);
        }
    }
    out
}

/// A page's entries in key order.
fn entries(l: &Listing) -> Vec<Entry> {
    let mut v: Vec<Entry> = l
        .objects
        .iter()
        .map(|o| Entry::Object(o.key.clone()))
        .chain(l.prefixes.iter().cloned().map(Entry::Prefix))
        .collect();
    v.sort_by(|a, b| a.name().cmp(b.name()));
    v
}

#[test]
fn pages_give_every_entry_once_in_order() {
    let s = store();
    let prefixes = [
        "", "a", "a/", "a/b/", "b/", "d/", "e/", "f/", "g/é/", "h/", "zz",
    ];
    let mut listings = 0;
    for prefix in prefixes {
        for delimiter in [None, Some("/"), Some("//"), Some("b")] {
            let want = reference(prefix, delimiter);
            for max in 1..=5 {
                for store_page in [1, 2, 3, MAX_KEYS] {
                    let ctx = format!("prefix {prefix:?} delimiter {delimiter:?} max {max} store page {store_page}");
                    let mut got = Vec::new();
                    let mut cursor: Option<String> = None;
                    loop {
                        let l = list_in_pages(
                            &s,
                            prefix,
                            delimiter,
                            cursor.as_deref(),
                            max,
                            store_page,
                        )
                        .unwrap();
                        listings += 1;
                        let page = entries(&l);
                        assert!(page.len() <= max, "{ctx}: {page:?}");
                        got.extend(page.iter().cloned());
                        // Truncated exactly when entries remain; the token is the last entry.
                        assert_eq!(l.next.is_some(), got.len() < want.len(), "{ctx}: {got:?}");
                        match l.next {
                            Some(n) => {
                                assert_eq!(page.len(), max, "{ctx}");
                                assert_eq!(Some(n.as_str()), page.last().map(Entry::name), "{ctx}");
                                cursor = Some(n);
                            }
                            None => break,
                        }
                        assert!(got.len() <= want.len(), "{ctx}: {got:?}");
                    }
                    assert_eq!(got, want, "{ctx}");
                }
            }
        }
    }
    assert!(listings > 1000, "{listings}");
}

#[test]
fn a_folder_marker_under_the_prefix_is_an_object_not_a_skipped_prefix() {
    // Continuing after the object `a/` (listed under the prefix `a/`) once skipped every key
    // under `a/`: the continuation was taken for a common prefix.
    let s = store();
    let first = list_store(&s, "a/", Some("/"), None, 1).unwrap();
    assert_eq!(entries(&first), [Entry::Object("a/".into())]);
    assert_eq!(first.next.as_deref(), Some("a/"));
    let second = list_store(&s, "a/", Some("/"), Some("a/"), 10).unwrap();
    assert_eq!(
        entries(&second),
        [
            Entry::Object("a/b".into()),
            Entry::Prefix("a/b/".into()),
            Entry::Object("a/c".into()),
        ]
    );
    assert_eq!(second.next, None);
}

#[test]
fn continuing_at_a_common_prefix_skips_it_whole() {
    let s = store();
    let l = list_store(&s, "", Some("/"), Some("f/"), 2).unwrap();
    assert_eq!(
        entries(&l),
        [Entry::Prefix("g/".into()), Entry::Prefix("h/".into())]
    );
    // Not a common prefix of this listing (the delimiter is not the first one): a key.
    let l = list_store(&s, "", Some("/"), Some("h//"), 5).unwrap();
    assert_eq!(
        entries(&l),
        [Entry::Prefix("h/".into()), Entry::Object("z".into())]
    );
    assert_eq!(l.next, None);
}

#[test]
fn an_empty_delimiter_or_a_zero_max_is_taken_as_none_and_one() {
    let s = store();
    let l = list_store(&s, "d/", Some(""), None, 0).unwrap();
    assert_eq!(entries(&l), [Entry::Object("d/e/f".into())]);
    assert_eq!(l.next.as_deref(), Some("d/e/f"));
}

#[test]
fn listed_objects_carry_their_length_and_etag() {
    let s = MemoryStore::new("b");
    for k in ["a/b/c", "a/b/c/d", "a/b/e/f", "b"] {
        s.put(k, Payload::from(k.as_bytes().to_vec()), &PutMeta::default())
            .unwrap();
    }
    let l = list_store(&s, "a/b/c", None, None, 10).unwrap();
    let keys: Vec<&str> = l.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a/b/c", "a/b/c/d"]);
    assert_eq!(l.objects[1].len, 7);
    let head = s.head("a/b/c/d").unwrap().unwrap();
    assert_eq!(l.objects[1].etag, head.etag.as_str());
}
