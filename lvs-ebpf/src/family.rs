//! What differs between IPv4 and IPv6 once a frame is parsed: each family's maps, and the few
//! rules of the validation that are the family's own.
//!
//! The code that follows connections, schedules them and rewrites frames is written once,
//! generic over `Family`, and the compiler makes one copy for each family. So both families
//! obey the same rules, and the IPv4 copy is, but for the layout of `Flow`, the code it was
//! before IPv6 came: its keys stay IPv4-sized, and nothing it runs asks which family it is.

use aya_ebpf::{
    maps::{Array, HashMap, LruHashMap},
    programs::XdpContext,
};
use lvs_common::{
    Address, Ipv4Bytes, Ipv6Bytes, ServiceEntry, ServiceKey,
    flow::{PersistEntry, PersistKey},
    flow_table::FlowBucket,
    service_table::ServiceSlot,
};

use crate::{
    maps::*,
    packet::{self, Flow},
};

/// An address family the data plane forwards: its address type, with the maps keyed by it.
pub trait Family: Address + 'static {
    /// The furthest into a frame that a transport header (or an ICMP header) can start, which
    /// the validation gives the offsets it reads back opaquely, so that the verifier knows
    /// them to be bounded.
    const MAX_L4_OFFSET: usize;
    /// Whether a UDP checksum of zero (no checksum) is refused: IPv6 requires a checksum
    /// (RFC 8200, section 8.1), and its stack drops a datagram without one; IPv4 allows it.
    const UDP_CHECKSUM_REQUIRED: bool;

    /// Virtual services by (VIP, port, protocol): what frames fall back on while the family
    /// has no service table.
    fn services() -> &'static HashMap<ServiceKey<Self>, ServiceEntry>;
    /// The family's service table, if the controller has put one in.
    fn service_table() -> Option<&'static ServiceTable<Self>>;
    /// Whether a service table's slot holds the frame's service (its destination address and
    /// port, and its protocol), compared a word at a time.
    fn is_service_of(slot: &ServiceSlot<Self>, flow: &Flow<Self>) -> bool;
    /// Connections, client to VIP, in buckets (`lvs_common::flow_table`).
    fn flows() -> &'static Array<FlowBucket<Self>>;
    /// Persistence templates by client network and service.
    fn templates() -> &'static LruHashMap<PersistKey<Self>, PersistEntry>;

    /// Whether the network header at `ip_offset`, `header_len` bytes long, passes the checks
    /// of its own that the kernel makes (IPv4's header checksum; IPv6 has none).
    fn header_ok(ctx: &XdpContext, ip_offset: usize, header_len: usize) -> bool;
    /// Whether the kernel would refuse the frame's source address (`ip_src`) when it arrives
    /// from the network for its destination (`ip_dst`): a martian, or the destination itself
    /// (LAND).
    fn is_martian(flow: &Flow<Self>) -> bool;
    /// Whether an ICMP error's quote is of a packet from the address the error is sent to
    /// (the quote's source, `dst_addr`, is the frame's destination, `ip_dst`).
    fn quotes_destination(flow: &Flow<Self>) -> bool;

    /// The frame's client (`src_addr`) masked with the service's persistence mask: the
    /// client of its persistence template.
    fn masked_client(flow: &Flow<Self>, service: &ServiceEntry) -> Self;

    /// The frame's VIP (`dst_addr`), copied as whole words: a plain copy of IPv6's 16 bytes
    /// (from the per-CPU slot the IPv6 flow is parsed into) compiles to a call to a byte-wise
    /// memmove subprogram, which a persistent service's new flows and template refreshes
    /// paid (an estimated 10-15 ns; not measured, no bench has such a row).
    fn vip(flow: &Flow<Self>) -> Self;

    /// Logs a forwarding decision (only with `--trace-packets`).
    fn trace(ctx: &XdpContext, client: &Self, port: [u8; 2], real_server_id: u32, new: u64);
}

impl Family for Ipv4Bytes {
    const MAX_L4_OFFSET: usize = packet::MAX_IP_OFFSET + packet::MAX_IPV4_HEADER_LEN;
    const UDP_CHECKSUM_REQUIRED: bool = false;

    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKey<Self>, ServiceEntry> {
        &SERVICES
    }

