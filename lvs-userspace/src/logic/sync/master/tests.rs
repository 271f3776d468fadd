use std::net::{Ipv4Addr, SocketAddr};

use lvs_common::{
    IPPROTO_TCP,
    flow::{FlowKey, PersistKey},
};

use super::*;
use crate::{
    base::values::SyncId,
    logic::sync::{
        ReplayWindow, SyncKey,
        wire::{Message, decode},
    },
};

const KEY: &[u8] = b"the directors' shared sync key";
const RS1: (u32, u32) = (0, 1);
const RS2: (u32, u32) = (1, 1);
/// A real server's id reused for another server.
const RS1_REUSED: (u32, u32) = (0, 2);

fn key() -> SyncKey {
    SyncKey::new(KEY.to_vec()).unwrap()
}

fn settings() -> Settings {
    Settings::with_timeouts(900, 120, 300, 0)
}

fn destinations() -> Destinations {
    HashMap::from([
        (RS1, "10.0.0.11:80".parse().unwrap()),
        (RS2, "10.0.0.12:80".parse().unwrap()),
        (RS1_REUSED, "10.0.0.13:80".parse().unwrap()),
    ])
}

/// A master whose messages hold `per_message` entries, at `rate` messages a second.
fn master(per_message: usize, rate: u32) -> Master {
    let max_len = SyncMaxLen::new((20 + 32 + 28 * per_message) as i64).unwrap();
    let encoder = Encoder::new(SyncId::new(51).unwrap(), key(), max_len, 1);
    Master::new(encoder, max_len, rate, 0)
}

fn flow_key(client_port: u16) -> FlowMapKey {
    FlowMapKey::V4(FlowKey {
        src_addr: [198, 51, 100, 7],
        dst_addr: [10, 0, 0, 100],
        src_port: client_port.to_be_bytes(),
        dst_port: 80u16.to_be_bytes(),
        protocol: IPPROTO_TCP,
        _pad: [0; 3],
    })
}

fn flow(destination: (u32, u32), state: FlowState, last_seen_s: u64) -> FlowEntry {
    FlowEntry {
        last_seen_ns: last_seen_s * S,
        real_server_id: destination.0,
        generation: destination.1,
        state: state as u8,
        ..FlowEntry::default()
    }
}

/// What a backup reads from the messages.
fn entries(outgoing: &Outgoing) -> Vec<Entry> {
    let mut window = ReplayWindow::default();
    outgoing
        .messages
        .iter()
        .flat_map(|bytes| {
            let Message { entries, .. } =
                decode(bytes, SyncId::new(51).unwrap(), &key(), &mut window).unwrap();
            entries
        })
        .collect()
}

/// The client ports and kinds of what went out.
fn sent(outgoing: &Outgoing) -> Vec<(u16, Change)> {
    entries(outgoing)
        .into_iter()
        .map(|entry| match entry {
            Entry::Connection(change, connection) => (connection.client.port(), change),
            Entry::Template(_) => panic!("a template among connections"),
        })
        .collect()
}

