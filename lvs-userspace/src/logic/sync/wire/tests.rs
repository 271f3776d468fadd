use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const KEY: &[u8] = b"the directors' shared sync key";

fn key() -> SyncKey {
    SyncKey::new(KEY.to_vec()).unwrap()
}

fn id(value: i64) -> SyncId {
    SyncId::new(value).unwrap()
}

fn encoder(max_len: i64) -> Encoder {
    Encoder::new(id(7), key(), SyncMaxLen::new(max_len).unwrap(), 1000)
}

const WEB: ServiceAddress = ServiceAddress {
    address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
    port: 80,
    protocol: Protocol::Tcp,
};

/// A connection from client number `n`.
fn connection(n: u16, change: Change, state: FlowState) -> Entry {
    Entry::Connection(
        change,
        Connection {
            service: WEB,
            client: SocketAddr::new(Ipv4Addr::new(198, 51, 100, 7).into(), 30000 + n),
            real_server: "192.0.2.21:80".parse().unwrap(),
            state,
            remaining_ms: 899_500,
        },
    )
}

fn every_kind() -> Vec<Entry> {
    vec![
        connection(1, Change::New, FlowState::SynRecv),
        connection(1, Change::StateChange, FlowState::Established),
        connection(2, Change::StateChange, FlowState::FinWait),
        Entry::Connection(
            Change::New,
            Connection {
                service: ServiceAddress {
                    port: 53,
                    protocol: Protocol::Udp,
                    ..WEB
                },
                client: "198.51.100.9:5353".parse().unwrap(),
                real_server: "192.0.2.22:53".parse().unwrap(),
                state: FlowState::Udp,
                remaining_ms: 300_000,
            },
        ),
        Entry::Template(Template {
            service: WEB,
            client_network: Ipv4Addr::new(198, 51, 100, 0).into(),
            real_server: "192.0.2.22:80".parse().unwrap(),
            remaining_ms: MAX_REMAINING_MS,
        }),
    ]
}

/// Decodes with a fresh window, as the first message from a master.
fn decode_fresh(bytes: &[u8]) -> Result<Message, Rejection> {
    decode(bytes, id(7), &key(), &mut ReplayWindow::default())
}

/// Re-signs a message after a test changed its bytes, so that the check under test, not the
/// HMAC, is what refuses it.
fn resign(bytes: &mut [u8]) {
    let end = bytes.len() - MAC_LEN;
    let mut mac = key().mac();
    mac.update(&bytes[..end]);
    let tag = mac.finalize().into_bytes();
    bytes[end..].copy_from_slice(&tag);
}

#[test]
fn every_kind_of_entry_round_trips() {
    let entries = every_kind();
    let messages = encoder(1472).encode(&entries).unwrap();
    assert_eq!(messages.len(), 1);
    let bytes = &messages[0];
    assert_eq!(
        bytes.len(),
        HEADER_LEN + entries.len() * ENTRY_LEN + MAC_LEN
    );
    assert_eq!(
        decode_fresh(bytes),
        Ok(Message {
            sync_id: id(7),
            sequence: 1000,
            entries,
        })
    );
}

#[test]
fn the_layout_is_the_documented_one() {
    let messages = encoder(1472)
        .encode(&[connection(1, Change::New, FlowState::Established)])
        .unwrap();
    let bytes = &messages[0];
    #[rustfmt::skip]
    let expected_before_mac: [u8; HEADER_LEN + ENTRY_LEN] = [
        b'L', b'V', b'S', b'Y', 1, 7, 0, 1, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8,
        1, 6, 1, 0, 198, 51, 100, 7, 0x75, 0x31, 0, 80, 192, 0, 2, 10,
        192, 0, 2, 21, 0, 80, 0, 0, 0x00, 0x0d, 0xb9, 0xac,
    ];
    assert_eq!(bytes[..HEADER_LEN + ENTRY_LEN], expected_before_mac);
}

