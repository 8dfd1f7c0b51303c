//! Little-endian payload codec for RPC bodies: a bounds-checked [`Reader`] that returns typed
//! errors (never panics, never allocates from an unchecked length) and a [`Writer`] over a
//! `Vec<u8>` (e.g. the reply buffer of the transport runtime's `IncomingRpc::reply_with`).
//!
//! ```
//! use faascache_protocol::wire::codec::{Reader, Writer};
//! let mut buf = Vec::new();
//! Writer::new(&mut buf).u64(7).bytes_u16(b"key").bytes_u32(b"value");
//! let mut r = Reader::new(&buf);
//! assert_eq!(r.u64().unwrap(), 7);
//! assert_eq!(r.bytes_u16().unwrap(), b"key");
//! assert_eq!(r.bytes_u32().unwrap(), b"value");
//! r.finish().unwrap();
//! ```

/// A payload that does not decode; `at` is the byte offset where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The payload ended early.
    #[error("payload truncated at byte {at}: needed {need} more bytes (sender/receiver version mismatch?)")]
    Truncated {
        /// Offset.
        at: usize,
        /// Bytes missing.
        need: usize,
    },
    /// Bytes left after the last field.
    #[error("{extra} unexpected bytes after the payload's last field at byte {at}")]
    Trailing {
        /// Offset.
        at: usize,
        /// Extra bytes.
        extra: usize,
    },
    /// A length field exceeds what the caller allows.
    #[error("length {len} at byte {at} exceeds the limit {max}")]
    TooLong {
        /// Offset.
        at: usize,
        /// Declared length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// Bounds-checked little-endian reader over a borrowed payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

macro_rules! read_int {
    ($name:ident, $t:ty) => {
        /// Read a little-endian integer.
        pub fn $name(&mut self) -> Result<$t, CodecError> {
            let b = self.take(std::mem::size_of::<$t>())?;
            Ok(<$t>::from_le_bytes(
                b.try_into().expect("length checked by take"),
            ))
        }
    };
}

impl<'a> Reader<'a> {
    /// Read `buf` from the start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }
    /// The next `n` bytes (borrowed).
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated {
                at: self.at,
                need: n - self.remaining(),
            });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    read_int!(u8, u8);
    read_int!(u16, u16);
    read_int!(u32, u32);
    read_int!(u64, u64);
    /// Bytes prefixed by a u16 length.
    pub fn bytes_u16(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// Bytes prefixed by a u32 length.
    pub fn bytes_u32(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Bytes prefixed by a u32 length of at most `max`.
    pub fn bytes_u32_max(&mut self, max: usize) -> Result<&'a [u8], CodecError> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n > max {
            return Err(CodecError::TooLong { at, len: n, max });
        }
        self.take(n)
    }
    /// The rest of the payload.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.at..];
        self.at = self.buf.len();
        s
    }
    /// Check that everything was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CodecError::Trailing { at: self.at, extra }),
        }
    }
}

/// Little-endian writer appending to a `Vec<u8>`.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Append to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    /// Append a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Append a little-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Append a little-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Append a little-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Append raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// Append bytes with a u16 length prefix. Panics if `b` is longer than `u16::MAX` (a caller
    /// bug: check keys against their limit first).
    pub fn bytes_u16(&mut self, b: &[u8]) -> &mut Self {
        let n = u16::try_from(b.len()).expect("bytes_u16: longer than 65535 bytes");
        self.u16(n).raw(b)
    }
    /// Append bytes with a u32 length prefix. Panics beyond `u32::MAX` (a caller bug).
    pub fn bytes_u32(&mut self, b: &[u8]) -> &mut Self {
        let n = u32::try_from(b.len()).expect("bytes_u32: longer than 4 GiB");
        self.u32(n).raw(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut v = Vec::new();
        Writer::new(&mut v)
            .u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .bytes_u16(b"ab")
            .bytes_u32(b"cde")
            .raw(b"z");
        let mut r = Reader::new(&v);
        assert_eq!(
            (r.u8(), r.u16(), r.u32(), r.u64()),
            (Ok(1), Ok(2), Ok(3), Ok(4))
        );
        assert_eq!(r.bytes_u16(), Ok(&b"ab"[..]));
        assert_eq!(r.bytes_u32(), Ok(&b"cde"[..]));
        assert_eq!(
            r.finish(),
            Err(CodecError::Trailing {
                at: v.len() - 1,
                extra: 1
            })
        );
        assert_eq!(r.rest(), b"z");
        assert!(r.finish().is_ok());
        assert_eq!(
            r.u8(),
            Err(CodecError::Truncated {
                at: v.len(),
                need: 1
            })
        );
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(matches!(r.bytes_u32(), Err(CodecError::Truncated { .. })));
        let mut r = Reader::new(&[9, 0, 0, 0, 1]);
        assert!(matches!(
            r.bytes_u32_max(4),
            Err(CodecError::TooLong { len: 9, .. })
        ));
    }
}
