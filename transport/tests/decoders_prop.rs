//! Every decoder, fed random, truncated, oversized and wrong-version bytes: no panic, a typed
//! error, and valid inputs round-trip.

use faascache_protocol::wire::{DecodeError, Header, HEADER_LEN, PROTOCOL_VERSION};
use faascache_transport::datagram::packet::{Kind, Packet, PacketError, PKT_HEADER_LEN};
use faascache_transport::limits::MAX_PAYLOAD;
use faascache_transport::{PollMode, ServiceLocator, Status};
use proptest::prelude::*;

fn any_header() -> impl Strategy<Value = Header> {
    (
        any::<u16>(),
        any::<u64>(),
        0..=MAX_PAYLOAD as u32,
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(op, id, len, resp, st)| {
            if resp {
                Header::response(op, id, st, len)
            } else {
                Header::request(op, id, len)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn header_round_trips(h in any_header()) {
        prop_assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn header_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = Header::decode(&bytes);
        let _ = Header::decode_message(&bytes);
    }

    #[test]
    fn header_truncated_is_typed(h in any_header(), cut in 0usize..HEADER_LEN) {
        let b = h.encode();
        let is_truncated = matches!(Header::decode(&b[..cut]), Err(DecodeError::Truncated { .. }));
        prop_assert!(is_truncated);
    }

    #[test]
    fn header_oversized_is_typed(id in any::<u64>(), len in (MAX_PAYLOAD as u32 + 1)..=u32::MAX) {
        let b = Header::request(2, id, len).encode();
        let is_too_large = matches!(Header::decode(&b), Err(DecodeError::TooLarge { .. }));
        prop_assert!(is_too_large);
    }

    #[test]
    fn header_wrong_version_is_typed(h in any_header(), v in any::<u16>()) {
        prop_assume!(v != PROTOCOL_VERSION);
        let mut b = h.encode();
        b[4..6].copy_from_slice(&v.to_le_bytes());
        prop_assert_eq!(Header::decode(&b), Err(DecodeError::BadVersion { found: v }));
    }

    #[test]
    fn header_bit_flips_are_caught(h in any_header(), bit in 0usize..(HEADER_LEN * 8)) {
        let mut b = h.encode();
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Header::decode(&b).is_err());
    }

    #[test]
    fn message_decoder_checks_lengths(op in any::<u16>(), id in any::<u64>(), len in 0u32..4096, extra in 0usize..3, short in any::<bool>()) {
        let h = Header::request(op, id, len);
        let payload = vec![7u8; h.payload_len as usize];
        let mut m = h.encode_message(&payload);
        if short && !m.is_empty() {
            m.pop();
            prop_assert!(Header::decode_message(&m).is_err());
        } else {
            m.extend(std::iter::repeat_n(0, extra));
            prop_assert_eq!(Header::decode_message(&m).is_ok(), extra == 0);
        }
    }

    #[test]
    fn packet_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Packet::decode(&bytes);
    }

    #[test]
    fn packet_data_round_trips(id in any::<u64>(), msg_len in 1u32..100_000, off in 0u32..100_000, data in proptest::collection::vec(any::<u8>(), 1..200), ack in any::<u64>(), fc in any::<bool>(), session in any::<u32>()) {
        let p = Packet { kind: Kind::Data, from_client: fc, rpc_id: id, session, msg_len, offset: off, length: data.len() as u32, ack_below: ack, payload: &data };
        let e = p.encode();
        let fits = u64::from(off) + data.len() as u64 <= u64::from(msg_len);
        match Packet::decode(&e) {
            Ok(d) => { prop_assert!(fits); prop_assert_eq!(d, p); }
            Err(PacketError::BadLength(_)) => prop_assert!(!fits),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
        // Truncation and version changes are typed errors.
        prop_assert!(Packet::decode(&e[..PKT_HEADER_LEN - 1]).is_err());
        let mut v = e.clone();
        v[2] = 9;
        prop_assert_eq!(Packet::decode(&v), Err(PacketError::BadVersion(9)));
    }

    #[test]
    fn packet_oversized_message_rejected(len in (faascache_transport::limits::MAX_MESSAGE as u32 + 1)..=u32::MAX) {
        let p = Packet { kind: Kind::Data, from_client: true, rpc_id: 1, session: 1, msg_len: len, offset: 0, length: 1, ack_below: 0, payload: &[1] };
        let is_bad_length = matches!(Packet::decode(&p.encode()), Err(PacketError::BadLength(_)));
        prop_assert!(is_bad_length);
    }

    #[test]
    fn locator_parser_never_panics(s in "\\PC{0,60}") {
        if let Ok(l) = s.parse::<ServiceLocator>() {
            // Whatever parses prints back to something that parses to the same value.
            prop_assert_eq!(l.to_string().parse::<ServiceLocator>(), Ok(l));
        }
    }

    #[test]
    fn locator_structured_round_trip(host in "[a-z0-9.]{1,20}", port in any::<u16>(), name in "[a-zA-Z0-9_-]{1,12}") {
        let s = format!("tcp:host={host},port={port};udp:host={host},port={port};loopback:name={name}");
        let l: ServiceLocator = s.parse().unwrap();
        prop_assert_eq!(l.to_string(), s);
    }

    #[test]
    fn poll_mode_parser_never_panics(s in "\\PC{0,20}") {
        if let Ok(m) = s.parse::<PollMode>() {
            prop_assert_eq!(m.to_string().parse::<PollMode>(), Ok(m));
        }
    }

    #[test]
    fn payload_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), ops in proptest::collection::vec(0u8..8, 0..20)) {
        use faascache_protocol::wire::codec::Reader;
        let mut r = Reader::new(&bytes);
        for op in ops {
            let _ = match op {
                0 => r.u8().map(|_| ()),
                1 => r.u16().map(|_| ()),
                2 => r.u32().map(|_| ()),
                3 => r.u64().map(|_| ()),
                4 => r.bytes_u16().map(|_| ()),
                5 => r.bytes_u32().map(|_| ()),
                6 => r.bytes_u32_max(10).map(|_| ()),
                _ => r.finish(),
            };
        }
    }

    #[test]
    fn status_display_never_panics(v in any::<u16>()) {
        prop_assert!(!Status(v).to_string().is_empty());
    }
}