#[test]
fn a_batch_is_split_at_the_sync_maxlen() {
    let entries: Vec<Entry> = (0..100)
        .map(|n| connection(n, Change::New, FlowState::Established))
        .collect();
    // 1472 bytes hold (1472 - 20 - 32) / 28 = 50 entries.
    assert_eq!(Encoder::entries_per_message(SyncMaxLen::DEFAULT), 50);
    let mut encoder = encoder(200);
    let per_message = Encoder::entries_per_message(SyncMaxLen::new(200).unwrap());
    assert_eq!(per_message, 5);
    let messages = encoder.encode(&entries).unwrap();
    assert_eq!(messages.len(), 20);
    let mut window = ReplayWindow::default();
    let mut decoded = Vec::new();
    for (n, bytes) in messages.iter().enumerate() {
        assert!(bytes.len() <= 200, "message {n} has {} bytes", bytes.len());
        let message = decode(bytes, id(7), &key(), &mut window).unwrap();
        assert_eq!(message.sequence, 1000 + n as u64);
        decoded.extend(message.entries);
    }
    assert_eq!(decoded, entries);
    // The smallest maxlen still holds one entry, and the next batch continues the numbering.
    let mut smallest = Encoder::new(id(7), key(), SyncMaxLen::new(80).unwrap(), 5);
    let messages = smallest.encode(&entries[..3]).unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m.len() == 80));
    let next = smallest.encode(&entries[..1]).unwrap();
    assert_eq!(decode_fresh(&next[0]).unwrap().sequence, 8);
    assert_eq!(smallest.encode(&[]).unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn an_entry_against_the_rules_is_not_sent() {
    let cases = [
        (
            connection(1, Change::New, FlowState::Udp),
            "state UDP does not belong to a TCP connection",
        ),
        (
            Entry::Connection(
                Change::New,
                Connection {
                    remaining_ms: 0,
                    ..match connection(1, Change::New, FlowState::Established) {
                        Entry::Connection(_, c) => c,
                        Entry::Template(_) => unreachable!(),
                    }
                },
            ),
            "remaining timeout 0 ms is out of range 1..=4294967000",
        ),
        (
            Entry::Template(Template {
                service: ServiceAddress {
                    address: Ipv4Addr::new(224, 0, 0, 81).into(),
                    ..WEB
                },
                client_network: Ipv4Addr::new(198, 51, 100, 0).into(),
                real_server: "192.0.2.22:80".parse().unwrap(),
                remaining_ms: 1,
            }),
            "the service TCP 224.0.0.81:80 is not a unicast address and a port",
        ),
    ];
    for (entry, message) in cases {
        let mut encoder = encoder(1472);
        assert_eq!(
            encoder
                .encode(&[every_kind()[0], entry])
                .unwrap_err()
                .to_string(),
            message
        );
    }
}

#[test]
fn every_rejection_has_its_reason_and_leaves_the_window_alone() {
    let good = encoder(1472).encode(&every_kind()).unwrap().remove(0);
    let changed = |at: usize, value: u8, sign: bool| {
        let mut bytes = good.clone();
        bytes[at] = value;
        if sign {
            resign(&mut bytes);
        }
        bytes
    };
    let entry = |field: usize| HEADER_LEN + field;
    let mut longer = good.clone();
    longer.push(0);
    let mut wrong_key = good.clone();
    {
        let end = wrong_key.len() - MAC_LEN;
        let mut mac = SyncKey::new(b"another pair's sync key".to_vec())
            .unwrap()
            .mac();
        mac.update(&wrong_key[..end]);
        let tag = mac.finalize().into_bytes();
        wrong_key[end..].copy_from_slice(&tag);
    }
    // A count that does not match the entries, with the header's length kept right.
    let mut miscounted = good.clone();
    miscounted[7] = 4;
    resign(&mut miscounted);
    let cases: Vec<(&str, Vec<u8>, &str, Reason)> = vec![
        (
            "empty",
            Vec::new(),
            "0 bytes, shorter than the 52 a message needs",
            Reason::Truncated,
        ),
        (
            "cut short",
            good[..good.len() - 1].to_vec(),
            "191 bytes, shorter than the 192 a message needs",
            Reason::Truncated,
        ),
        (
            "a stranger's datagram",
            changed(0, b'X', false),
            "not an lvs sync message",
            Reason::Malformed,
        ),
        (
            "version 2",
            changed(4, 2, false),
            "sync protocol version 2; this director speaks version 1",
            Reason::Malformed,
        ),
        (
            "a byte too many",
            longer,
            "193 bytes arrived for a message of 192",
            Reason::Malformed,
        ),
        (
            "another sync id",
            changed(5, 8, true),
            "sync id 8; this director's is 7",
            Reason::OtherSyncId,
        ),
        (
            "another key",
            wrong_key,
            "the HMAC does not match: another key, or a forged or damaged message",
            Reason::Forged,
        ),
        (
            "a flipped bit",
            changed(entry(16), 193, false),
            "the HMAC does not match: another key, or a forged or damaged message",
            Reason::Forged,
        ),
        (
            "header reserved",
            changed(11, 1, true),
            "a reserved byte of the header is not zero",
            Reason::Malformed,
        ),
        (
            "miscounted",
            miscounted,
            "4 entries do not fill a message of 192 bytes",
            Reason::Malformed,
        ),
        (
            "kind 4",
            changed(entry(0), 4, true),
            "entry 0: kind 4 is not 1 (new connection), 2 (state change) or 3 (persistence template)",
            Reason::Malformed,
        ),
        (
            "protocol 1",
            changed(entry(1), 1, true),
            "entry 0: protocol 1 is not TCP (6) or UDP (17)",
            Reason::Malformed,
        ),
        (
            "state 7",
            changed(entry(2), 7, true),
            "entry 0: state 7 is not a connection state (0 to 6)",
            Reason::Malformed,
        ),
        (
            "a UDP state on TCP",
            changed(entry(2), 6, true),
            "entry 0: state UDP does not belong to a TCP connection",
            Reason::Malformed,
        ),
        (
            "entry reserved",
            changed(entry(ENTRY_LEN + 23), 1, true),
            "entry 1: a reserved byte is not zero",
            Reason::Malformed,
        ),
        (
            "a template with a client port",
            changed(entry(4 * ENTRY_LEN + 9), 1, true),
            "entry 4: a persistence template has a state or a client port",
            Reason::Malformed,
        ),
        (
            "service port 0",
            {
                let mut bytes = good.clone();
                bytes[entry(11)] = 0;
                resign(&mut bytes);
                bytes
            },
            "entry 0: the service TCP 192.0.2.10:0 is not a unicast address and a port",
            Reason::Malformed,
        ),
        (
            "a broadcast real server",
            {
                let mut bytes = good.clone();
                bytes[entry(16)..entry(20)].copy_from_slice(&[255; 4]);
                resign(&mut bytes);
                bytes
            },
            "entry 0: the real server 255.255.255.255:80 is not a unicast address and a port",
            Reason::Malformed,
        ),
        (
            "no time left",
            {
                let mut bytes = good.clone();
                bytes[entry(24)..entry(28)].copy_from_slice(&[0; 4]);
                resign(&mut bytes);
                bytes
            },
            "entry 0: remaining timeout 0 ms is out of range 1..=4294967000",
            Reason::Malformed,
        ),
    ];
    for (what, bytes, message, reason) in cases {
        let mut window = ReplayWindow::default();
        let rejection = decode(&bytes, id(7), &key(), &mut window).unwrap_err();
        assert_eq!(rejection.to_string(), message, "{what}");
        assert_eq!(rejection.reason(), reason, "{what}");
        assert_eq!(window, ReplayWindow::default(), "{what} moved the window");
    }
}

#[test]
fn a_replayed_message_is_refused_and_a_late_one_taken_once() {
    let mut encoder = encoder(1472);
    let first = encoder.encode(&every_kind()[..1]).unwrap().remove(0);
    let second = encoder.encode(&every_kind()[1..2]).unwrap().remove(0);
    let mut window = ReplayWindow::default();
    assert!(decode(&second, id(7), &key(), &mut window).is_ok());
    // The first arrives late: inside the window, so taken, but only once.
    assert!(decode(&first, id(7), &key(), &mut window).is_ok());
    for bytes in [&first, &second] {
        let rejection = decode(bytes, id(7), &key(), &mut window).unwrap_err();
        assert_eq!(rejection.reason(), Reason::Replayed);
    }
    assert_eq!(
        decode(&first, id(7), &key(), &mut window)
            .unwrap_err()
            .to_string(),
        "sequence 1000 was taken already, or is older than the replay window"
    );
    // Far behind the window: refused even if never seen.
    let mut old = Encoder::new(id(7), key(), SyncMaxLen::DEFAULT, 1);
    let ancient = old.encode(&every_kind()[..1]).unwrap().remove(0);
    assert_eq!(
        decode(&ancient, id(7), &key(), &mut window)
            .unwrap_err()
            .reason(),
        Reason::Replayed
    );
}

#[test]
fn a_short_key_is_refused_and_never_printed() {
    assert_eq!(
        SyncKey::new(b"short".to_vec()).unwrap_err().to_string(),
        "the sync key has 5 bytes; it needs at least 16"
    );
    assert_eq!(format!("{:?}", key()), "SyncKey(30 bytes)");
}

#[test]
fn the_reasons_have_distinct_names() {
    let names: std::collections::HashSet<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), Reason::ALL.len());
}

