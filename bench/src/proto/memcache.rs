//! memcached text protocol: request encoders and an incremental response parser driven by what
//! the request expects.

use super::{parse_int, show, take_line, ProtoError};

/// memcached's key length limit.
pub const MAX_KEY: usize = 250;
/// Largest item accepted in a VALUE line (memcached's default item limit is 1 MB; allow 128 MB).
pub const MAX_ITEM: i64 = 128 * 1024 * 1024;

/// Appends `get k1 k2 ...\r\n`.
pub fn encode_get(out: &mut Vec<u8>, keys: &[&[u8]]) {
    out.extend_from_slice(b"get");
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `set key 0 0 len\r\nvalue\r\n`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" 0 0 ");
    out.extend_from_slice(value.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `delete key\r\n`.
pub fn encode_delete(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"delete ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// A key the memcached text protocol cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty or longer than [`MAX_KEY`].
    #[error("memcached keys must be 1..={MAX_KEY} bytes, got {0}; use shorter keys (--key-size)")]
    Length(usize),
    /// A space or control character (the text protocol separates fields with them).
    #[error("memcached keys may not contain spaces or control characters (byte {0:#04x})")]
    Byte(u8),
}

/// Checks a key is legal for the text protocol.
pub fn check_key(key: &[u8]) -> Result<(), KeyError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(KeyError::Length(key.len()));
    }
    if let Some(&b) = key.iter().find(|&&b| b <= b' ' || b == 0x7f) {
        return Err(KeyError::Byte(b));
    }
    Ok(())
}

/// The kind of response a request expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `VALUE ...` items then `END`
    Values,
    /// one storage reply line (`STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`)
    Stored,
    /// `DELETED` / `NOT_FOUND`
    Deleted,
    /// `VERSION x`
    Version,
    /// `MN` (meta no-op)
    Noop,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McReply {
    /// items found and their payload bytes
    Values {
        /// items returned
        found: usize,
        /// payload bytes
        bytes: usize,
    },
    /// `STORED` (true) or `NOT_STORED`/`EXISTS`/`NOT_FOUND` (false)
    Stored(bool),
    /// `DELETED` (true) or `NOT_FOUND` (false)
    Deleted(bool),
    /// `VERSION x`
    Version(String),
    /// `MN`
    Noop,
    /// `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`
    Error(String),
}

fn error_line(line: &[u8]) -> Option<McReply> {
    if line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR") {
        Some(McReply::Error(show(line)))
    } else {
        None
    }
}

/// Parses one complete response of kind `expect` from the front of `buf`.
pub fn parse(buf: &[u8], expect: Expect) -> Result<Option<(McReply, usize)>, ProtoError> {
    match expect {
        Expect::Values => parse_values(buf),
        _ => {
            let Some((line, used)) = take_line(buf)? else {
                return Ok(None);
            };
            if let Some(e) = error_line(line) {
                return Ok(Some((e, used)));
            }
            let r = match (expect, line) {
                (Expect::Stored, b"STORED") => McReply::Stored(true),
                (Expect::Stored, b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND") => {
                    McReply::Stored(false)
                }
                (Expect::Deleted, b"DELETED") => McReply::Deleted(true),
                (Expect::Deleted, b"NOT_FOUND") => McReply::Deleted(false),
                (Expect::Version, l) if l.starts_with(b"VERSION ") => {
                    McReply::Version(show(&l[8..]))
                }
                (Expect::Noop, b"MN") => McReply::Noop,
                _ => {
                    return Err(ProtoError(format!(
                        "unexpected reply {:?} to a {expect:?} request",
                        show(line)
                    )))
                }
            };
            Ok(Some((r, used)))
        }
    }
}

