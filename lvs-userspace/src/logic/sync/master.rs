//! A master's side of connection sync, pure: which connections and templates to tell the
//! backups about, and when.
//!
//! The master does not watch packets; it looks at the flow table as the sweep reads it, a
//! slice at a time (`conntrack::Sweeper`), and at the templates at the end of each pass. Its
//! outbox remembers what it last sent about each flow (state, real server, when, and the
//! flow's last packet then) and yields an entry for a flow that is new, whose state or real
//! server changed, or whose refresh is due: the flow saw traffic since it was last sent and
//! the last send is older than half its timeout (at most [`REFRESH_MAX_NS`]), so that a
//! backup's copy, which expires when the master's would have at the time of the send, never
//! expires while the master's flow lives. Templates likewise. What the master has stopped
//! seeing (expired, evicted, or of a real server that is gone) is forgotten by the end of
//! the pass. Both families go through the same outbox, keyed by the family-wide map keys
//! (`FlowMapKey`, `TemplateMapKey`), as the sweep reads them.
//!
//! Messages are bounded by a token bucket of `max_rate` messages a second (a second's worth
//! of burst): what could not be sent stays due and goes at the next pass. IPv6 entries are
//! longer than IPv4 ones, so the bucket is asked for the messages the encoder would make of
//! the due entries, and grants whole messages. Under a `--sync-maxlen` too small for an IPv6
//! entry, IPv6 entries are counted as too long and never sent.
//!
//! When a backup appears, [`Master::resend_all`] makes every flow and template due again, so
//! that a director coming back with an empty table learns every connection. A connection
//! received from a peer is marked as sent ([`Master::received_flow`]), so that two directors
//! running both roles do not echo each other's entries back; it is sent on only when it sees
//! traffic here, which is when this director has taken it over.

use std::{collections::HashMap, hash::Hash, net::SocketAddr};

use lvs_common::{
    flow::{FlowEntry, FlowState, PersistEntry, Settings},
    keys::{FlowMapKey, TemplateMapKey},
};

use super::wire::{Change, Connection, Encoder, Entry, MAX_REMAINING_MS, ServiceAddress, Template};
use crate::{base::values::SyncMaxLen, logic::config::Protocol};

const S: u64 = 1_000_000_000;
/// The longest a flow with traffic goes without being sent again.
pub const REFRESH_MAX_NS: u64 = 60 * S;
/// A master that has sent nothing for this long sends an empty message, so that its backups
/// know it is alive.
pub const HEARTBEAT_NS: u64 = S;

/// Each real server's address and port by id and generation (`conntrack::destinations`).
pub type Destinations = HashMap<(u32, u32), SocketAddr>;

/// What was last sent about one flow or template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    /// The flow's state (0 for a template).
    state: u8,
    /// Real-server id and generation.
    destination: (u32, u32),
    sent_ns: u64,
    /// The entry's `last_seen_ns` when it was sent: a later one means traffic since.
    last_seen_ns: u64,
    /// The [`Outbox::round`] it was sent in (u32 like `pass`, to keep the outbox, one entry
    /// per flow, small; they only ever compare for equality, so wrapping is harmless).
    round: u32,
    /// The last pass it was seen in.
    pass: u32,
}

/// One entry due, with what the outbox records once it is sent.
#[derive(Clone, Copy, Debug)]
struct Due<K> {
    entry: Entry,
    key: K,
    sent: Sent,
}

/// What a master last sent, per flow and per template, of either family.
#[derive(Debug, Default)]
struct Outbox {
    flows: HashMap<FlowMapKey, Sent>,
    templates: HashMap<TemplateMapKey, Sent>,
    /// Bumped by "send everything again": what was sent in an earlier round is due.
    round: u32,
    /// Bumped at the end of each pass of the sweep.
    pass: u32,
}

