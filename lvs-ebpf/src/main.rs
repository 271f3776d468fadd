//! The lvs XDP data plane: LVS direct routing.
//!
//! A frame for a virtual service follows its connection's entry in the flow table; a frame of a
//! new connection gets a real server from the service's lookup table (the next entry of its
//! schedule, or the slot its hash names) and is recorded. The frame's Ethernet destination is
//! set to the real server's MAC and its source to the director's, and it leaves through the
//! interface it came in on (XDP_TX). Every other frame is passed to the kernel untouched. Each
//! verdict is counted by reason.
//!
//! Architecture invariant: this program never decides policy. The controller builds the lookup
//! tables and schedules; the program follows connections, walks or hashes, and rewrites.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The flow table's writers need an atomic compare-and-swap, which `core`'s atomic types do
// not offer on the BPF target; the nested build enables the compiler's intrinsics.
#![cfg_attr(
    target_arch = "bpf",
    feature(core_intrinsics),
    allow(internal_features)
)]

#[cfg(target_arch = "bpf")]
mod clock;
#[cfg(target_arch = "bpf")]
mod family;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod packet;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
        macros::xdp,
        maps::lpm_trie::Key as LpmKey,
        programs::XdpContext,
    };
    use lvs_common::{
        Counter, DirectorEntry, IPPROTO_TCP, LOOKUP_TABLE_SIZE, NO_REAL_SERVER, REAL_SERVER_USABLE,
        RealServerEntry, SERVICE_RING, ServiceEntry, ServiceKey,
        flow::{
            FLOW_PERSISTENT, FLOW_SEEN_MAX, FLOW_SEEN_SHIFT, FlowEntry, FlowKey, FlowState,
            PersistEntry, PersistKey, SETTINGS_DENY_LIST, SETTINGS_DENY_LIST6,
            SETTINGS_DROP_NODEST, Settings, counts_as_seen, initial_state, next_tcp_state,
            packets_seen, schedule_hash,
        },
        service_table::{SERVICE_TABLE_PROBES, home_slot, is_empty, probe_slot},
    };
    use network_types::eth::EthHdr;

    use crate::{
        clock,
        family::Family,
        flows::{self, Found},
        maps::*,
        packet::{self, Flow, Kind},
    };

    /// The longest a flow's `last_seen_ns` may lag behind its last packet. An established
    /// packet writes its flow entry only when the stamp is older than this (or a sixteenth of
    /// the state's timeout, if shorter) or its TCP state changes, so a busy flow's entry stays
    /// clean in every CPU's cache instead of being written on every packet. A flow can
    /// therefore look idle up to this much longer than it is: at most 1 s, and at most 1/16 of
    /// its timeout. A persistent flow refreshes its client's template on the same stamp.
    const STAMP_INTERVAL_NS: u64 = 1_000_000_000;

    /// Set to 1 by the controller at load time (`--trace-packets`) to log every forwarding
    /// decision. When 0 the verifier removes the logging branch as dead code, so the default
    /// costs nothing per packet (a log line costs about 125 ns here).
    #[unsafe(no_mangle)]
    static TRACE_PACKETS: u8 = 0;

    // Inlined into the entry point the macro wraps it in, which otherwise reaches it through
    // a BPF-to-BPF call on every frame.
    #[xdp]
    #[inline(always)]
    pub fn lvs(ctx: XdpContext) -> u32 {
        let (action, reason) = match forward(&ctx) {
            Ok(reason) => (XDP_TX, reason),
            Err(reason) => (action_for(reason), reason),
        };
        count(reason);
        action
    }

    /// The XDP action that goes with a reason for not forwarding.
    #[inline(always)]
    fn action_for(reason: Counter) -> u32 {
        match reason {
            Counter::DropNoRealServer | Counter::DropRealServerGone | Counter::DropDenied => {
                XDP_DROP
            }
            Counter::Aborted => XDP_ABORTED,
            _ => XDP_PASS,
        }
    }

    /// Rewrites the frame towards its real server and says why (a connection's packet, or an
    /// ICMP error about one), or says why not.
    #[inline(always)]
    fn forward(ctx: &XdpContext) -> Result<Counter, Counter> {
        let (ether_type, offset) = packet::parse_ethernet(ctx)?;
        let settings = SETTINGS.get(0).ok_or(Counter::Aborted)?;
        if packet::is_ipv4(ether_type) {
            let ipv4 = packet::parse_ipv4(ctx, offset)?;
            // The deny list comes before any other work, and costs no lookup while it holds
            // no IPv4 prefix.
            if settings.flags & SETTINGS_DENY_LIST != 0 {
                deny(&ipv4)?;
            }
            let flow = packet::parse_flow(ctx, &ipv4)?;
            forward_flow(ctx, &flow, settings)
        } else if packet::is_ipv6(ether_type) {
            let ipv6 = packet::parse_ipv6(ctx, offset)?;
            // As for IPv4: before the extension headers or any lookup, and only while the
            // list holds IPv6 prefixes.
            if settings.flags & SETTINGS_DENY_LIST6 != 0 {
                deny6(&ipv6)?;
            }
            let flow = packet::parse_flow6(ctx, &ipv6)?;
            forward_flow(ctx, flow, settings)
        } else {
            Err(Counter::PassNotIp)
        }
    }

    /// Forwards a parsed frame of either family: its service, then its connection's real
    /// server (or a new one's), then the rewrite and the counts.
    #[inline(always)]
    fn forward_flow<A: Family>(
        ctx: &XdpContext,
        flow: &Flow<A>,
        settings: &Settings,
    ) -> Result<Counter, Counter> {
        let service = find_service(flow)?;
        // Before the flow table: an invalid frame, or one for another host, must never make
        // or refresh a flow.
        packet::check_valid(ctx, flow)?;
        let director = DIRECTOR.get(0).ok_or(Counter::Aborted)?;
        if !packet::is_for(ctx, &director.mac) {
            return Err(Counter::PassOtherHost);
        }
        let flow_key = flow_key(flow);
        let buckets = flows::buckets(&flow_key, settings);
        if flow.kind == Kind::IcmpError {
            return relay_icmp_error(ctx, &flow_key, buckets, director);
        }
        let now = clock::coarse_now_ns();

        let followed = match flows::find(&flow_key, buckets) {
            Some(found) => follow(found, flow, service, settings, now)?,
            None => None,
        };
        let (real_server_id, real_server, new_connections) = match followed {
            Some((id, real_server)) => (id, real_server, 0),
            None => {
                let (id, real_server) = schedule(flow, &flow_key, buckets, service, settings, now)?;
                (id, real_server, 1)
            }
        };

        let eth: *mut EthHdr = packet::ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`; the frame is ours to rewrite in XDP.
        unsafe { rewrite_macs(eth.cast(), &real_server.mac, &director.mac) };

        let ip_bytes = u64::from(flow.ip_len);
        add_traffic(&SERVICE_STATS, service.index, ip_bytes, new_connections);
        add_traffic(
            &REAL_SERVER_STATS,
            real_server_id,
            ip_bytes,
            new_connections,
        );

        // SAFETY: a read of a plain global that the loader may have patched.
        if unsafe { core::ptr::read_volatile(&TRACE_PACKETS) } != 0 {
            A::trace(
                ctx,
                &flow.src_addr,
                flow.src_port,
                real_server_id,
                new_connections,
            );
        }
        Ok(Counter::TxForwarded)
    }

    /// The frame's virtual service, from the family's service table, or from its `SERVICES`
    /// map while it has none (`lvs_common::service_table` says why and how).
    ///
    /// The entry is read where it is used rather than copied: a copy's sixteen bytes of IPv6
    /// persistence mask would be held in registers across the flow table's lookup, and spilled
    /// to a stack that is too small.
    #[inline(always)]
    fn find_service<A: Family>(flow: &Flow<A>) -> Result<&'static ServiceEntry, Counter> {
        let Some(table) = A::service_table() else {
            let key = ServiceKey {
                addr: flow.dst_addr,
                port: flow.dst_port,
                protocol: flow.protocol,
                _pad: 0,
            };
            // SAFETY: the controller only inserts and removes whole entries; a concurrent
            // update yields the old or the new service, both valid.
            return unsafe { A::services().get(key) }.ok_or(Counter::PassNotService);
        };
        let home = home_slot(&flow.dst_addr, flow.dst_port, flow.protocol);
        for probe in 0..SERVICE_TABLE_PROBES {
            let slot = table
                .get(probe_slot(home, probe))
                .ok_or(Counter::PassNotService)?;
            if is_empty(slot) {
                break;
            }
            if A::is_service_of(slot, flow) {
                return Ok(&slot.entry);
            }
        }
        Err(Counter::PassNotService)
    }

    /// Drops a frame whose source is in the deny list, counting it against the longest
    /// prefix that holds it.
    #[inline(always)]
    fn deny(ipv4: &packet::Ipv4At) -> Result<(), Counter> {
        let key = LpmKey::new(32, ipv4.source());
        match DENY.get(&key) {
            Some(entry) => {
                add_traffic(&DENY_STATS, entry.index, u64::from(ipv4.total_len()), 0);
                Err(Counter::DropDenied)
            }
            None => Ok(()),
        }
    }

    /// `deny` for an IPv6 frame, in the IPv6 prefixes' trie (whose counter slots are shared
    /// with the IPv4 prefixes').
    #[inline(always)]
    fn deny6(ipv6: &packet::Ipv6At) -> Result<(), Counter> {
        // Built in place, the address copied as `packet::copy_address` copies: a plain copy
        // becomes a call to a byte-wise memmove subprogram (about 10 ns a frame here), and a
        // zeroed key a call to a memset one.
        let mut key = core::mem::MaybeUninit::<LpmKey<[u8; 16]>>::uninit();
        // SAFETY: both fields are written before the key is read (a key is plain data, a `u32`
        // and sixteen bytes with no padding), and it is read in place, not moved.
        let key = unsafe {
            let at = key.as_mut_ptr();
            (*at).prefix_len = 128;
            packet::copy_address(&mut (*at).data, ipv6.source());
            &*at
        };
        match DENY6.get(key) {
            Some(entry) => {
                add_traffic(&DENY_STATS, entry.index, u64::from(ipv6.packet_len()), 0);
                Err(Counter::DropDenied)
            }
            None => Ok(()),
        }
    }

    /// Sends an ICMP error about a known connection to that connection's real server, as IPVS
    /// does: under direct routing the real server sent the packet the error is about, and only
    /// its stack can act on it (a smaller path MTU, an unreachable client). The flow entry is
    /// only read: an error is not traffic of the connection and keeps nothing alive.
    #[inline(always)]
    fn relay_icmp_error<A: Family>(
        ctx: &XdpContext,
        key: &FlowKey<A>,
        buckets: [u32; 2],
        director: &DirectorEntry,
    ) -> Result<Counter, Counter> {
        let entry = flows::find(key, buckets)
            .ok_or(Counter::PassIcmpUnknownFlow)?
            .entry;
        let real_server = match REAL_SERVERS.get(entry.real_server_id) {
            Some(rs) if rs.flags & REAL_SERVER_USABLE != 0 && rs.generation == entry.generation => {
                rs
            }
            _ => return Err(Counter::PassIcmpUnknownFlow),
        };
        let eth: *mut EthHdr = packet::ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`; the frame is ours to rewrite in XDP.
        unsafe { rewrite_macs(eth.cast(), &real_server.mac, &director.mac) };
        Ok(Counter::TxIcmpError)
    }

    /// The flow table's key for a frame. Built from a zeroed key so that the padding costs no
    /// call: a struct literal's `[0; 3]` padding makes LLVM call a byte-wise memset subprogram.
    #[inline(always)]
    fn flow_key<A: Family>(flow: &Flow<A>) -> FlowKey<A> {
        // SAFETY: `FlowKey` is plain bytes; all zeroes is a valid value.
        let mut key: FlowKey<A> = unsafe { core::mem::zeroed() };
        key.src_addr = flow.src_addr;
        key.dst_addr = flow.dst_addr;
        key.src_port = flow.src_port;
        key.dst_port = flow.dst_port;
        key.protocol = flow.protocol;
        key
    }

    /// Writes the real server's MAC as the destination and the director's as the source, byte
    /// by byte. Assigning the `[u8; 6]` fields instead makes LLVM call a byte-wise memmove
    /// subprogram twice, and each BPF-to-BPF call costs more here than the twelve stores.
    ///
    /// # Safety
    /// `frame` must point at least 12 writable bytes into the packet.
    #[inline(always)]
    unsafe fn rewrite_macs(frame: *mut u8, destination: &[u8; 6], source: &[u8; 6]) {
        for i in 0..6 {
            // SAFETY: i < 6 and i + 6 < 12, within what the caller vouches for.
            unsafe {
                *frame.add(i) = destination[i];
                *frame.add(6 + i) = source[i];
            }
        }
    }

    /// Follows a known connection: its real server if the entry is still valid, `None` when it
    /// must be scheduled anew (it expired, or its real server is gone), or the drop reason when
    /// the director is set to drop packets of connections whose real server is gone.
    ///
    /// Decisions are made on the entry as it was read whole; the stamp, the state and the
    /// count of packets seen are then written in place, a word or a byte each, without the slot's
    /// sequence word (`lvs_common::flow_table`): should another CPU be rewriting the slot for
    /// another connection at that moment, that connection gets this stamp or state, and at
    /// worst expires at another time.
    #[inline(always)]
    fn follow<A: Family>(
        found: Found<A>,
        flow: &Flow<A>,
        service: &ServiceEntry,
        settings: &Settings,
        now: u64,
    ) -> Result<Option<(u32, &'static RealServerEntry)>, Counter> {
        let Found { slot, entry } = found;
        // SAFETY: the slot is an element of the flow table; its fields are plain data.
        let stored = unsafe { &mut (*slot).entry };
        let timeout = settings.timeout_ns(entry.state);
        if now.saturating_sub(entry.last_seen_ns) > timeout {
            return Ok(None);
        }
        let id = entry.real_server_id;
        let real_server = match REAL_SERVERS.get(id) {
            Some(rs) if rs.flags & REAL_SERVER_USABLE != 0 && rs.generation == entry.generation => {
                rs
            }
            _ if settings.flags & SETTINGS_DROP_NODEST != 0 => {
                return Err(Counter::DropRealServerGone);
            }
            _ => return Ok(None),
        };
        if packets_seen(entry.flags) < FLOW_SEEN_MAX
            && counts_as_seen(flow.protocol, flow.tcp_flags)
        {
            // The connection's second to fourth packets only.
            stored.flags = entry.flags + (1 << FLOW_SEEN_SHIFT);
        }
        let mut last_seen_ns = entry.last_seen_ns;
        if flow.protocol == IPPROTO_TCP {
            let state = FlowState::from_u8(entry.state).unwrap_or(FlowState::Close);
            let next = next_tcp_state(state, flow.tcp_flags) as u8;
            if next != entry.state {
                stored.state = next;
                stored.last_seen_ns = now;
                last_seen_ns = now;
            }
        }
        let idle = now.saturating_sub(last_seen_ns);
        if idle > (timeout >> 4).min(STAMP_INTERVAL_NS) {
            stored.last_seen_ns = now;
            if entry.flags & FLOW_PERSISTENT != 0 {
                refresh_template(flow, service, id, now);
            }
        }
        Ok(Some((id, real_server)))
    }

    /// Picks a real server for a new connection (through the client's persistence template when
    /// the service is persistent) and records the connection.
    #[inline(always)]
    fn schedule<A: Family>(
        flow: &Flow<A>,
        flow_key: &FlowKey<A>,
        buckets: [u32; 2],
        service: &ServiceEntry,
        settings: &Settings,
        now: u64,
    ) -> Result<(u32, &'static RealServerEntry), Counter> {
        let (id, real_server) = if service.persist_timeout_s != 0 {
            schedule_persistent(flow, service, now)?
        } else {
            let id = pick(flow, service)?;
            (id, usable_real_server(id)?)
        };
        let flags = if service.persist_timeout_s != 0 {
            FLOW_PERSISTENT
        } else {
            0
        };
        let entry = new_flow_entry(
            now,
            id,
            real_server.generation,
            initial_state(flow.protocol, flow.tcp_flags) as u8,
            flags,
        );
        flows::record(flow_key, &entry, buckets, now, settings);
        Ok((id, real_server))
    }

    /// A flow entry built as three words. A struct literal (or a zeroed value) makes LLVM zero
    /// the padding with a call to a byte-wise memset subprogram, which costs more than the
    /// whole entry; three word stores cost nothing. The layout is `FlowEntry`'s on a
    /// little-endian target (bpfel): `last_seen_ns`, then `real_server_id` and `generation`,
    /// then `state`, `flags` and six bytes of zero padding.
    #[inline(always)]
    fn new_flow_entry(
        last_seen_ns: u64,
        real_server_id: u32,
        generation: u32,
        state: u8,
        flags: u8,
    ) -> FlowEntry {
        let words: [u64; 3] = [
            last_seen_ns,
            u64::from(real_server_id) | u64::from(generation) << 32,
            u64::from(state) | u64::from(flags) << 8,
        ];
        // SAFETY: `FlowEntry` is `repr(C)`, 24 bytes of integers and bytes with explicit
        // padding (size asserted in lvs-common), so any 24 bytes are a valid value.
        unsafe { core::mem::transmute::<[u64; 3], FlowEntry>(words) }
    }

    /// The client's template's real server while the template is valid, or a new pick that
    /// becomes the client's template.
    #[inline(always)]
    fn schedule_persistent<A: Family>(
        flow: &Flow<A>,
        service: &ServiceEntry,
        now: u64,
    ) -> Result<(u32, &'static RealServerEntry), Counter> {
        let key = template_key(flow, service);
        if let Some(template) = A::templates().get_ptr_mut(key) {
            // SAFETY: as in `follow`.
            let template = unsafe { &mut *template };
            let timeout_ns = u64::from(service.persist_timeout_s) * 1_000_000_000;
            if now.saturating_sub(template.last_seen_ns) <= timeout_ns
                && let Some(rs) = REAL_SERVERS.get(template.real_server_id)
                && rs.flags & REAL_SERVER_USABLE != 0
                && rs.generation == template.generation
            {
                template.last_seen_ns = now;
                return Ok((template.real_server_id, rs));
            }
        }
        let id = pick(flow, service)?;
        let real_server = usable_real_server(id)?;
        let template = PersistEntry {
            last_seen_ns: now,
            real_server_id: id,
            generation: real_server.generation,
        };
        let _ = A::templates().insert(key, template, 0);
        Ok((id, real_server))
    }

    /// Keeps a persistent client's template alive while one of its connections is in use.
    #[inline(always)]
    fn refresh_template<A: Family>(
        flow: &Flow<A>,
        service: &ServiceEntry,
        real_server_id: u32,
        now: u64,
    ) {
        if let Some(template) = A::templates().get_ptr_mut(template_key(flow, service)) {
            // SAFETY: as in `follow`.
            let template = unsafe { &mut *template };
            if template.real_server_id == real_server_id {
                template.last_seen_ns = now;
            }
        }
    }

    /// The client's template's key: its address masked with the service's persistence mask
    /// (an IPv4 netmask, or an IPv6 prefix over all sixteen bytes).
    #[inline(always)]
    fn template_key<A: Family>(flow: &Flow<A>, service: &ServiceEntry) -> PersistKey<A> {
        PersistKey {
            client: A::masked_client(flow, service),
            vip: A::vip(flow),
            vport: flow.dst_port,
            protocol: flow.protocol,
            _pad: 0,
        }
    }

    /// The service's scheduler's choice for a new connection: the next entry of its schedule
    /// for ring schedulers, the slot its hash names for hash schedulers.
    #[inline(always)]
    fn pick<A: Family>(flow: &Flow<A>, service: &ServiceEntry) -> Result<u32, Counter> {
        let slot = if service.flags & SERVICE_RING != 0 {
            let ring_len = service.ring_len;
            if ring_len == 0 || ring_len > LOOKUP_TABLE_SIZE {
                return Err(Counter::DropNoRealServer);
            }
            let cursor = CURSORS.get_ptr_mut(service.index).ok_or(Counter::Aborted)?;
            // SAFETY: this CPU's own slot; nothing else writes it while this program runs here.
            unsafe {
                let position = *cursor % ring_len;
                *cursor = (position + 1) % ring_len;
                position
            }
        } else {
            // IPv6 addresses are folded to 32 bits as IPVS's sh and dh fold them; an IPv4
            // address is its own fold.
            schedule_hash(
                service.flags,
                flow.src_addr.fold(),
                flow.dst_addr.fold(),
                flow.src_port,
            ) % LOOKUP_TABLE_SIZE
        };
        let id = *LOOKUP
            .get(service.index * LOOKUP_TABLE_SIZE + slot)
            .ok_or(Counter::DropNoRealServer)?;
        if id == NO_REAL_SERVER {
            return Err(Counter::DropNoRealServer);
        }
        Ok(id)
    }

    #[inline(always)]
    fn usable_real_server(id: u32) -> Result<&'static RealServerEntry, Counter> {
        match REAL_SERVERS.get(id) {
            Some(rs) if rs.flags & REAL_SERVER_USABLE != 0 => Ok(rs),
            _ => Err(Counter::DropNoRealServer),
        }
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this crate builds as an empty binary, so `cargo clippy --workspace` and
/// `cargo test --workspace` do not trip over it.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
