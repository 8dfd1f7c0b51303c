//! The backup RPC decoders (`msg::backup`) on hostile bytes: random input, valid encodings with a
//! byte changed, every truncation and oversized counts give a typed error, never a panic; valid
//! inputs round-trip.

use faascache_protocol::msg::backup::*;
use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::msg::{Message, MsgError};
use faascache_protocol::ServerId;
use proptest::prelude::*;

fn decode_every_backup_message(b: &[u8]) {
    let _ = BackupWriteRequest::decode(b);
    let _ = BackupFreeRequest::decode(b);
    let _ = BackupGetReplicasRequest::decode(b);
    let _ = BackupGetReplicasResponse::decode(b);
    let _ = BackupGetRecoveryDataRequest::decode(b);
    let _ = BackupGetRecoveryDataResponse::decode(b);
    let _ = BackupRecoveryDoneRequest::decode(b);
}

/// Valid encodings of every backup message, from random field values.
fn samples(seed: u64, data: &[u8]) -> Vec<Vec<u8>> {
    let master = ServerId(seed | 1);
    let offset = (seed % 4096) as u32;
    vec![
        BackupWriteRequest {
            master,
            segment_id: seed,
            offset,
            flags: (seed % 4) as u8,
            certificate: ReplicaCertificate {
                length: offset + data.len() as u32,
                checksum: seed as u32,
            },
            data,
            epoch: seed / 3,
        }
        .to_vec(),
        BackupFreeRequest {
            master,
            segment_id: seed,
        }
        .to_vec(),
        BackupGetReplicasRequest {
            master,
            min_epoch: seed,
        }
        .to_vec(),
        BackupGetReplicasResponse {
            replicas: (0..seed % 5)
                .map(|i| ReplicaInfo {
                    segment_id: i,
                    length: i as u32 * 7,
                    closed: i % 2 == 0,
                })
                .collect(),
            digest: (!seed.is_multiple_of(3)).then(|| LogDigestInfo {
                segment_id: seed,
                segments: (0..seed % 7).collect(),
            }),
        }
        .to_vec(),
        BackupGetRecoveryDataRequest {
            master,
            segment_id: seed,
            ranges: (0..seed % 4)
                .map(|i| TabletRange {
                    table_id: i + 1,
                    start_hash: i,
                    end_hash: i + seed,
                })
                .collect(),
        }
        .to_vec(),
        BackupGetRecoveryDataResponse { entries: data }.to_vec(),
        BackupRecoveryDoneRequest { master }.to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_every_backup_message(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(seed in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..64), pos in any::<usize>(), val in any::<u8>()) {
        for mut buf in samples(seed, &data) {
            if buf.is_empty() {
                continue;
            }
            let i = pos % buf.len();
            buf[i] = val;
            decode_every_backup_message(&buf);
        }
    }

    #[test]
    fn truncations_are_errors(seed in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..32)) {
        let decoders: [fn(&[u8]) -> bool; 7] = [
            |b| BackupWriteRequest::decode(b).is_ok(),
            |b| BackupFreeRequest::decode(b).is_ok(),
            |b| BackupGetReplicasRequest::decode(b).is_ok(),
            |b| BackupGetReplicasResponse::decode(b).is_ok(),
            |b| BackupGetRecoveryDataRequest::decode(b).is_ok(),
            |b| BackupGetRecoveryDataResponse::decode(b).is_ok(),
            |b| BackupRecoveryDoneRequest::decode(b).is_ok(),
        ];
        // BackupWrite and BackupGetReplicas end in an optional u64 (the replica epoch): the
        // prefix without it is an older sender's valid message.
        let trailing_u64 = [true, false, true, false, false, false, false];
        for ((buf, ok), optional) in samples(seed, &data).iter().zip(decoders).zip(trailing_u64) {
            prop_assert!(ok(buf), "valid encoding refused");
            for cut in 0..buf.len() {
                let valid = optional && cut == buf.len() - 8;
                prop_assert_eq!(ok(&buf[..cut]), valid, "prefix of {} bytes", cut);
            }
            let mut longer = buf.clone();
            longer.push(0);
            prop_assert!(!ok(&longer), "trailing byte accepted");
        }
    }

    #[test]
    fn oversized_counts_are_typed(count in 1u32..=u32::MAX) {
        // A replica list claiming more entries than its bytes could hold.
        let mut b = count.to_le_bytes().to_vec();
        b.extend_from_slice(&[0u8; 12]);
        let e = BackupGetReplicasResponse::decode(&b).unwrap_err();
        prop_assert!(matches!(e, MsgError::TooMany { .. }), "{:?}", e);
        // Ranges beyond MAX_RECOVERY_RANGES or the bytes present.
        let mut b = vec![0u8; 16];
        b.extend_from_slice(&count.to_le_bytes());
        let is_too_many = matches!(BackupGetRecoveryDataRequest::decode(&b), Err(MsgError::TooMany { .. }));
        prop_assert!(is_too_many);
    }
}

#[test]
fn write_certificate_must_cover_exactly_the_write() {
    let data = [7u8; 10];
    for (offset, length, ok) in [(0, 10, true), (5, 15, true), (5, 10, false), (0, 11, false)] {
        let req = BackupWriteRequest {
            master: ServerId::new(1, 1),
            segment_id: 1,
            offset,
            flags: BackupWriteRequest::OPEN,
            certificate: ReplicaCertificate {
                length,
                checksum: 0,
            },
            data: &data,
            epoch: 0,
        };
        assert_eq!(BackupWriteRequest::decode(&req.to_vec()).is_ok(), ok);
    }
}