#[test]
fn a_new_flow_is_sent_once_with_its_real_server_and_remaining_time() {
    let mut master = master(10, 100);
    let flows = [(flow_key(40000), flow(RS2, FlowState::Established, 1000))];
    let out = master.flows(&flows, 1010 * S, &settings(), &destinations());
    assert_eq!(
        entries(&out),
        [Entry::Connection(
            Change::New,
            Connection {
                service: ServiceAddress {
                    address: Ipv4Addr::new(10, 0, 0, 100).into(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                client: "198.51.100.7:40000".parse().unwrap(),
                real_server: "10.0.0.12:80".parse().unwrap(),
                state: FlowState::Established,
                remaining_ms: 890_000,
            }
        )]
    );
    assert_eq!((out.entries, out.deferred), (1, 0));
    // Nothing changed: nothing to say, however often the table is read.
    let again = master.flows(&flows, 1011 * S, &settings(), &destinations());
    assert_eq!(again, Outgoing::default());
}

#[test]
fn a_state_or_real_server_change_is_sent() {
    let mut master = master(10, 100);
    let key = flow_key(40000);
    master.flows(
        &[(key, flow(RS1, FlowState::SynRecv, 1000))],
        1000 * S,
        &settings(),
        &destinations(),
    );
    let established = [(key, flow(RS1, FlowState::Established, 1001))];
    let out = master.flows(&established, 1001 * S, &settings(), &destinations());
    assert_eq!(sent(&out), [(40000, Change::StateChange)]);
    // The same id, a new generation: another real server.
    let moved = [(key, flow(RS1_REUSED, FlowState::Established, 1001))];
    let out = master.flows(&moved, 1002 * S, &settings(), &destinations());
    assert_eq!(sent(&out), [(40000, Change::StateChange)]);
    assert_eq!(
        entries(&out)[0].real_server(),
        "10.0.0.13:80".parse().unwrap()
    );
}

#[test]
fn a_flow_with_traffic_is_refreshed_before_the_backups_copy_expires() {
    let mut master = master(10, 100);
    // ESTABLISHED's 900 s: refreshed 60 s (the longest) after a send; SYN_RECV's 60 s:
    // after 30 s. Either only when traffic came since the send.
    let at = |established_seen: u64, syn_recv_seen: u64| {
        [
            (
                flow_key(1),
                flow(RS1, FlowState::Established, established_seen),
            ),
            (flow_key(2), flow(RS2, FlowState::SynRecv, syn_recv_seen)),
        ]
    };
    let first = master.flows(&at(1000, 1000), 1000 * S, &settings(), &destinations());
    assert_eq!(first.entries, 2);
    let out = master.flows(&at(1020, 1020), 1020 * S, &settings(), &destinations());
    assert_eq!(out.entries, 0, "traffic, but the last send is recent");
    let out = master.flows(&at(1029, 1029), 1030 * S, &settings(), &destinations());
    assert_eq!(sent(&out), [(2, Change::StateChange)]);
    let Entry::Connection(_, refreshed) = entries(&out)[0] else {
        panic!("a connection");
    };
    assert_eq!(
        refreshed.remaining_ms, 59_000,
        "the time left now, not at the first send"
    );
    let out = master.flows(&at(1059, 1029), 1060 * S, &settings(), &destinations());
    assert_eq!(
        sent(&out),
        [(1, Change::StateChange)],
        "no traffic on 2 since its last send"
    );
    // Without traffic since its last send, a flow is not sent again however old the send.
    let out = master.flows(&at(1059, 1029), 1080 * S, &settings(), &destinations());
    assert_eq!(out.entries, 0);
}

#[test]
fn expired_and_vanished_flows_are_forgotten() {
    let mut master = master(10, 100);
    let flows = [
        (flow_key(1), flow(RS1, FlowState::Established, 1000)),
        (flow_key(2), flow(RS1, FlowState::Close, 1000)),
        (flow_key(3), flow(RS2, FlowState::Established, 1000)),
    ];
    let out = master.flows(&flows, 1000 * S, &settings(), &destinations());
    assert_eq!(out.entries, 3);
    master.end_pass();
    assert_eq!(master.remembered(), (3, 0));
    // 11 s later the CLOSE flow (10 s) has expired; flow 3 is not in the table any more.
    let out = master.flows(&flows[..2], 1011 * S, &settings(), &destinations());
    assert_eq!(out.entries, 0, "an expired flow is not sent");
    assert_eq!(master.remembered(), (2, 0), "the expired one at once");
    master.end_pass();
    assert_eq!(
        master.remembered(),
        (1, 0),
        "the vanished one at the pass's end"
    );
    // Had flow 3 come back, it would be new again.
    let out = master.flows(&flows[2..], 1012 * S, &settings(), &destinations());
    assert_eq!(sent(&out), [(3, Change::New)]);
}

#[test]
fn a_flow_whose_real_server_is_gone_is_not_sent() {
    let mut master = master(10, 100);
    let flows = [(flow_key(1), flow((7, 1), FlowState::Established, 1000))];
    let out = master.flows(&flows, 1000 * S, &settings(), &destinations());
    assert_eq!(out, Outgoing::default());
    // Nor one in a state no connection has.
    let odd = [(
        flow_key(2),
        FlowEntry {
            state: 9,
            ..flow(RS1, FlowState::Established, 1000)
        },
    )];
    assert_eq!(
        master.flows(&odd, 1000 * S, &settings(), &destinations()),
        Outgoing::default()
    );
}

#[test]
fn a_received_flow_is_not_echoed_until_it_sees_traffic_here() {
    let mut master = master(10, 100);
    let key = flow_key(40000);
    let installed = flow(RS1, FlowState::Established, 995);
    master.received_flow(key, &installed, 1000 * S);
    let out = master.flows(&[(key, installed)], 1001 * S, &settings(), &destinations());
    assert_eq!(out.entries, 0, "not sent back to the peer that sent it");
    // This director took it over: its packets come here, and the refresh goes out.
    let taken_over = [(key, flow(RS1, FlowState::Established, 1100))];
    let out = master.flows(&taken_over, 1100 * S, &settings(), &destinations());
    assert_eq!(sent(&out), [(40000, Change::StateChange)]);
}

#[test]
fn send_everything_again_makes_every_flow_and_template_due() {
    let mut master = master(10, 100);
    let flows = [
        (flow_key(1), flow(RS1, FlowState::Established, 1000)),
        (flow_key(2), flow(RS2, FlowState::Established, 1000)),
    ];
    let templates = [template(RS1, 1000)];
    let timeout = |_: &TemplateMapKey| Some(300 * S);
    master.flows(&flows, 1000 * S, &settings(), &destinations());
    master.templates(&templates, 1000 * S, &destinations(), timeout);
    master.end_pass();
    master.received_flow(
        flow_key(3),
        &flow(RS1, FlowState::Established, 999),
        1000 * S,
    );
    master.resend_all();
    let mut with_received = flows.to_vec();
    with_received.push((flow_key(3), flow(RS1, FlowState::Established, 999)));
    let out = master.flows(&with_received, 1001 * S, &settings(), &destinations());
    assert_eq!(
        sent(&out),
        [(1, Change::New), (2, Change::New), (3, Change::New)],
        "a peer that came back learns its own connections too"
    );
    let out = master.templates(&templates, 1001 * S, &destinations(), timeout);
    assert_eq!(out.entries, 1);
    let out = master.flows(&with_received, 1002 * S, &settings(), &destinations());
    assert_eq!(out.entries, 0, "once");
}

fn template(destination: (u32, u32), last_seen_s: u64) -> (TemplateMapKey, PersistEntry) {
    (
        TemplateMapKey::V4(PersistKey {
            client: [198, 51, 100, 0],
            vip: [10, 0, 0, 100],
            vport: 80u16.to_be_bytes(),
            protocol: IPPROTO_TCP,
            _pad: 0,
        }),
        PersistEntry {
            last_seen_ns: last_seen_s * S,
            real_server_id: destination.0,
            generation: destination.1,
        },
    )
}

#[test]
fn templates_are_sent_refreshed_and_forgotten_like_flows() {
    let mut master = master(10, 100);
    let timeout = |_: &TemplateMapKey| Some(300 * S);
    let out = master.templates(&[template(RS2, 1000)], 1010 * S, &destinations(), timeout);
    assert_eq!(
        entries(&out),
        [Entry::Template(Template {
            service: ServiceAddress {
                address: Ipv4Addr::new(10, 0, 0, 100).into(),
                port: 80,
                protocol: Protocol::Tcp,
            },
            client_network: Ipv4Addr::new(198, 51, 100, 0).into(),
            real_server: "10.0.0.12:80".parse().unwrap(),
            remaining_ms: 290_000,
        })]
    );
    let out = master.templates(&[template(RS2, 1050)], 1050 * S, &destinations(), timeout);
    assert_eq!(out.entries, 0, "used since, but sent 40 s ago");
    let out = master.templates(&[template(RS2, 1070)], 1070 * S, &destinations(), timeout);
    assert_eq!(out.entries, 1, "used since, sent 60 s ago");
    master.end_pass();
    // The service is no longer persistent: the template is forgotten, not sent.
    let out = master.templates(&[template(RS2, 1100)], 1100 * S, &destinations(), |_| None);
    assert_eq!(out.entries, 0);
    assert_eq!(master.remembered(), (0, 0));
}

#[test]
fn the_rate_bound_defers_what_does_not_fit_to_the_next_pass() {
    // Two entries a message, two messages a second.
    let mut master = master(2, 2);
    let flows: Vec<_> = (1..=7)
        .map(|port| (flow_key(port), flow(RS1, FlowState::Established, 1000)))
        .collect();
    let out = master.flows(&flows, 1000 * S, &settings(), &destinations());
    assert_eq!(out.messages.len(), 2);
    assert_eq!((out.entries, out.deferred), (4, 3));
    assert_eq!(
        sent(&out),
        [
            (1, Change::New),
            (2, Change::New),
            (3, Change::New),
            (4, Change::New)
        ]
    );
    // Half a second refills one message.
    let out = master.flows(&flows, 1000 * S + S / 2, &settings(), &destinations());
    assert_eq!(sent(&out), [(5, Change::New), (6, Change::New)]);
    assert_eq!(out.deferred, 1);
    let out = master.flows(&flows, 1000 * S + S / 2, &settings(), &destinations());
    assert_eq!(
        out,
        Outgoing {
            messages: Vec::new(),
            entries: 0,
            deferred: 1,
            too_long: 0,
        }
    );
    let out = master.flows(&flows, 1001 * S + S / 2, &settings(), &destinations());
    assert_eq!(sent(&out), [(7, Change::New)]);
}

#[test]
fn a_token_bucket_refills_continuously_up_to_a_seconds_worth() {
    let mut bucket = TokenBucket::new(4000, 0);
    assert_eq!(bucket.take(10_000, 0), 4000, "a full second's burst");
    assert_eq!(bucket.take(1, 0), 0);
    assert_eq!(
        bucket.take(10, S / 4000),
        1,
        "a quarter millisecond is one message"
    );
    assert_eq!(
        bucket.take(10_000, 10 * S),
        4000,
        "never more than a second's worth"
    );
    // Time going backwards (it never should) gives nothing and breaks nothing.
    assert_eq!(bucket.take(10, 5 * S), 0);
    assert_eq!(bucket.take(10, 10 * S + S / 1000), 4);
}

#[test]
fn a_heartbeat_goes_out_after_a_second_of_silence() {
    let mut master = master(10, 100);
    let beat = master.heartbeat(1000 * S).expect("the first at once");
    let mut window = ReplayWindow::default();
    let message = decode(&beat, SyncId::new(51).unwrap(), &key(), &mut window).unwrap();
    assert!(message.entries.is_empty());
    assert_eq!(master.heartbeat(1000 * S + S / 2), None);
    // A message with entries counts as a sign of life.
    let flows = [(flow_key(1), flow(RS1, FlowState::Established, 1000))];
    master.flows(&flows, 1000 * S + S * 9 / 10, &settings(), &destinations());
    assert_eq!(master.heartbeat(1001 * S + S / 2), None);
    assert!(master.heartbeat(1001 * S + S * 9 / 10).is_some());
}

/// Real servers of an IPv6 service, beside IPv4's.
const RS6: (u32, u32) = (5, 1);

fn destinations6() -> Destinations {
    let mut destinations = destinations();
    destinations.insert(RS6, "[2001:db8::11]:80".parse().unwrap());
    destinations
}

fn flow_key6(client_port: u16) -> FlowMapKey {
    FlowMapKey::new(
        SocketAddr::new("2001:db8:cafe::7".parse().unwrap(), client_port),
        "[2001:db8::100]:80".parse().unwrap(),
        IPPROTO_TCP,
    )
    .unwrap()
}

fn template6(last_seen_s: u64) -> (TemplateMapKey, PersistEntry) {
    let service =
        lvs_common::keys::ServiceMapKey::new("2001:db8::100".parse().unwrap(), 80, IPPROTO_TCP);
    (
        TemplateMapKey::new("2001:db8:cafe::".parse().unwrap(), service).unwrap(),
        PersistEntry {
            last_seen_ns: last_seen_s * S,
            real_server_id: RS6.0,
            generation: RS6.1,
        },
    )
}

#[test]
fn an_ipv6_flow_and_template_are_sent_like_ipv4_ones() {
    let mut master = master(10, 100);
    let flows = [
        (flow_key(40000), flow(RS1, FlowState::Established, 1000)),
        (flow_key6(40001), flow(RS6, FlowState::Established, 1000)),
    ];
    let out = master.flows(&flows, 1010 * S, &settings(), &destinations6());
    let service6 = ServiceAddress {
        address: "2001:db8::100".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    };
    assert_eq!(
        entries(&out)[1],
        Entry::Connection(
            Change::New,
            Connection {
                service: service6,
                client: "[2001:db8:cafe::7]:40001".parse().unwrap(),
                real_server: "[2001:db8::11]:80".parse().unwrap(),
                state: FlowState::Established,
                remaining_ms: 890_000,
            }
        )
    );
    assert_eq!(sent(&out), [(40000, Change::New), (40001, Change::New)]);
    // One message of each family.
    assert_eq!(out.messages.len(), 2);
    let again = master.flows(&flows, 1011 * S, &settings(), &destinations6());
    assert_eq!(again, Outgoing::default());
    // A state change is sent, and a received IPv6 flow is not echoed back.
    let changed = [(flow_key6(40001), flow(RS6, FlowState::FinWait, 1011))];
    let out = master.flows(&changed, 1012 * S, &settings(), &destinations6());
    assert_eq!(sent(&out), [(40001, Change::StateChange)]);
    let received = flow(RS6, FlowState::Established, 1012);
    master.received_flow(flow_key6(40002), &received, 1012 * S);
    let out = master.flows(
        &[(flow_key6(40002), received)],
        1013 * S,
        &settings(),
        &destinations6(),
    );
    assert_eq!(out.entries, 0);

    let timeout = |_: &TemplateMapKey| Some(300 * S);
    let out = master.templates(&[template6(1000)], 1010 * S, &destinations6(), timeout);
    assert_eq!(
        entries(&out),
        [Entry::Template(Template {
            service: service6,
            client_network: "2001:db8:cafe::".parse().unwrap(),
            real_server: "[2001:db8::11]:80".parse().unwrap(),
            remaining_ms: 290_000,
        })]
    );
    master.end_pass();
    assert_eq!(
        master.remembered(),
        (3, 1),
        "both families remembered alike"
    );
}

#[test]
fn an_ipv6_flow_with_an_ipv4_real_server_is_not_sent() {
    // The data plane never makes one; if a real server's address changed family under a
    // reused id, the flow names no connection a backup could take.
    let mut master = master(10, 100);
    let flows = [(flow_key6(1), flow(RS1, FlowState::Established, 1000))];
    let out = master.flows(&flows, 1000 * S, &settings(), &destinations6());
    assert_eq!(out, Outgoing::default());
}

#[test]
fn the_rate_counts_messages_of_either_family() {
    // Room for two IPv4 entries (56 bytes) is room for no IPv6 one: at that maxlen IPv6
    // entries are counted as too long, never sent, and IPv4 ones still go.
    let mut small = master(2, 100);
    let flows = [
        (flow_key(1), flow(RS1, FlowState::Established, 1000)),
        (flow_key6(2), flow(RS6, FlowState::Established, 1000)),
    ];
    let out = small.flows(&flows, 1000 * S, &settings(), &destinations6());
    assert_eq!((out.entries, out.deferred, out.too_long), (1, 0, 1));
    assert_eq!(sent(&out), [(1, Change::New)]);

    // Room for four IPv4 or one IPv6 entry (112 bytes: 20 + 112 + 32 = 164), one message a
    // second: the first message's entries go, the rest wait.
    let mut master = master(4, 1);
    let flows: Vec<_> = (1..=3)
        .map(|port| (flow_key6(port), flow(RS6, FlowState::Established, 1000)))
        .chain((4..=6).map(|port| (flow_key(port), flow(RS1, FlowState::Established, 1000))))
        .collect();
    let out = master.flows(&flows, 1000 * S, &settings(), &destinations6());
    assert_eq!(sent(&out), [(1, Change::New)]);
    assert_eq!((out.entries, out.deferred, out.too_long), (1, 5, 0));
    let out = master.flows(&flows, 1001 * S, &settings(), &destinations6());
    assert_eq!(sent(&out), [(2, Change::New)]);
    let out = master.flows(&flows, 1003 * S, &settings(), &destinations6());
    assert_eq!(sent(&out), [(3, Change::New)], "a second's worth, at most");
    let out = master.flows(&flows, 1004 * S, &settings(), &destinations6());
    assert_eq!(
        sent(&out),
        [(4, Change::New), (5, Change::New), (6, Change::New)],
        "the IPv4 entries in one message"
    );
}
