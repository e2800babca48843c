//! Golden vectors (computed independently in Python, CRC32C included) and
//! rejection tests for every way a datagram can be wrong.

use super::*;

const GOLDEN_DATA: [u8; 24] = [
    0x52, 0x55, 0x03, 0x81, 0x00, 0x00, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
    0x05, 0x06, 0x07, 0x08, 0x17, 0xad, 0x2d, 0xeb,
];
const GOLDEN_ACCEPT: [u8; 32] = [
    0x52, 0x55, 0x03, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x75, 0x30,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x63, 0xd1, 0xdc, 0xb7, 0x60,
];
const GOLDEN_CHECKSUM: [u8; 24] = [
    0x52, 0x55, 0x03, 0x82, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x1b, 0x94, 0x51, 0xa8,
];
const GOLDEN_CLOSED: [u8; 16] = [
    0x52, 0x55, 0x03, 0x83, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x8e, 0x98, 0x7b, 0x5d,
];
const GOLDEN_ERROR: [u8; 21] = [
    0x52, 0x55, 0x03, 0x8f, 0x03, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x07, 0x42, 0x71, 0x27, 0xae,
];
const GOLDEN_CHALLENGE: [u8; 24] = [
    0x52, 0x55, 0x03, 0x84, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x08, 0xc2, 0x75, 0x81, 0xb8,
];
const GOLDEN_RETRY: [u8; 32] = [
    0x52, 0x55, 0x03, 0x85, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    0xac, 0xad, 0xae, 0xaf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x2e, 0xaa, 0xe0, 0x3e,
];
const GOLDEN_CONNECTED: [u8; 60] = [
    0x52, 0x55, 0x03, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
    0x1c, 0x1d, 0x1e, 0x1f, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x01, 0x86, 0xa0, 0x01, 0x02, 0xaa, 0xbb,
    0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x54, 0x29, 0xd5, 0x3a,
];
/// A CLOSED with the ABORT flag, no selective acks.
const GOLDEN_CLOSED_ABORT: [u8; 56] = [
    0x52, 0x55, 0x03, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
    0x1c, 0x1d, 0x1e, 0x1f, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0xaa, 0xbb,
    0x00, 0x00, 0x00, 0x00, 0x4d, 0x5c, 0xf6, 0xd5,
];

fn uuid() -> Uuid {
    Uuid::from_bytes([
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
        0x1f,
    ])
}

fn server_golden() -> Vec<(ServerMessage, &'static [u8])> {
    vec![
        (
            ServerMessage::Data {
                index: 7,
                payload: 0xdead_beef,
                echo: 0x0102_0304_0506_0708,
            },
            &GOLDEN_DATA,
        ),
        (
            ServerMessage::Accept {
                token: [1, 2, 3, 4, 5, 6, 7, 8],
                lifetime_ms: 30_000,
                max_window: 256,
                echo: 99,
            },
            &GOLDEN_ACCEPT,
        ),
        (
            ServerMessage::Checksum {
                checksum: 0x1122_3344_5566_7788,
                echo: 5,
            },
            &GOLDEN_CHECKSUM,
        ),
        (ServerMessage::Closed { echo: 6 }, &GOLDEN_CLOSED),
        (
            ServerMessage::Challenge {
                challenge: [0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7],
                echo: 8,
            },
            &GOLDEN_CHALLENGE,
        ),
        (
            ServerMessage::Retry {
                token: [
                    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac,
                    0xad, 0xae, 0xaf,
                ],
                echo: 9,
            },
            &GOLDEN_RETRY,
        ),
        (
            ServerMessage::Error {
                code: ErrorCode::LenTooLarge,
                detail: 1000,
                echo: 7,
            },
            &GOLDEN_ERROR,
        ),
    ]
}