/// Why an entry is due, or `None` when it is not.
fn change(previous: Option<&Sent>, now: &Sent, round: u32, refresh_ns: u64) -> Option<Change> {
    let Some(previous) = previous else {
        return Some(Change::New);
    };
    let changed = previous.state != now.state || previous.destination != now.destination;
    let refresh_due = now.last_seen_ns > previous.last_seen_ns
        && now.sent_ns.saturating_sub(previous.sent_ns) >= refresh_ns;
    if previous.round != round {
        Some(Change::New)
    } else if changed || refresh_due {
        Some(Change::StateChange)
    } else {
        None
    }
}

/// Why the entry `key` is due, against what was last sent of it in `sent_before` (flows or
/// templates), and a mark that this pass saw it, so that it is not forgotten at the pass's end.
fn compare<K: Eq + Hash>(
    sent_before: &mut HashMap<K, Sent>,
    key: &K,
    now: &Sent,
    round: u32,
    pass: u32,
    timeout_ns: u64,
) -> Option<Change> {
    let previous = sent_before.get_mut(key);
    let why = change(previous.as_deref(), now, round, refresh_after(timeout_ns));
    if let Some(previous) = previous {
        previous.pass = pass;
    }
    why
}

/// How long after a send a flow with traffic is sent again: half its timeout, so that the
/// refresh reaches the backup well before its copy expires, and at most [`REFRESH_MAX_NS`].
fn refresh_after(timeout_ns: u64) -> u64 {
    (timeout_ns / 2).min(REFRESH_MAX_NS)
}

fn protocol(number: u8) -> Option<Protocol> {
    [Protocol::Tcp, Protocol::Udp]
        .into_iter()
        .find(|protocol| protocol.number() == number)
}

/// Milliseconds left of `timeout_ns` after `age_ns`, in the wire's range.
fn remaining_ms(timeout_ns: u64, age_ns: u64) -> u32 {
    let left = timeout_ns.saturating_sub(age_ns) / 1_000_000;
    left.clamp(1, u64::from(MAX_REMAINING_MS)) as u32
}

impl Outbox {
    fn flows_due(
        &mut self,
        flows: &[(FlowMapKey, FlowEntry)],
        now_ns: u64,
        settings: &Settings,
        destinations: &Destinations,
    ) -> Vec<Due<FlowMapKey>> {
        let mut due = Vec::new();
        for (key, flow) in flows {
            let timeout_ns = settings.timeout_ns(flow.state);
            let age_ns = now_ns.saturating_sub(flow.last_seen_ns);
            if age_ns > timeout_ns {
                // Expired: the sweep deletes it, and the backups' copies expire on their own.
                self.flows.remove(key);
                continue;
            }
            let destination = (flow.real_server_id, flow.generation);
            let (Some(real_server), Some(protocol), Some(state)) = (
                destinations.get(&destination),
                protocol(key.protocol()),
                FlowState::from_u8(flow.state),
            ) else {
                // No real server to name (it was replaced), or not a flow the wire can carry:
                // not seen, so forgotten at the end of the pass.
                continue;
            };
            let sent = Sent {
                state: flow.state,
                destination,
                sent_ns: now_ns,
                last_seen_ns: flow.last_seen_ns,
                round: self.round,
                pass: self.pass,
            };
            let why = compare(
                &mut self.flows,
                key,
                &sent,
                self.round,
                self.pass,
                timeout_ns,
            );
            let Some(why) = why else {
                continue;
            };
            let virtual_address = key.virtual_address();
            let entry = Entry::Connection(
                why,
                Connection {
                    service: ServiceAddress {
                        address: virtual_address.ip(),
                        port: virtual_address.port(),
                        protocol,
                    },
                    client: key.client(),
                    real_server: *real_server,
                    state,
                    remaining_ms: remaining_ms(timeout_ns, age_ns),
                },
            );
            if entry.check().is_ok() {
                due.push(Due {
                    entry,
                    key: *key,
                    sent,
                });
            }
        }
        due
    }