/// A small deterministic generator (xorshift), so that the test needs no crate and fails the
/// same way every time.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Noise, noise behind a good header, and `good` damaged or cut: never a panic, never a
/// message taken.
fn never_decodes(good: &[u8], seed: u64) {
    let mut random = Bytes(seed);
    let mut window = ReplayWindow::default();
    for round in 0..20_000 {
        let bytes: Vec<u8> = match round % 3 {
            // Pure noise of every length up to a few entries.
            0 => {
                let len = (random.next() % 400) as usize;
                (0..len).map(|_| random.next() as u8).collect()
            }
            // Noise behind a valid-looking header, length field right.
            1 => {
                let mut bytes = good.to_vec();
                for byte in &mut bytes[HEADER_LEN..] {
                    *byte = random.next() as u8;
                }
                bytes
            }
            // A good message with a few bytes changed, or cut anywhere.
            _ => {
                let mut bytes = good.to_vec();
                for _ in 0..1 + random.next() % 4 {
                    let at = (random.next() as usize) % bytes.len();
                    bytes[at] ^= 1 + (random.next() % 255) as u8;
                }
                let cut = (random.next() as usize) % (bytes.len() + 1);
                bytes.truncate(cut.max(bytes.len() / 2));
                bytes
            }
        };
        if let Ok(message) = decode(&bytes, id(7), &key(), &mut window) {
            panic!("round {round}: {bytes:02x?} decoded as {message:?}");
        }
    }
    assert_eq!(window, ReplayWindow::default());
}