#[test]
fn server_messages_match_golden_bytes_both_ways() {
    for (msg, golden) in server_golden() {
        let mut buf = [0u8; 64];
        let n = msg.encode(uuid(), &mut buf).unwrap();
        assert_eq!(&buf[..n], golden, "{msg:?}");
        assert_eq!(n, msg.encoded_len());
        assert!(n <= MAX_SERVER_DATAGRAM_LEN);
        assert_eq!(ServerMessage::decode(golden, uuid()).unwrap(), msg);
        // Meant for another session: the keyed CRC does not match.
        assert_eq!(
            ServerMessage::decode(golden, Uuid::from_u128(1)),
            Err(WireError::BadCrc),
            "{msg:?}"
        );
        assert_eq!(ServerMessage::decode_unchecked(golden).unwrap(), msg);
    }
    assert_eq!(GOLDEN_DATA.len(), DATA_LEN);
}

/// Of the golden server datagrams, exactly the Data ones are data to an
/// observer: the Checksum has the same length.
#[test]
fn is_data_tells_data_from_a_checksum_of_the_same_length() {
    let mut same_len = 0;
    for (msg, bytes) in server_golden() {
        let want = matches!(msg, ServerMessage::Data { .. });
        assert_eq!(is_data(bytes), want, "{msg:?}");
        same_len += usize::from(!want && bytes.len() == DATA_LEN);
    }
    assert!(same_len > 0, "a non-data golden of DATA_LEN bytes");
}

#[test]
fn connected_matches_golden_bytes_both_ways() {
    let msg = ClientMessage {
        state: State::Connected,
        uuid: uuid(),
        len: 50,
        window: 16,
        ack: 10,
        timestamp: 123_456,
        rate: 100_000,
        flags: FLAG_PROBE,
        token: &[0xaa, 0xbb],
        // 13, then 12 held after ack 10 (top 3, length 1; gap 0, length
        // 1): two touching ranges, which the client's writer would merge.
        sack: &[3, 0, 0, 0],
    };
    let mut buf = [0u8; 128];
    let n = msg.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &GOLDEN_CONNECTED);
    let back = ClientMessage::decode(&GOLDEN_CONNECTED).unwrap();
    assert_eq!(back, msg);
    assert!(back.is_probe());
    assert!(!back.is_abort());
}

#[test]
fn closed_abort_matches_golden_bytes_both_ways() {
    let msg = ClientMessage {
        state: State::Closed,
        uuid: uuid(),
        len: 50,
        window: 16,
        ack: 10,
        timestamp: 123_456,
        rate: 0,
        flags: FLAG_ABORT,
        token: &[0xaa, 0xbb],
        sack: &[],
    };
    let mut buf = [0u8; 128];
    let n = msg.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &GOLDEN_CLOSED_ABORT);
    let back = ClientMessage::decode(&GOLDEN_CLOSED_ABORT).unwrap();
    assert_eq!(back, msg);
    assert!(back.is_abort());
    assert!(!back.is_probe());
}

#[test]
fn connecting_is_padded_to_1200_bytes_with_golden_crc() {
    let msg = ClientMessage {
        state: State::Connecting,
        uuid: uuid(),
        len: 50,
        window: 4,
        ack: 0,
        timestamp: 1,
        rate: 0,
        flags: 0,
        token: &[],
        sack: &[],
    };
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = msg.encode(&mut buf).unwrap();
    assert_eq!(n, 1200);
    // pad length field, then the CRC computed independently.
    assert_eq!(&buf[48..50], &1146u16.to_be_bytes());
    assert_eq!(&buf[1196..1200], &0xed05_b1deu32.to_be_bytes());
    assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), msg);
}