    #[inline(always)]
    fn service_table() -> Option<&'static ServiceTable<Self>> {
        SERVICE_TABLE.get(0)
    }

    #[inline(always)]
    fn is_service_of(slot: &ServiceSlot<Self>, flow: &Flow<Self>) -> bool {
        let slot = key_words::<2, Self>(slot);
        slot[0] == u32::from_ne_bytes(flow.dst_addr) && slot[1] == port_word(flow)
    }

    #[inline(always)]
    fn flows() -> &'static Array<FlowBucket<Self>> {
        &FLOWS
    }

    #[inline(always)]
    fn templates() -> &'static LruHashMap<PersistKey<Self>, PersistEntry> {
        &PERSIST
    }

    #[inline(always)]
    fn header_ok(ctx: &XdpContext, ip_offset: usize, header_len: usize) -> bool {
        packet::ipv4_checksum_ok(ctx, ip_offset, header_len)
    }

    /// 0.0.0.0/8, 127.0.0.0/8, multicast, the limited broadcast, or the destination itself.
    #[inline(always)]
    fn is_martian(flow: &Flow<Self>) -> bool {
        let source = flow.ip_src;
        source[0] == 0
            || source[0] == 127
            || source[0] & 0xf0 == 0xe0
            || source == [0xff; 4]
            || source == flow.ip_dst
    }

    #[inline(always)]
    fn quotes_destination(flow: &Flow<Self>) -> bool {
        flow.dst_addr == flow.ip_dst
    }

    #[inline(always)]
    fn masked_client(flow: &Flow<Self>, service: &ServiceEntry) -> Self {
        flow.src_addr.masked(&service.persist_mask)
    }

    #[inline(always)]
    fn vip(flow: &Flow<Self>) -> Self {
        flow.dst_addr
    }

    #[inline(always)]
    fn trace(ctx: &XdpContext, client: &Self, port: [u8; 2], real_server_id: u32, new: u64) {
        aya_log_ebpf::debug!(
            ctx,
            "forward {:i}:{} -> real server {} (new {})",
            *client,
            u16::from_be_bytes(port),
            real_server_id,
            new
        );
    }
}

impl Family for Ipv6Bytes {
    const MAX_L4_OFFSET: usize = packet::MAX_IP_OFFSET + packet::MAX_IPV6_HEADERS_LEN;
    const UDP_CHECKSUM_REQUIRED: bool = true;

    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKey<Self>, ServiceEntry> {
        &SERVICES6
    }

    #[inline(always)]
    fn service_table() -> Option<&'static ServiceTable<Self>> {
        SERVICE_TABLE6.get(0)
    }

    #[inline(always)]
    fn is_service_of(slot: &ServiceSlot<Self>, flow: &Flow<Self>) -> bool {
        let slot = key_words::<5, Self>(slot);
        // SAFETY: `dst_addr` lies on 8 bytes (see `words`), and 16 bytes are four `u32`s.
        let address = unsafe { core::ptr::read(flow.dst_addr.as_ptr().cast::<[u32; 4]>()) };
        slot[0] == address[0]
            && slot[1] == address[1]
            && slot[2] == address[2]
            && slot[3] == address[3]
            && slot[4] == port_word(flow)
    }

    #[inline(always)]
    fn flows() -> &'static Array<FlowBucket<Self>> {
        &FLOWS6
    }

    #[inline(always)]
    fn templates() -> &'static LruHashMap<PersistKey<Self>, PersistEntry> {
        &PERSIST6
    }

    #[inline(always)]
    fn header_ok(_ctx: &XdpContext, _ip_offset: usize, _header_len: usize) -> bool {
        true
    }

    /// Multicast (ff00::/8), the unspecified address, loopback, an IPv4-mapped address
    /// (::ffff:0:0/96, which `ipv6_rcv` drops as RFC 4291 asks), or the destination itself.
    #[inline(always)]
    fn is_martian(flow: &Flow<Self>) -> bool {
        let [high, low] = words(&flow.ip_src);
        let [high, low] = [u64::from_be(high), u64::from_be(low)];
        high >> 56 == 0xff
            || (high == 0 && (low <= 1 || low >> 32 == 0xffff))
            || words(&flow.ip_src) == words(&flow.ip_dst)
    }

    #[inline(always)]
    fn quotes_destination(flow: &Flow<Self>) -> bool {
        words(&flow.dst_addr) == words(&flow.ip_dst)
    }

    /// Masked a word at a time, for the reason `words` gives.
    #[inline(always)]
    fn masked_client(flow: &Flow<Self>, service: &ServiceEntry) -> Self {
        // SAFETY: `src_addr` lies on 8 bytes (see `words`) and the mask on 4 (`ServiceEntry`
        // is 4-byte aligned and the mask's offset a multiple of 4; asserted below); 16 bytes
        // are four `u32`s, and any four `u32`s are 16 bytes.
        unsafe {
            let client = core::ptr::read(flow.src_addr.as_ptr().cast::<[u32; 4]>());
            let mask = core::ptr::read(service.persist_mask.as_ptr().cast::<[u32; 4]>());
            core::mem::transmute::<[u32; 4], Ipv6Bytes>([
                client[0] & mask[0],
                client[1] & mask[1],
                client[2] & mask[2],
                client[3] & mask[3],
            ])
        }
    }

    #[inline(always)]
    fn vip(flow: &Flow<Self>) -> Self {
        // Volatile loads: LLVM would otherwise merge two plain ones back into the memmove.
        // SAFETY: `dst_addr` lies on 8 bytes (see `words`), and any two `u64`s are 16 bytes.
        unsafe {
            let at = flow.dst_addr.as_ptr().cast::<u64>();
            core::mem::transmute::<[u64; 2], Ipv6Bytes>([
                core::ptr::read_volatile(at),
                core::ptr::read_volatile(at.add(1)),
            ])
        }
    }

    #[inline(always)]
    fn trace(ctx: &XdpContext, client: &Self, port: [u8; 2], real_server_id: u32, new: u64) {
        aya_log_ebpf::debug!(
            ctx,
            "forward [{:i}]:{} -> real server {} (new {})",
            *client,
            u16::from_be_bytes(port),
            real_server_id,
            new
        );
    }
}

