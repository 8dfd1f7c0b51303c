//! RESP2 (Redis serialisation protocol): command encoder and incremental reply parser.

use super::{parse_int, show, take_line, ProtoError};

/// Largest bulk string accepted (Redis' own limit is 512 MB).
pub const MAX_BULK: i64 = 512 * 1024 * 1024;
/// Largest array accepted.
pub const MAX_ARRAY: i64 = 16 * 1024 * 1024;
/// Deepest array nesting accepted.
pub const MAX_DEPTH: usize = 8;

/// Appends a command as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Appends `*n\r\n` or `$n\r\n`.
pub fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(&itoa_buf(n as u64));
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string.
pub fn bulk(out: &mut Vec<u8>, a: &[u8]) {
    header(out, b'$', a.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

fn itoa_buf(mut v: u64) -> Vec<u8> {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    tmp[i..].to_vec()
}

/// What a reply was, without copying payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespReply {
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n` payload of n bytes
    Bulk(usize),
    /// `$-1` or `*-1`
    Nil,
    /// `*n`: number of elements, how many were non-nil bulk strings, and their total bytes
    Array {
        /// elements
        len: usize,
        /// non-nil bulk elements
        found: usize,
        /// payload bytes of the bulk elements
        bytes: usize,
    },
}

/// Parses one complete reply from the front of `buf`.
/// `Ok(None)`: incomplete, read more. `Ok(Some((reply, consumed)))` otherwise.
pub fn parse(buf: &[u8]) -> Result<Option<(RespReply, usize)>, ProtoError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(RespReply, usize)>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError(format!(
            "RESP arrays nested deeper than {MAX_DEPTH}"
        )));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((line, used)) = take_line(buf)? else {
        return Ok(None);
    };
    let body = line.get(1..).unwrap_or_default();
    match kind {
        b'+' => Ok(Some((RespReply::Simple(show(body)), used))),
        b'-' => Ok(Some((RespReply::Error(show(body)), used))),
        b':' => Ok(Some((RespReply::Integer(parse_int(body)?), used))),
        b'$' => {
            let n = parse_int(body)?;
            if n == -1 {
                return Ok(Some((RespReply::Nil, used)));
            }
            if !(0..=MAX_BULK).contains(&n) {
                return Err(ProtoError(format!("bulk length {n} out of range")));
            }
            let n = n as usize;
            let total = used + n + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[used + n..total] != b"\r\n" {
                return Err(ProtoError("bulk string not followed by \\r\\n".into()));
            }
            Ok(Some((RespReply::Bulk(n), total)))
        }
        b'*' => {
            let n = parse_int(body)?;
            if n == -1 {
                return Ok(Some((RespReply::Nil, used)));
            }
            if !(0..=MAX_ARRAY).contains(&n) {
                return Err(ProtoError(format!("array length {n} out of range")));
            }
            let mut pos = used;
            let (mut found, mut bytes) = (0usize, 0usize);
            for _ in 0..n {
                match parse_at(&buf[pos..], depth + 1)? {
                    None => return Ok(None),
                    Some((el, k)) => {
                        if let RespReply::Bulk(b) = el {
                            found += 1;
                            bytes += b;
                        }
                        pos += k;
                    }
                }
            }
            Ok(Some((
                RespReply::Array {
                    len: n as usize,
                    found,
                    bytes,
                },
                pos,
            )))
        }
        other => Err(ProtoError(format!(
            "unknown RESP type byte 0x{other:02x} in line {:?}",
            show(line)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut v = Vec::new();
        encode(&mut v, &[b"SET", b"k", b"hello"]);
        assert_eq!(v, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
        v.clear();
        encode(&mut v, &[b"GET", b""]);
        assert_eq!(v, b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_all_types() {
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some((RespReply::Simple("OK".into()), 5))
        );
        assert_eq!(
            parse(b"-ERR bad\r\nrest").unwrap(),
            Some((RespReply::Error("ERR bad".into()), 10))
        );
        assert_eq!(
            parse(b":42\r\n").unwrap(),
            Some((RespReply::Integer(42), 5))
        );
        assert_eq!(
            parse(b":-3\r\n").unwrap(),
            Some((RespReply::Integer(-3), 5))
        );
        assert_eq!(
            parse(b"$5\r\nhello\r\n").unwrap(),
            Some((RespReply::Bulk(5), 11))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((RespReply::Nil, 5)));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((RespReply::Nil, 5)));
        let arr = b"*3\r\n$1\r\na\r\n$-1\r\n$2\r\nbc\r\n";
        assert_eq!(
            parse(arr).unwrap(),
            Some((
                RespReply::Array {
                    len: 3,
                    found: 2,
                    bytes: 3
                },
                arr.len()
            ))
        );
        assert_eq!(
            parse(b"*0\r\n").unwrap(),
            Some((
                RespReply::Array {
                    len: 0,
                    found: 0,
                    bytes: 0
                },
                4
            ))
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let full = b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let bad: &[&[u8]] = &[
            b"?what\r\n",
            b":abc\r\n",
            b":\r\n",
            b"$-5\r\n",
            b"$99999999999999999999\r\n",
            b"$3\r\nabcXY",
            b"*-7\r\n",
            b"*99999999999\r\n",
            b"+OK\n",
            b"$1\r\na\n\n",
        ];
        for b in bad {
            assert!(
                parse(b).is_err(),
                "{:?} should be an error",
                String::from_utf8_lossy(b)
            );
        }
        // over-long line without terminator
        let long = vec![b'+'; 10_000];
        assert!(parse(&long).is_err());
        // deep nesting
        let mut deep = Vec::new();
        for _ in 0..20 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert!(parse(&deep).is_err());
        // a bulk claiming a huge size must not allocate or panic: it's just incomplete
        assert_eq!(parse(b"$536870912\r\nabc").unwrap(), None);
    }

    #[test]
    fn fuzz_like_random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        let alphabet = b"+-:$*0123456789\r\nabc";
        for _ in 0..20_000 {
            let n = rng.gen_range(0..40);
            let v: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = parse(&v);
        }
    }
}