    fn templates_due(
        &mut self,
        templates: &[(TemplateMapKey, PersistEntry)],
        now_ns: u64,
        destinations: &Destinations,
        template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
    ) -> Vec<Due<TemplateMapKey>> {
        let mut due = Vec::new();
        for (key, template) in templates {
            let age_ns = now_ns.saturating_sub(template.last_seen_ns);
            let Some(timeout_ns) = template_timeout_ns(key).filter(|&t| age_ns <= t) else {
                self.templates.remove(key);
                continue;
            };
            let destination = (template.real_server_id, template.generation);
            let service = key.service();
            let (Some(real_server), Some(protocol)) =
                (destinations.get(&destination), protocol(service.protocol()))
            else {
                continue;
            };
            let sent = Sent {
                state: 0,
                destination,
                sent_ns: now_ns,
                last_seen_ns: template.last_seen_ns,
                round: self.round,
                pass: self.pass,
            };
            let why = compare(
                &mut self.templates,
                key,
                &sent,
                self.round,
                self.pass,
                timeout_ns,
            );
            if why.is_none() {
                continue;
            }
            let entry = Entry::Template(Template {
                service: ServiceAddress {
                    address: service.address(),
                    port: service.port(),
                    protocol,
                },
                client_network: key.client(),
                real_server: *real_server,
                remaining_ms: remaining_ms(timeout_ns, age_ns),
            });
            if entry.check().is_ok() {
                due.push(Due {
                    entry,
                    key: *key,
                    sent,
                });
            }
        }
        due
    }

    /// Forgets what was not seen during the pass that ends: flows gone from the table, or
    /// whose real server is gone.
    fn end_pass(&mut self) {
        let pass = self.pass;
        self.flows.retain(|_, sent| sent.pass == pass);
        self.templates.retain(|_, sent| sent.pass == pass);
        self.pass = self.pass.wrapping_add(1);
    }
}