fn parse_values(buf: &[u8]) -> Result<Option<(McReply, usize)>, ProtoError> {
    let (mut pos, mut found, mut bytes) = (0usize, 0usize, 0usize);
    loop {
        let Some((line, used)) = take_line(&buf[pos..])? else {
            return Ok(None);
        };
        if line == b"END" {
            return Ok(Some((McReply::Values { found, bytes }, pos + used)));
        }
        if let Some(e) = error_line(line) {
            if found == 0 {
                return Ok(Some((e, pos + used)));
            }
            return Err(ProtoError(format!(
                "error in the middle of a get reply: {}",
                show(line)
            )));
        }
        // VALUE <key> <flags> <bytes> [<cas unique>]
        let mut parts = line.split(|&b| b == b' ');
        if parts.next() != Some(b"VALUE") {
            return Err(ProtoError(format!(
                "expected VALUE or END, got {:?}",
                show(line)
            )));
        }
        let (Some(_key), Some(_flags), Some(len)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ProtoError(format!("short VALUE line {:?}", show(line))));
        };
        let n = parse_int(len)?;
        if !(0..=MAX_ITEM).contains(&n) {
            return Err(ProtoError(format!("item length {n} out of range")));
        }
        let n = n as usize;
        let data_start = pos + used;
        let data_end = data_start + n;
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(ProtoError("item data not followed by \\r\\n".into()));
        }
        found += 1;
        bytes += n;
        pos = data_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders() {
        let mut v = Vec::new();
        encode_get(&mut v, &[b"a", b"bb"]);
        assert_eq!(v, b"get a bb\r\n");
        v.clear();
        encode_set(&mut v, b"k", b"hello");
        assert_eq!(v, b"set k 0 0 5\r\nhello\r\n");
        v.clear();
        encode_delete(&mut v, b"k");
        assert_eq!(v, b"delete k\r\n");
        assert!(check_key(b"abc").is_ok());
        assert_eq!(check_key(b"a b"), Err(KeyError::Byte(b' ')));
        assert_eq!(check_key(b""), Err(KeyError::Length(0)));
        assert_eq!(check_key(&[b'a'; 251]), Err(KeyError::Length(251)));
    }

    #[test]
    fn parses_replies() {
        let g = b"VALUE a 0 5\r\nhello\r\nVALUE bb 0 2 77\r\nhi\r\nEND\r\n";
        assert_eq!(
            parse(g, Expect::Values).unwrap(),
            Some((McReply::Values { found: 2, bytes: 7 }, g.len()))
        );
        assert_eq!(
            parse(b"END\r\n", Expect::Values).unwrap(),
            Some((McReply::Values { found: 0, bytes: 0 }, 5))
        );
        assert_eq!(
            parse(b"STORED\r\n", Expect::Stored).unwrap(),
            Some((McReply::Stored(true), 8))
        );
        assert_eq!(
            parse(b"NOT_STORED\r\n", Expect::Stored).unwrap(),
            Some((McReply::Stored(false), 12))
        );
        assert_eq!(
            parse(b"DELETED\r\n", Expect::Deleted).unwrap(),
            Some((McReply::Deleted(true), 9))
        );
        assert_eq!(
            parse(b"NOT_FOUND\r\n", Expect::Deleted).unwrap(),
            Some((McReply::Deleted(false), 11))
        );
        assert_eq!(
            parse(b"VERSION 1.6.18\r\n", Expect::Version).unwrap(),
            Some((McReply::Version("1.6.18".into()), 16))
        );
        assert_eq!(
            parse(b"MN\r\n", Expect::Noop).unwrap(),
            Some((McReply::Noop, 4))
        );
        assert_eq!(
            parse(b"SERVER_ERROR out of memory\r\n", Expect::Stored).unwrap(),
            Some((McReply::Error("SERVER_ERROR out of memory".into()), 28))
        );
        assert_eq!(
            parse(b"ERROR\r\n", Expect::Values).unwrap(),
            Some((McReply::Error("ERROR".into()), 7))
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let g = b"VALUE a 0 5\r\nhello\r\nVALUE b 0 1\r\nx\r\nEND\r\n";
        for cut in 0..g.len() {
            assert_eq!(parse(&g[..cut], Expect::Values).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[(&[u8], Expect)] = &[
            (b"VALUE a 0\r\n", Expect::Values),
            (b"VALUE a 0 x\r\n", Expect::Values),
            (b"VALUE a 0 -1\r\n", Expect::Values),
            (b"VALUE a 0 99999999999\r\n", Expect::Values),
            (b"VALUE a 0 2\r\nabcd\r\n", Expect::Values),
            (b"BOGUS\r\n", Expect::Values),
            (b"STORED\r\n", Expect::Deleted),
            (b"HELLO\r\n", Expect::Stored),
            (b"STORED\n", Expect::Stored),
            (b"VALUE a 0 1\r\nx\r\nSERVER_ERROR x\r\n", Expect::Values),
        ];
        for (b, e) in cases {
            assert!(parse(b, *e).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        assert!(parse(&vec![b'x'; 10_000], Expect::Stored).is_err());
    }

    #[test]
    fn fuzz_like_random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        let alphabet = b"VALUE ND0123 \r\nSTORDx";
        for _ in 0..20_000 {
            let n = rng.gen_range(0..50);
            let v: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            for e in [
                Expect::Values,
                Expect::Stored,
                Expect::Deleted,
                Expect::Version,
                Expect::Noop,
            ] {
                let _ = parse(&v, e);
            }
        }
    }
}