#[test]
fn random_bytes_never_panic_and_never_decode() {
    let good = encoder(1472).encode(&every_kind()).unwrap().remove(0);
    never_decodes(&good, 0x5eed_1e55_c0ff_ee00);
}

#[test]
fn random_bytes_around_ipv6_entries_never_panic_and_never_decode() {
    let good = encoder(1472).encode(&every_ipv6_kind()).unwrap().remove(0);
    never_decodes(&good, 0x6666_1e55_c0ff_ee00);
    never_decodes(&encoder(1472).message(1, &mixed()), 0x4646_1e55_c0ff_ee00);
}

#[test]
fn a_heartbeat_is_a_signed_message_without_entries() {
    let mut encoder = encoder(1472);
    let beat = encoder.heartbeat();
    assert_eq!(beat.len(), HEADER_LEN + MAC_LEN);
    let message = decode_fresh(&beat).expect("a heartbeat decodes");
    assert!(message.entries.is_empty());
    // It takes a number of its own, as any message does.
    let next = encoder.encode(&every_kind()).unwrap();
    let mut window = ReplayWindow::default();
    let first = decode(&beat, id(7), &key(), &mut window).unwrap();
    let second = decode(&next[0], id(7), &key(), &mut window).unwrap();
    assert_eq!(second.sequence, first.sequence + 1);
}

const WEB6: ServiceAddress = ServiceAddress {
    address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
    port: 80,
    protocol: Protocol::Tcp,
};

/// An IPv6 connection from client number `n`.
fn connection6(n: u16, change: Change, state: FlowState) -> Entry {
    Entry::Connection(
        change,
        Connection {
            service: WEB6,
            client: SocketAddr::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 7).into(),
                30000 + n,
            ),
            real_server: "[2001:db8::21]:80".parse().unwrap(),
            state,
            remaining_ms: 899_500,
        },
    )
}

fn every_ipv6_kind() -> Vec<Entry> {
    vec![
        connection6(1, Change::New, FlowState::SynRecv),
        connection6(1, Change::StateChange, FlowState::Established),
        connection6(2, Change::StateChange, FlowState::TimeWait),
        Entry::Connection(
            Change::New,
            Connection {
                service: ServiceAddress {
                    port: 53,
                    protocol: Protocol::Udp,
                    ..WEB6
                },
                client: "[2001:db8:cafe::9]:5353".parse().unwrap(),
                real_server: "[2001:db8::22]:53".parse().unwrap(),
                state: FlowState::Udp,
                remaining_ms: 300_000,
            },
        ),
        Entry::Template(Template {
            service: WEB6,
            client_network: "2001:db8:cafe::".parse().unwrap(),
            real_server: "[2001:db8::22]:80".parse().unwrap(),
            remaining_ms: MAX_REMAINING_MS,
        }),
    ]
}