/// The first `N` 4-byte words of a service table slot: its key's address, then its port,
/// protocol and zero padding (`port_word`).
#[inline(always)]
fn key_words<const N: usize, A: Family>(slot: &ServiceSlot<A>) -> [u32; N] {
    const { assert!(N * 4 == size_of::<ServiceKey<A>>()) };
    // SAFETY: a slot is 4-byte aligned (asserted in lvs-common) and starts with its key,
    // which is `N` words long (asserted above); any bytes are valid `u32`s.
    unsafe { core::ptr::read((slot as *const ServiceSlot<A>).cast::<[u32; N]>()) }
}

/// A frame's destination port and protocol as the word that follows the address in a
/// service key: the port's two bytes as on the wire, the protocol, and a zero padding byte.
#[inline(always)]
fn port_word<A>(flow: &Flow<A>) -> u32 {
    u32::from(u16::from_ne_bytes(flow.dst_port)) | u32::from(flow.protocol) << 16
}

/// An IPv6 address of a `Flow` as two 64-bit words in memory order. Compared as bytes or as
/// arrays, LLVM keeps all sixteen bytes of each address in registers (the BPF target has no
/// unaligned loads to combine them), and their spills overflow the program's 512 bytes of
/// stack; two aligned loads need two registers.
#[inline(always)]
fn words(address: &Ipv6Bytes) -> [u64; 2] {
    // SAFETY: every caller passes an address field of a `Flow<Ipv6Bytes>`, which lies on 8
    // bytes (`Flow` is 8-byte aligned and its addresses, first, are 16 bytes each; asserted
    // below), and 16 bytes are two `u64`s.
    unsafe { core::ptr::read(address.as_ptr().cast::<[u64; 2]>()) }
}

const _: () = {
    assert!(align_of::<Flow<Ipv6Bytes>>() == 8);
    assert!(core::mem::offset_of!(Flow<Ipv6Bytes>, src_addr) % 8 == 0);
    assert!(core::mem::offset_of!(Flow<Ipv6Bytes>, dst_addr) % 8 == 0);
    assert!(core::mem::offset_of!(Flow<Ipv6Bytes>, ip_src) % 8 == 0);
    assert!(core::mem::offset_of!(Flow<Ipv6Bytes>, ip_dst) % 8 == 0);
    assert!(align_of::<ServiceEntry>() >= 4);
    assert!(core::mem::offset_of!(ServiceEntry, persist_mask) % 4 == 0);
};
