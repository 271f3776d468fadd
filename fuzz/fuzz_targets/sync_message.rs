//! Connection-sync datagrams, as a backup receives them from anyone on the segment. Any bytes
//! are taken or refused with a reason, never a panic. The fuzzer's bytes are also given a true
//! header and HMAC, so that it reaches what only an authentic message gets to: the entries,
//! the replay window, and the backup's placement and installation of each entry against its
//! own services. A message taken once is a replay the second time, and its entries are ones
//! the master's encoder writes back bit for bit (in messages of one family each, whatever
//! the message mixed). The seeds (`fuzz/seeds/sync_message`) are messages without their HMAC
//! of IPv4 entries, IPv6 entries and both, so that the fuzzer starts inside either layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvs_common::flow::Settings;
use lvs_userspace::{
    base::values::{SyncId, SyncMaxLen},
    logic::{
        config,
        model::Model,
        sync::{
            Encoder, Message, Places, Rejection, ReplayWindow, SyncKey, decode, install,
            wire::{HEADER_LEN, MAC_LEN, MAGIC, VERSION},
        },
    },
};

/// The backup's services: one persistent TCP service, one UDP service. IPv4 only, as the
/// config holds so far: an IPv6 entry is placed nowhere (`Unknown`), which is a path too.
const BACKUP: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
protocol = "TCP"
lb_algo = "rr"
lb_kind = "DR"
persistence_timeout = 300

[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 1

[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 2

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "UDP"
lb_algo = "wlc"
lb_kind = "DR"

[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 1
"#;

fn sync_id() -> SyncId {
    SyncId::new(51).expect("a sync id")
}

fn key() -> SyncKey {
    SyncKey::new(b"the fuzzer's shared sync key".to_vec()).expect("a long enough key")
}

/// Everything a backup does with a message it took.
fn take(message: &Message, signed: &[u8]) {
    let config = config::parse(BACKUP, "backup.toml").expect("the backup's config");
    let model = Model::new(&config.services).expect("the backup's model");
    let places = Places::of(&model);
    let settings = Settings::with_timeouts(900, 120, 300, 0);
    for entry in &message.entries {
        if let Ok(placement) = places.place(entry) {
            let _ = install(entry, &placement, &settings, 1 << 40);
        }
    }

    let mut window = ReplayWindow::default();
    decode(signed, sync_id(), &key(), &mut window).expect("taken once");
    assert_eq!(
        decode(signed, sync_id(), &key(), &mut window),
        Err(Rejection::Replayed(message.sequence)),
        "a message taken twice"
    );

    let mut encoder = Encoder::new(sync_id(), key(), SyncMaxLen::DEFAULT, 0);
    let written = encoder
        .encode(&message.entries)
        .expect("a decoded entry is one the encoder writes");
    let mut entries = Vec::new();
    for datagram in written {
        let mut window = ReplayWindow::default();
        let again = decode(&datagram, sync_id(), &key(), &mut window).expect("re-encoded");
        entries.extend(again.entries);
    }
    assert_eq!(entries, message.entries, "entries changed on the way back");
}

fuzz_target!(|data: &[u8]| {
    let mut window = ReplayWindow::default();
    if let Ok(message) = decode(data, sync_id(), &key(), &mut window) {
        // Only a fuzzer that found HMAC-SHA256 collisions gets here.
        take(&message, data);
    }

    let length = data.len() + MAC_LEN;
    if data.len() < HEADER_LEN || length > usize::from(u16::MAX) {
        return;
    }
    let mut signed = data.to_vec();
    signed[..4].copy_from_slice(&MAGIC);
    signed[4] = VERSION;
    signed[5] = sync_id().get();
    signed[8..10].copy_from_slice(&(length as u16).to_be_bytes());
    let tag = key().tag(&signed);
    signed.extend_from_slice(&tag);
    let mut window = ReplayWindow::default();
    if let Ok(message) = decode(&signed, sync_id(), &key(), &mut window) {
        take(&message, &signed);
    }
});