/// Both families' entries, interleaved.
fn mixed() -> Vec<Entry> {
    let (v4, v6) = (every_kind(), every_ipv6_kind());
    v4.into_iter()
        .zip(v6)
        .flat_map(|(v4, v6)| [v4, v6])
        .collect()
}

#[test]
fn every_kind_of_ipv6_entry_round_trips() {
    let entries = every_ipv6_kind();
    assert!(entries.iter().all(Entry::is_ipv6));
    let messages = encoder(1472).encode(&entries).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].len(),
        HEADER_LEN + entries.len() * ENTRY6_LEN + MAC_LEN
    );
    assert_eq!(
        decode_fresh(&messages[0]),
        Ok(Message {
            sync_id: id(7),
            sequence: 1000,
            entries,
        })
    );
}

#[test]
fn the_ipv6_layout_is_the_documented_one() {
    let messages = encoder(1472)
        .encode(&[connection6(1, Change::New, FlowState::Established)])
        .unwrap();
    let bytes = &messages[0];
    #[rustfmt::skip]
    let expected_before_mac: [u8; HEADER_LEN + ENTRY6_LEN] = [
        // The header, as for IPv4: length 20 + 64 + 32 = 116 (0x74).
        b'L', b'V', b'S', b'Y', 1, 7, 0, 1, 0, 0x74, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8,
        // New (1) with the IPv6 bit (0x80), TCP, ESTABLISHED, reserved.
        0x81, 6, 1, 0,
        // The client 2001:db8:cafe::7, port 30001, then the service port 80.
        0x20, 0x01, 0x0d, 0xb8, 0xca, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x75, 0x31, 0, 80,
        // The VIP 2001:db8::10, the real server 2001:db8::21 and its port 80.
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21, 0, 80,
        // Reserved, then 899 500 ms.
        0, 0, 0x00, 0x0d, 0xb9, 0xac,
    ];
    assert_eq!(bytes[..HEADER_LEN + ENTRY6_LEN], expected_before_mac);
    assert_eq!(bytes.len(), 116);
}

#[test]
fn ipv4_entries_keep_their_bytes_beside_ipv6_ones() {
    // The same IPv4 entries make the same bytes whether or not IPv6 ones are in the batch:
    // the IPv4 messages of a mixed batch are those of the IPv4 entries alone.
    let alone = encoder(1472).encode(&every_kind()).unwrap();
    let messages = encoder(1472).encode(&mixed()).unwrap();
    let ipv4: Vec<&[u8]> = messages
        .iter()
        .filter(|m| m[HEADER_LEN] & KIND_IPV6 == 0)
        .map(|m| &m[HEADER_LEN..m.len() - MAC_LEN])
        .collect();
    let body = |m: &[u8]| m[HEADER_LEN..m.len() - MAC_LEN].to_vec();
    assert_eq!(ipv4.concat(), body(&alone[0]));
}

#[test]
fn a_mixed_batch_goes_out_in_order_in_messages_of_one_family() {
    let entries = mixed();
    let messages = encoder(1472).encode(&entries).unwrap();
    // v4 v6 v4 v6 ...: each entry its own message, since the family changes at each.
    assert_eq!(messages.len(), entries.len());
    let mut window = ReplayWindow::default();
    let mut decoded = Vec::new();
    for bytes in &messages {
        let message = decode(bytes, id(7), &key(), &mut window).unwrap();
        let families: Vec<bool> = message.entries.iter().map(Entry::is_ipv6).collect();
        assert!(families.windows(2).all(|w| w[0] == w[1]), "{families:?}");
        decoded.extend(message.entries);
    }
    assert_eq!(decoded, entries);
    // Runs of one family share messages.
    let mut runs = every_kind();
    runs.extend(every_ipv6_kind());
    runs.extend(every_kind());
    let messages = encoder(1472).encode(&runs).unwrap();
    assert_eq!(
        messages.iter().map(Vec::len).collect::<Vec<_>>(),
        [
            HEADER_LEN + 5 * ENTRY_LEN + MAC_LEN,
            HEADER_LEN + 5 * ENTRY6_LEN + MAC_LEN,
            HEADER_LEN + 5 * ENTRY_LEN + MAC_LEN,
        ]
    );
}

