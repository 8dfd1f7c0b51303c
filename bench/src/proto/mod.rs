//! Hand-written wire codecs for the peers: RESP2 (Redis) and the memcached text protocol.
//! Parsers are incremental (`Ok(None)` = need more bytes), never allocate from a length read
//! off the wire, and return [`ProtoError`] on malformed input instead of panicking.

pub mod memcache;
pub mod resp;

/// Malformed or unexpected bytes from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

/// Longest status/header line accepted before declaring the stream malformed.
pub const MAX_LINE: usize = 4096;

/// Finds the first `\r\n` in `buf`; returns the line without it and the bytes consumed.
/// `Err` if no terminator appears within [`MAX_LINE`] bytes or a bare `\n` is found.
pub fn take_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let limit = buf.len().min(MAX_LINE + 2);
    match buf[..limit].iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(ProtoError("line ends in \\n without \\r".into()));
            }
            Ok(Some((&buf[..i - 1], i + 1)))
        }
        None if buf.len() > MAX_LINE + 1 => Err(ProtoError(format!(
            "no line terminator within {MAX_LINE} bytes"
        ))),
        None => Ok(None),
    }
}

/// Parses an ASCII decimal integer (optional leading '-').
pub fn parse_int(s: &[u8]) -> Result<i64, ProtoError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtoError(format!(
            "bad integer {:?}",
            String::from_utf8_lossy(&s[..s.len().min(40)])
        )));
    }
    let mut v: i64 = 0;
    for &d in digits {
        v = v * 10 + (d - b'0') as i64;
    }
    Ok(if neg { -v } else { v })
}

/// Lossy, length-limited text of a server line for error messages.
pub fn show(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned()
}