/// The master's bound on messages a second: a bucket of `rate` tokens (one second's worth),
/// refilled continuously. Time is given, never read, so that tests choose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Messages a second.
    rate: u64,
    /// Tokens, in billionths of a message, so that refills of a few nanoseconds count.
    tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ns`.
    pub fn new(rate: u32, now_ns: u64) -> Self {
        TokenBucket {
            rate: rate.into(),
            tokens: u64::from(rate) * S,
            last_ns: now_ns,
        }
    }

    /// Takes up to `wanted` tokens, and says how many it took.
    pub fn take(&mut self, wanted: usize, now_ns: u64) -> usize {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let capacity = self.rate * S;
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(capacity);
        let granted = (self.tokens / S).min(wanted as u64);
        self.tokens -= granted * S;
        granted as usize
    }
}

/// What a master has to send after looking at part of its table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The datagrams' payloads, in order.
    pub messages: Vec<Vec<u8>>,
    /// The entries they carry.
    pub entries: usize,
    /// Entries that were due but over the rate bound: they stay due.
    pub deferred: usize,
    /// IPv6 entries that were due but that no message of `--sync-maxlen` holds (below
    /// [`IPV6_LEAST_MAX_LEN`](super::wire::IPV6_LEAST_MAX_LEN)): never sent, so that no
    /// entry is split or overflows it.
    pub too_long: usize,
}

/// A running sync master: its outbox, rate bound and encoder.
#[derive(Debug)]
pub struct Master {
    outbox: Outbox,
    bucket: TokenBucket,
    encoder: Encoder,
    max_len: SyncMaxLen,
    /// When it last sent a message, heartbeats included.
    last_sent_ns: Option<u64>,
}

impl Master {
    pub fn new(encoder: Encoder, max_len: SyncMaxLen, max_rate: u32, now_ns: u64) -> Self {
        Master {
            outbox: Outbox::default(),
            bucket: TokenBucket::new(max_rate, now_ns),
            encoder,
            max_len,
            last_sent_ns: None,
        }
    }

    /// The messages for one slice of the flow table, as the sweep read it.
    pub fn flows(
        &mut self,
        flows: &[(FlowMapKey, FlowEntry)],
        now_ns: u64,
        settings: &Settings,
        destinations: &Destinations,
    ) -> Outgoing {
        let mut due = self.outbox.flows_due(flows, now_ns, settings, destinations);
        let sent = self.send(&mut due, now_ns);
        for due in &due[..sent.entries] {
            self.outbox.flows.insert(due.key, due.sent);
        }
        sent
    }

    /// The messages for the templates, read at the end of a pass; `template_timeout_ns` is
    /// the persistence timeout of a template's service (none: gone or not persistent).
    pub fn templates(
        &mut self,
        templates: &[(TemplateMapKey, PersistEntry)],
        now_ns: u64,
        destinations: &Destinations,
        template_timeout_ns: impl Fn(&TemplateMapKey) -> Option<u64>,
    ) -> Outgoing {
        let mut due =
            self.outbox
                .templates_due(templates, now_ns, destinations, template_timeout_ns);
        let sent = self.send(&mut due, now_ns);
        for due in &due[..sent.entries] {
            self.outbox.templates.insert(due.key, due.sent);
        }
        sent
    }

    /// The pass of the sweep is over: forget what it did not see.
    pub fn end_pass(&mut self) {
        self.outbox.end_pass();
    }

    /// Makes every flow and template due again, at the next pass: a backup has appeared.
    pub fn resend_all(&mut self) {
        self.outbox.round = self.outbox.round.wrapping_add(1);
    }

    /// Records a connection a peer sent and this director installed, as if this master had
    /// sent it: it is not echoed back, and goes out only once it sees traffic here.
    pub fn received_flow(&mut self, key: FlowMapKey, flow: &FlowEntry, now_ns: u64) {
        let sent = Sent {
            state: flow.state,
            destination: (flow.real_server_id, flow.generation),
            sent_ns: now_ns,
            last_seen_ns: flow.last_seen_ns,
            round: self.outbox.round,
            pass: self.outbox.pass,
        };
        self.outbox.flows.insert(key, sent);
    }

    /// The same for a template.
    pub fn received_template(&mut self, key: TemplateMapKey, template: &PersistEntry, now_ns: u64) {
        let sent = Sent {
            state: 0,
            destination: (template.real_server_id, template.generation),
            sent_ns: now_ns,
            last_seen_ns: template.last_seen_ns,
            round: self.outbox.round,
            pass: self.outbox.pass,
        };
        self.outbox.templates.insert(key, sent);
    }

    /// An empty message when nothing was sent for [`HEARTBEAT_NS`], so that backups know
    /// this master is alive. Heartbeats are not bounded by the rate: one a second.
    pub fn heartbeat(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        let due = self
            .last_sent_ns
            .is_none_or(|last| now_ns.saturating_sub(last) >= HEARTBEAT_NS);
        if !due {
            return None;
        }
        self.last_sent_ns = Some(now_ns);
        Some(self.encoder.heartbeat())
    }

    /// How many flows and templates the outbox remembers.
    pub fn remembered(&self) -> (usize, usize) {
        (self.outbox.flows.len(), self.outbox.templates.len())
    }

    /// Encodes as many of `due`'s entries as the rate allows, in order, after dropping from
    /// it those no message holds; the caller records the first `entries` of what remains in
    /// `due` as sent.
    fn send<K>(&mut self, due: &mut Vec<Due<K>>, now_ns: u64) -> Outgoing {
        let before = due.len();
        due.retain(|due| Encoder::fits(self.max_len, &due.entry));
        let too_long = before - due.len();
        if due.is_empty() {
            return Outgoing {
                too_long,
                ..Outgoing::default()
            };
        }
        let batch: Vec<Entry> = due.iter().map(|due| due.entry).collect();
        // The rate counts messages, and entries differ in length: the whole messages the
        // bucket grants are the first ones the encoder would make of the batch.
        let batches = Encoder::batches(self.max_len, &batch);
        let granted = self.bucket.take(batches.len(), now_ns);
        let entries = granted.checked_sub(1).map_or(0, |last| batches[last].end);
        // Every entry was checked when it became due, and fits, so encoding cannot fail.
        let messages = self.encoder.encode(&batch[..entries]).unwrap_or_default();
        if !messages.is_empty() {
            self.last_sent_ns = Some(now_ns);
        }
        let entries = if messages.is_empty() { 0 } else { entries };
        Outgoing {
            messages,
            entries,
            deferred: due.len() - entries,
            too_long,
        }
    }
}

#[cfg(test)]
mod tests;