#[test]
fn a_message_mixing_families_is_taken() {
    // lvs writes one family a message, but the format allows both (as IPVS's does), and a
    // backup takes what another writer mixes.
    let entries = mixed();
    let bytes = encoder(1472).message(42, &entries);
    assert_eq!(
        bytes.len(),
        HEADER_LEN + 5 * ENTRY_LEN + 5 * ENTRY6_LEN + MAC_LEN
    );
    assert_eq!(
        decode_fresh(&bytes),
        Ok(Message {
            sync_id: id(7),
            sequence: 42,
            entries,
        })
    );
}

#[test]
fn ipv6_entries_are_never_split_nor_over_the_sync_maxlen() {
    assert_eq!(IPV6_LEAST_MAX_LEN, 116);
    assert_eq!(Encoder::ipv6_entries_per_message(SyncMaxLen::DEFAULT), 22);
    assert_eq!(
        Encoder::ipv6_entries_per_message(SyncMaxLen::new(115).unwrap()),
        0
    );
    // Below 116 bytes an IPv6 entry fits no message: refused, nothing written.
    for max_len in [80, 115] {
        let mut encoder = encoder(max_len);
        assert!(!Encoder::fits(
            SyncMaxLen::new(max_len).unwrap(),
            &every_ipv6_kind()[0]
        ));
        assert_eq!(
            encoder.encode(&mixed()).unwrap_err().to_string(),
            format!("an entry of 64 bytes does not fit a message of at most {max_len} bytes")
        );
        let per_message = Encoder::entries_per_message(SyncMaxLen::new(max_len).unwrap());
        assert_eq!(
            encoder.encode(&every_kind()).unwrap().len(),
            5usize.div_ceil(per_message),
            "IPv4 still goes"
        );
    }
    // From 116 bytes up, every message is within the maxlen, whatever the mix.
    let many: Vec<Entry> = (0..60)
        .map(|n| match n % 7 {
            0 | 3 | 4 => connection(n, Change::New, FlowState::Established),
            _ => connection6(n, Change::New, FlowState::Established),
        })
        .collect();
    for max_len in [116, 117, 179, 180, 200, 500, 1472] {
        let messages = encoder(max_len).encode(&many).unwrap();
        let mut window = ReplayWindow::default();
        let mut decoded = Vec::new();
        for bytes in &messages {
            assert!(
                bytes.len() <= max_len as usize,
                "{max_len}: {} bytes",
                bytes.len()
            );
            let message = decode(bytes, id(7), &key(), &mut window).unwrap();
            // A message is full: the next entry of its family would not have fitted.
            assert!(!message.entries.is_empty());
            decoded.extend(message.entries);
        }
        assert_eq!(decoded, many, "{max_len}");
    }
    // At 180 bytes two IPv6 entries fill a message exactly: 20 + 2 × 64 + 32.
    let six: Vec<Entry> = (0..6)
        .map(|n| connection6(n, Change::New, FlowState::Established))
        .collect();
    let messages = encoder(180).encode(&six).unwrap();
    assert_eq!(messages.iter().map(Vec::len).collect::<Vec<_>>(), [180; 3]);
    let messages = encoder(179).encode(&six).unwrap();
    assert_eq!(messages.iter().map(Vec::len).collect::<Vec<_>>(), [116; 6]);
}

#[test]
fn a_truncated_ipv6_entry_is_refused() {
    let good = encoder(1472).encode(&every_ipv6_kind()).unwrap().remove(0);
    // Cut anywhere in the entries: the header's length says more.
    for cut in [
        HEADER_LEN + 1,
        HEADER_LEN + 30,
        HEADER_LEN + 64 + 10,
        good.len() - 1,
    ] {
        let rejection = decode_fresh(&good[..cut]).unwrap_err();
        assert_eq!(rejection.reason(), Reason::Truncated, "cut at {cut}");
    }
    // Authentic, but its last entry short of its 64 bytes: the length and the HMAC are
    // right for what is there.
    let mut short = good[..good.len() - MAC_LEN - 10].to_vec();
    let length = (short.len() + MAC_LEN) as u16;
    short[8..10].copy_from_slice(&length.to_be_bytes());
    short.extend_from_slice(&[0; MAC_LEN]);
    resign(&mut short);
    let rejection = decode_fresh(&short).unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "5 entries do not fill a message of 362 bytes"
    );
    assert_eq!(rejection.reason(), Reason::Malformed);
    // An IPv4 entry marked IPv6 claims 64 bytes where 28 are.
    let mut marked = encoder(1472).encode(&every_kind()[..1]).unwrap().remove(0);
    marked[HEADER_LEN] |= KIND_IPV6;
    resign(&mut marked);
    let rejection = decode_fresh(&marked).unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "1 entries do not fill a message of 80 bytes"
    );
}