/// Recomputes a client datagram's CRC.
fn reseal(d: &mut [u8]) {
    let n = d.len() - CRC_LEN;
    let crc = crc32c::crc32c(&d[..n]);
    d[n..].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes a server datagram's CRC (keyed by [`uuid`]).
fn reseal_server(d: &mut [u8]) {
    let n = d.len() - CRC_LEN;
    let crc = crc32c::crc32c_append(crc32c::crc32c(uuid().as_bytes()), &d[..n]);
    d[n..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn every_malformation_has_its_own_error() {
    let mut d = GOLDEN_DATA;
    d[0] = b'X';
    assert_eq!(ServerMessage::decode(&d, uuid()), Err(WireError::BadMagic));
    let mut d = GOLDEN_DATA;
    d[2] = 9;
    assert_eq!(
        ServerMessage::decode(&d, uuid()),
        Err(WireError::UnknownVersion(9))
    );
    let mut d = GOLDEN_DATA;
    d[9] ^= 0x10;
    assert_eq!(ServerMessage::decode(&d, uuid()), Err(WireError::BadCrc));
    let mut d = GOLDEN_DATA;
    d[3] = 0x86;
    reseal_server(&mut d);
    assert_eq!(
        ServerMessage::decode(&d, uuid()),
        Err(WireError::UnknownKind(0x86))
    );
    assert_eq!(
        ServerMessage::decode(&GOLDEN_DATA[..10], uuid()),
        Err(WireError::TooShort(10))
    );
    // Data with four extra bytes before the CRC.
    let mut long = GOLDEN_DATA[..20].to_vec();
    long.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    reseal_server(&mut long);
    assert_eq!(
        ServerMessage::decode(&long, uuid()),
        Err(WireError::TrailingBytes(4))
    );
    // Data body cut short: a valid frame, a truncated field.
    let mut short = GOLDEN_DATA[..16].to_vec();
    reseal_server(&mut short);
    assert_eq!(
        ServerMessage::decode(&short, uuid()),
        Err(WireError::Truncated)
    );
    let mut e = GOLDEN_ERROR;
    e[4] = 77;
    reseal_server(&mut e);
    assert_eq!(
        ServerMessage::decode(&e, uuid()),
        Err(WireError::UnknownErrorCode(77))
    );
    // A client datagram is never a server message, and vice versa.
    assert!(ServerMessage::decode(&GOLDEN_CONNECTED, uuid()).is_err());
    assert_eq!(
        ClientMessage::decode(&GOLDEN_DATA),
        Err(WireError::TooShort(24))
    );
    let mut acc = GOLDEN_CONNECTED;
    acc[3] = 0x81;
    reseal(&mut acc);
    assert_eq!(
        ClientMessage::decode(&acc),
        Err(WireError::UnknownKind(0x81))
    );
}

#[test]
fn client_field_rules_are_enforced() {
    let mut d = GOLDEN_CONNECTED;
    d[44] = 0x04; // flags: the lowest bit not in use
    reseal(&mut d);
    assert_eq!(ClientMessage::decode(&d), Err(WireError::ReservedFlags(4)));
    let mut d = GOLDEN_CONNECTED;
    d[44] = 0x83;
    reseal(&mut d);
    assert_eq!(
        ClientMessage::decode(&d),
        Err(WireError::ReservedFlags(0x83))
    );
    let mut d = GOLDEN_CONNECTED;
    d[45] = 40; // token length
    reseal(&mut d);
    assert_eq!(ClientMessage::decode(&d), Err(WireError::TokenTooLong(40)));
    let mut d = GOLDEN_CONNECTED;
    d[48..50].copy_from_slice(&2000u16.to_be_bytes());
    reseal(&mut d);
    assert_eq!(ClientMessage::decode(&d), Err(WireError::SackTooLong(2000)));
    let mut d = GOLDEN_CONNECTED;
    d[48..50].copy_from_slice(&9u16.to_be_bytes()); // sack runs past the end
    reseal(&mut d);
    assert_eq!(ClientMessage::decode(&d), Err(WireError::Truncated));
    // CONNECTING without padding.
    let mut d = GOLDEN_CONNECTED;
    d[3] = 0;
    reseal(&mut d);
    assert_eq!(ClientMessage::decode(&d), Err(WireError::NotPadded(60)));
    // Non-zero padding.
    let msg = ClientMessage {
        state: State::Connecting,
        uuid: uuid(),
        len: 1,
        window: 1,
        ack: 0,
        timestamp: 0,
        rate: 0,
        flags: 0,
        token: &[],
        sack: &[],
    };
    let mut buf = [0u8; 1200];
    msg.encode(&mut buf).unwrap();
    buf[600] = 1;
    reseal(&mut buf);
    assert_eq!(ClientMessage::decode(&buf), Err(WireError::BadPadding));
    let big = vec![0u8; MAX_DATAGRAM_LEN + 1];
    assert_eq!(
        ClientMessage::decode(&big),
        Err(WireError::TooLong(MAX_DATAGRAM_LEN + 1))
    );
}

#[test]
fn encode_refuses_what_decode_would_reject() {
    let sack = vec![0u8; MAX_SACK_BYTES + 1];
    let msg = ClientMessage {
        state: State::Connected,
        uuid: uuid(),
        len: 1,
        window: 1,
        ack: 0,
        timestamp: 0,
        rate: 0,
        flags: 0,
        token: &[],
        sack: &sack,
    };
    let mut buf = [0u8; 4096];
    assert_eq!(
        msg.encode(&mut buf),
        Err(WireError::SackTooLong(MAX_SACK_BYTES + 1))
    );
    let mut small = [0u8; 10];
    assert_eq!(
        ServerMessage::Closed { echo: 0 }.encode(uuid(), &mut small),
        Err(WireError::BufferTooSmall(16))
    );
}

proptest::proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
        let _ = ClientMessage::decode(&bytes);
        let _ = ServerMessage::decode(&bytes, uuid());
        let _ = ServerMessage::decode_unchecked(&bytes);
    }

    #[test]
    fn malformed_ack_ranges_are_refused(ack: u32, extra in 1u8..0x80) {
        // A range reaching down to `ack` itself, then one that is fine.
        for (sack, ok) in [(vec![extra, extra], false), (vec![extra, extra - 1], true)] {
            let msg = ClientMessage {
                state: State::Connected, uuid: uuid(), len: 10, window: 4, ack,
                timestamp: 1, rate: 0, flags: 0, token: &[], sack: &sack,
            };
            let mut buf = [0u8; MAX_DATAGRAM_LEN];
            let n = msg.encode(&mut buf).unwrap();
            let got = ClientMessage::decode(&buf[..n]);
            let fits = u64::from(ack) + u64::from(extra) <= u64::from(u32::MAX);
            if ok && fits {
                proptest::prop_assert_eq!(got, Ok(msg));
            } else {
                proptest::prop_assert_eq!(got, Err(WireError::BadSackRanges));
            }
        }
    }

    #[test]
    fn client_messages_round_trip(
        state in 0u8..4, len: u32, window: u32, ack in 0u32..u32::MAX / 2, timestamp: u64,
        rate: u32, probe: bool,
        token in proptest::collection::vec(proptest::num::u8::ANY, 0..=MAX_TOKEN_LEN),
        held in proptest::collection::btree_set(1u32..1_000_000, 0..300),
        id: [u8; 16],
    ) {
        let mut sack = Vec::new();
        let mut w = crate::proto::sack::RangeWriter::new(&mut sack, ack, MAX_SACK_BYTES);
        for &k in held.iter().rev() {
            if !w.push(ack + k, ack + k) {
                break;
            }
        }
        w.finish();
        let msg = ClientMessage {
            state: State::from_u8(state).unwrap(),
            uuid: Uuid::from_bytes(id), len, window, ack, timestamp, rate,
            flags: if probe { FLAG_PROBE } else { 0 },
            token: &token, sack: &sack,
        };
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = msg.encode(&mut buf).unwrap();
        proptest::prop_assert_eq!(n, msg.encoded_len());
        proptest::prop_assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), msg);
    }
}
