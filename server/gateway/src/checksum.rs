//! Upload integrity as S3 checks it: the `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`
//! a client sends in a header, or announces in `x-amz-trailer` and sends after an
//! `aws-chunked` body, is computed over the bytes received (with `s3s`'s hashers) and a
//! mismatch is refused (`BadDigest`) before anything is written.

use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::Checksum;

use crate::error::{GwError, GwResult};

const NAMES: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// Whether the request names checksum `name` (a header, or a trailer it announces).
fn named(h: &HeaderMap, name: &str) -> bool {
    h.contains_key(name)
        || h.get_all("x-amz-trailer").iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
        })
}

/// Hashers for the checksums the request names (none: nothing is computed).
pub fn hasher_for(h: &HeaderMap) -> ChecksumHasher {
    let mut c = ChecksumHasher::default();
    if named(h, NAMES[0]) {
        c.crc32 = Some(Crc32::new());
    }
    if named(h, NAMES[1]) {
        c.crc32c = Some(Crc32c::new());
    }
    if named(h, NAMES[2]) {
        c.crc64nvme = Some(Crc64Nvme::new());
    }
    if named(h, NAMES[3]) {
        c.sha1 = Some(Sha1::new());
    }
    if named(h, NAMES[4]) {
        c.sha256 = Some(Sha256::new());
    }
    c
}

/// Compare what was computed with what the request's headers and trailers say.
pub fn verify(got: &Checksum, headers: &HeaderMap, trailers: Option<&HeaderMap>) -> GwResult<()> {
    let computed = [
        &got.checksum_crc32,
        &got.checksum_crc32c,
        &got.checksum_crc64nvme,
        &got.checksum_sha1,
        &got.checksum_sha256,
    ];
    for (name, sum) in NAMES.iter().zip(computed) {
        let claimed = headers
            .get(*name)
            .or_else(|| trailers.and_then(|t| t.get(*name)))
            .and_then(|v| v.to_str().ok());
        if let (Some(claimed), Some(sum)) = (claimed, sum) {
            if claimed.trim() != sum {
                let algo = name
                    .trim_start_matches("x-amz-checksum-")
                    .to_ascii_uppercase();
                return Err(GwError::BadDigest(format!(
                    "The {algo} you specified did not match the calculated checksum."
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_checksum_is_computed_and_checked() {
        let mut h = HeaderMap::new();
        // CRC32 of "hello" is 0x3610a686.
        h.insert("x-amz-checksum-crc32", "NhCmhg==".parse().unwrap());
        let mut c = hasher_for(&h);
        c.update(b"hello");
        let sum = c.finalize();
        assert!(sum.checksum_sha256.is_none());
        verify(&sum, &h, None).unwrap();
        let mut c = hasher_for(&h);
        c.update(b"hellO");
        assert!(matches!(
            verify(&c.finalize(), &h, None),
            Err(GwError::BadDigest(_))
        ));
    }

    #[test]
    fn a_trailer_is_announced_then_checked() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
        let mut c = hasher_for(&h);
        c.update(b"hello");
        let sum = c.finalize();
        let mut t = HeaderMap::new();
        t.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        assert!(verify(&sum, &h, Some(&t)).is_err());
        t.insert("x-amz-checksum-crc32", "NhCmhg==".parse().unwrap());
        verify(&sum, &h, Some(&t)).unwrap();
    }
}