#[test]
fn entries_mixing_families_are_refused_and_counted() {
    let good = encoder(1472).encode(&every_ipv6_kind()).unwrap().remove(0);
    let mapped = |at: usize| {
        let mut bytes = good.clone();
        let address = Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped().octets();
        bytes[HEADER_LEN + at..HEADER_LEN + at + 16].copy_from_slice(&address);
        resign(&mut bytes);
        bytes
    };
    // An IPv6 entry can mix in IPv4 only as a mapped address, in any of its three.
    let cases = [
        (
            4,
            "entry 0: ::ffff:198.51.100.7 is an IPv4-mapped IPv6 address; an IPv4 connection travels as an IPv4 entry",
        ),
        (
            24,
            "entry 0: ::ffff:198.51.100.7 is an IPv4-mapped IPv6 address; an IPv4 connection travels as an IPv4 entry",
        ),
        (
            40,
            "entry 0: ::ffff:198.51.100.7 is an IPv4-mapped IPv6 address; an IPv4 connection travels as an IPv4 entry",
        ),
    ];
    for (at, message) in cases {
        let mut window = ReplayWindow::default();
        let rejection = decode(&mapped(at), id(7), &key(), &mut window).unwrap_err();
        assert_eq!(rejection.to_string(), message, "at {at}");
        assert_eq!(rejection.reason(), Reason::Malformed, "at {at}");
        assert_eq!(window, ReplayWindow::default(), "at {at}");
    }
    // A master never writes one: an entry of two families is refused before anything is.
    let Entry::Connection(change, v6) = every_ipv6_kind()[0] else {
        unreachable!()
    };
    let cases = [
        (
            Entry::Connection(
                change,
                Connection {
                    client: "198.51.100.7:40000".parse().unwrap(),
                    ..v6
                },
            ),
            "the client 198.51.100.7, the service TCP [2001:db8::10]:80 and the real server [2001:db8::21]:80 are not of one family",
        ),
        (
            Entry::Connection(change, Connection { service: WEB, ..v6 }),
            "the client 2001:db8:cafe::7, the service TCP 192.0.2.10:80 and the real server [2001:db8::21]:80 are not of one family",
        ),
        (
            Entry::Template(Template {
                service: WEB6,
                client_network: "2001:db8:cafe::".parse().unwrap(),
                real_server: "192.0.2.21:80".parse().unwrap(),
                remaining_ms: 1,
            }),
            "the client 2001:db8:cafe::, the service TCP [2001:db8::10]:80 and the real server 192.0.2.21:80 are not of one family",
        ),
        (
            Entry::Connection(
                change,
                Connection {
                    real_server: "[::ffff:192.0.2.21]:80".parse().unwrap(),
                    ..v6
                },
            ),
            "::ffff:192.0.2.21 is an IPv4-mapped IPv6 address; an IPv4 connection travels as an IPv4 entry",
        ),
        (
            Entry::Connection(
                change,
                Connection {
                    service: ServiceAddress {
                        address: "ff02::1".parse().unwrap(),
                        ..WEB6
                    },
                    ..v6
                },
            ),
            "the service TCP [ff02::1]:80 is not a unicast address and a port",
        ),
        (
            Entry::Connection(
                change,
                Connection {
                    real_server: "[::]:80".parse().unwrap(),
                    ..v6
                },
            ),
            "the real server [::]:80 is not a unicast address and a port",
        ),
    ];
    for (entry, message) in cases {
        assert_eq!(entry.check().unwrap_err().to_string(), message);
        assert_eq!(
            encoder(1472).encode(&[entry]).unwrap_err().to_string(),
            message
        );
    }
}
