//! Bounds-checked access to the frame and the parsing of the headers the director needs.

use aya_ebpf::programs::XdpContext;
use lvs_common::{
    Counter, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Bytes, Ipv6Bytes,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::{family::Family, maps::FLOW6};

/// How many VLAN tags are skipped: an 802.1ad outer tag and an 802.1Q inner one (QinQ).
const MAX_VLAN_TAGS: usize = 2;

/// The "more fragments" flag and the fragment offset in the IPv4 `frags` field (big endian).
const IPV4_MF_AND_OFFSET: u16 = 0x3fff;
/// The fragment offset alone.
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// Offset of the flags byte (CWR ECE URG ACK PSH RST SYN FIN) in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;

/// A pointer to a `T` at `offset` into the frame, or `None` when the frame is shorter.
/// Every packet access goes through here, so the verifier sees one bounds check per header.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Where an IP header can start (after Ethernet and two VLAN tags) and an IPv4 header's
/// greatest length.
pub const MAX_IP_OFFSET: usize = EthHdr::LEN + MAX_VLAN_TAGS * VlanHdr::LEN;
pub const MAX_IPV4_HEADER_LEN: usize = 60;

/// How many IPv6 extension headers are walked to find the transport header. Hosts send one
/// or two at most (a hop-by-hop header, a routing header); a longer chain is passed to the
/// kernel, which walks any length (`PassExtensionHeaders`). The bound keeps the program's
/// size, and the verifier's work, fixed.
pub const MAX_EXTENSION_HEADERS: usize = 4;

/// The longest an IPv6 extension header can be: its length byte counts 8-byte units beyond
/// the first, so at most 256 units.
const MAX_EXTENSION_HEADER_LEN: usize = 256 * 8;

/// The greatest length of an IPv6 header and the extension headers walked after it.
pub const MAX_IPV6_HEADERS_LEN: usize =
    Ipv6Hdr::LEN + MAX_EXTENSION_HEADERS * MAX_EXTENSION_HEADER_LEN;

/// IPv6 next-header values of the extension headers the walk knows (RFC 8200): hop-by-hop
/// options (only ever first), routing, fragment and destination options.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DESTINATION_OPTIONS: u8 = 60;

/// A fragment header is always 8 bytes; its offset is the top 13 bits of its bytes 2 and 3.
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
const IPV6_FRAGMENT_OFFSET: u16 = 0xfff8;

/// The most 16-bit words of IPv4 options (a 60-byte header less the fixed 20 bytes).
const MAX_IPV4_OPTION_WORDS: usize = 20;

/// Offset of the data-offset nibble (the TCP header's length in 32-bit words).
const TCP_DATA_OFFSET: usize = 12;

/// SYN with FIN or RST: no stack opens a connection for either, so neither may make a flow.
const TCP_SYN: u8 = 0x02;
const TCP_SYN_CONFLICTS: u8 = 0x01 | 0x04;

/// ICMP's "destination unreachable" (with "fragmentation needed" among its codes) and "time
/// exceeded": the errors about a packet that IPVS relays to the connection's real server.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;

/// ICMPv6's errors about a packet that IPVS relays likewise: "destination unreachable",
/// "packet too big" (path MTU discovery) and "time exceeded" (RFC 4443). Every other ICMPv6
/// message, neighbour discovery first of all, is the kernel's.
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;

/// An ICMP (and ICMPv6) header, and the quoted packet's transport bytes an error must carry
/// (RFC 792: the IP header and the first 8 bytes of the datagram; ICMPv6 quotes as much as
/// fits, always more).
const ICMP_HEADER_LEN: usize = 8;
const QUOTED_TRANSPORT_LEN: usize = 8;

/// What a frame for the director is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP or UDP packet of a connection.
    Connection,
    /// An ICMP error about a packet the real server sent for a connection; the flow fields
    /// name that connection in the client-to-VIP direction, as its flow-table key does.
    IcmpError,
}

/// What the director needs to know about a TCP or UDP frame of either family (`A` is its
/// address), or about the connection an ICMP error quotes.
///
/// The four addresses come first and the whole is 8-byte aligned, so that each IPv6 address
/// lies on 8 bytes and `Family` can compare it as two words (see `family::words`).
#[repr(C, align(8))]
pub struct Flow<A> {
    pub src_addr: A,
    pub dst_addr: A,
    /// The frame's own IP addresses (for an ICMP error, the sender's and the VIP).
    pub ip_src: A,
    pub ip_dst: A,
    pub kind: Kind,
    /// The IP packet's length (IPv4's total length, IPv6's payload length and its 40-byte
    /// header): the bytes counted per service and real server, as IPVS does.
    pub ip_len: u32,
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub protocol: u8,
    /// The TCP flags byte (`lvs_common::flow::TCP_*`); 0 for UDP.
    pub tcp_flags: u8,
    /// Where the frame's IP header starts and how long it is with IPv4's options or IPv6's
    /// extension headers, where TCP, UDP or ICMP starts, and where the bytes an ICMP error
    /// must quote end: for [`check_valid`].
    ip_offset: usize,
    ip_header_len: usize,
    l4_offset: usize,
    quote_end: usize,
}

/// An IPv4 header in the frame, its version and length checked.
pub struct Ipv4At {
    offset: usize,
    header: *const Ipv4Hdr,
}

impl Ipv4At {
    /// The source address, as on the wire.
    #[inline(always)]
    pub fn source(&self) -> [u8; 4] {
        // SAFETY: `parse_ipv4` checked that the whole header lies inside the frame.
        unsafe { (*self.header).src_addr }
    }

    /// The total length field, in host order.
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        // SAFETY: as in `source`.
        u16::from_be_bytes(unsafe { (*self.header).tot_len })
    }
}

/// Parses Ethernet and up to two VLAN tags: the EtherType of what follows, and where it
/// starts. `Err` carries the pass reason for a frame cut short or with a third tag.
#[inline(always)]
pub fn parse_ethernet(ctx: &XdpContext) -> Result<(u16, usize), Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: `ptr_at` checked that the whole header lies inside the frame.
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut offset = EthHdr::LEN;

    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan(ether_type) {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(ctx, offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`.
        ether_type = unsafe { (*vlan).ether_type };
        offset += VlanHdr::LEN;
    }
    if is_vlan(ether_type) {
        return Err(Counter::PassMalformed);
    }
    Ok((ether_type, offset))
}

/// Whether an EtherType (as `parse_ethernet` returns it, in wire order) is IPv4's or IPv6's.
#[inline(always)]
pub fn is_ipv4(ether_type: u16) -> bool {
    ether_type == EtherType::Ipv4 as u16
}

#[inline(always)]
pub fn is_ipv6(ether_type: u16) -> bool {
    ether_type == EtherType::Ipv6 as u16
}

/// Parses the IPv4 header at `offset` as far as a sane version and length: all the deny list
/// needs, so that a denied source costs no more parsing.
#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, offset: usize) -> Result<Ipv4At, Counter> {
    let header: *const Ipv4Hdr = ptr_at(ctx, offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let vihl = unsafe { (*header).vihl };
    if vihl >> 4 != 4 || usize::from(vihl & 0x0f) * 4 < Ipv4Hdr::LEN {
        return Err(Counter::PassMalformed);
    }
    Ok(Ipv4At { offset, header })
}

/// Parses the rest of an IPv4 frame: TCP or UDP ports, or the connection an ICMP error
/// quotes. `Err` carries the pass reason for frames that are not for the director to forward.
#[inline(always)]
pub fn parse_flow(ctx: &XdpContext, ipv4: &Ipv4At) -> Result<Flow<Ipv4Bytes>, Counter> {
    let offset = ipv4.offset;
    // SAFETY: `parse_ipv4` checked that the whole header lies inside the frame.
    let ip = unsafe { &*ipv4.header };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let protocol = ip.proto;
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP && protocol != IPPROTO_ICMP {
        return Err(Counter::PassNotTcpUdp);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(Counter::PassFragment);
    }
    let (src_addr, dst_addr) = (ip.src_addr, ip.dst_addr);
    let ip_len = u32::from(u16::from_be_bytes(ip.tot_len));
    let l4_offset = offset + header_len;
    if protocol == IPPROTO_ICMP {
        return parse_icmp_error(ctx, ip, offset, header_len);
    }
    let (src_port, dst_port, tcp_flags) = parse_ports(ctx, protocol, l4_offset)?;

    Ok(Flow {
        kind: Kind::Connection,
        ip_len,
        src_addr,
        dst_addr,
        src_port,
        dst_port,
        protocol,
        tcp_flags,
        ip_src: src_addr,
        ip_dst: dst_addr,
        ip_offset: offset,
        ip_header_len: header_len,
        l4_offset,
        quote_end: 0,
    })
}

/// An IPv6 header in the frame, whole and of version 6.
pub struct Ipv6At {
    offset: usize,
    header: *const Ipv6Hdr,
}

impl Ipv6At {
    /// The source address, as on the wire.
    #[inline(always)]
    pub fn source(&self) -> &Ipv6Bytes {
        // SAFETY: `parse_ipv6` checked that the whole header lies inside the frame.
        unsafe { &(*self.header).src_addr }
    }

    /// The packet's length: the 40-byte header and the payload length field.
    #[inline(always)]
    pub fn packet_len(&self) -> u32 {
        // SAFETY: as in `source`.
        Ipv6Hdr::LEN as u32 + u32::from(u16::from_be_bytes(unsafe { (*self.header).payload_len }))
    }
}

/// Parses the IPv6 header at `offset` as far as its version: all the deny list needs, so
/// that a denied source costs no walk of its extension headers.
#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, offset: usize) -> Result<Ipv6At, Counter> {
    let header: *const Ipv6Hdr = ptr_at(ctx, offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    if unsafe { (*header).vcf[0] } >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    Ok(Ipv6At { offset, header })
}

/// Parses the rest of an IPv6 frame: through its extension headers to TCP or UDP ports, or to
/// the connection an ICMPv6 error quotes. `Err` carries the pass reason for frames that are
/// not for the director to forward.
///
/// The flow is written to this CPU's slot of `FLOW6` rather than to the stack: LLVM would
/// keep a stack copy's four addresses in registers byte by byte, and their spills alone
/// overflow the 512 bytes of stack a BPF program has.
#[inline(always)]
pub fn parse_flow6(ctx: &XdpContext, ipv6: &Ipv6At) -> Result<&'static Flow<Ipv6Bytes>, Counter> {
    let offset = ipv6.offset;
    // SAFETY: `parse_ipv6` checked that the whole header lies inside the frame.
    let ip = unsafe { &*ipv6.header };
    let (protocol, l4_offset) = walk_extension_headers::<false>(ctx, offset, ip.next_hdr)?;
    let flow = FLOW6.get_ptr_mut(0).ok_or(Counter::Aborted)?;
    // SAFETY: this CPU's own slot, which nothing else uses while this program runs here (XDP
    // runs with preemption disabled); every field is written before it is read.
    let flow = unsafe { &mut *flow };
    let ip_len = ipv6.packet_len();
    let header_len = l4_offset - offset;
    flow.ip_len = ip_len;
    copy_address(&mut flow.ip_src, &ip.src_addr);
    copy_address(&mut flow.ip_dst, &ip.dst_addr);
    flow.ip_offset = offset;
    flow.ip_header_len = header_len;
    if protocol == IPPROTO_ICMPV6 {
        parse_icmp6_error(ctx, flow, l4_offset)?;
        return Ok(flow);
    }
    let (src_port, dst_port, tcp_flags) = parse_ports(ctx, protocol, l4_offset)?;
    flow.kind = Kind::Connection;
    flow.src_addr = flow.ip_src;
    flow.dst_addr = flow.ip_dst;
    flow.src_port = src_port;
    flow.dst_port = dst_port;
    flow.protocol = protocol;
    flow.tcp_flags = tcp_flags;
    flow.l4_offset = l4_offset;
    flow.quote_end = 0;
    Ok(flow)
}

/// Copies an IPv6 address out of the frame, as sixteen byte loads and stores. A plain
/// assignment, whose source LLVM cannot prove apart from its destination, becomes a call to a
/// byte-wise memmove subprogram: a call (10-15 ns here) for each address of each packet.
#[inline(always)]
pub fn copy_address(to: &mut Ipv6Bytes, from: &Ipv6Bytes) {
    // SAFETY: a shared and a mutable reference never overlap.
    unsafe { core::ptr::copy_nonoverlapping(from, to, 1) }
}

/// The ports and TCP flags of the TCP or UDP header at `l4_offset` (flags 0 for UDP).
#[inline(always)]
fn parse_ports(
    ctx: &XdpContext,
    protocol: u8,
    l4_offset: usize,
) -> Result<([u8; 2], [u8; 2], u8), Counter> {
    if protocol == IPPROTO_TCP {
        let tcp: *const TcpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`. The flags are the low byte of the 16-bit word
        // after the sequence and acknowledgement numbers (byte 13 of the header).
        Ok(unsafe {
            let flags = *(tcp as *const u8).add(TCP_FLAGS_OFFSET);
            ((*tcp).source, (*tcp).dest, flags)
        })
    } else {
        let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`.
        Ok(unsafe { ((*udp).src, (*udp).dst, 0) })
    }
}

/// Walks the IPv6 extension headers after the header at `offset`, whose next-header field is
/// `next`, to the transport header: its protocol (TCP, UDP, or ICMPv6 unless `QUOTE`) and
/// where it starts. Hop-by-hop options, routing and destination options headers are skipped,
/// each read whole (`PassTruncated` otherwise); a hop-by-hop header anywhere but first is
/// `PassMalformed`, as the kernel has it; more than `MAX_EXTENSION_HEADERS` of them is
/// `PassExtensionHeaders`. A fragment header is `PassFragment`: the ports are not all in this
/// packet. In a quote (`QUOTE`, an ICMPv6 error's copy of a packet the real server sent),
/// only a later fragment is: a first fragment's ports follow its header, as in an IPv4
/// quote. No next header (59), ESP, AH and anything else is `PassNotTcpUdp`.
#[inline(always)]
fn walk_extension_headers<const QUOTE: bool>(
    ctx: &XdpContext,
    offset: usize,
    next: u8,
) -> Result<(u8, usize), Counter> {
    let mut next = next;
    let mut at = offset + Ipv6Hdr::LEN;
    for index in 0..MAX_EXTENSION_HEADERS {
        if is_transport::<QUOTE>(next) {
            return Ok((next, at));
        }
        let length = match next {
            IPV6_HOP_BY_HOP if index != 0 => return Err(Counter::PassMalformed),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => {
                let header: *const [u8; 2] = ptr_at(ctx, at).ok_or(Counter::PassTruncated)?;
                // SAFETY: bounds checked by `ptr_at`.
                let header = unsafe { *header };
                next = header[0];
                (usize::from(header[1]) + 1) * 8
            }
            IPV6_FRAGMENT if QUOTE => {
                let header: *const [u8; IPV6_FRAGMENT_HEADER_LEN] =
                    ptr_at(ctx, at).ok_or(Counter::PassTruncated)?;
                // SAFETY: bounds checked by `ptr_at`.
                let header = unsafe { *header };
                if u16::from_be_bytes([header[2], header[3]]) & IPV6_FRAGMENT_OFFSET != 0 {
                    return Err(Counter::PassFragment);
                }
                next = header[0];
                IPV6_FRAGMENT_HEADER_LEN
            }
            IPV6_FRAGMENT => return Err(Counter::PassFragment),
            _ => return Err(Counter::PassNotTcpUdp),
        };
        // The whole header must be in the frame: the kernel would find it cut short.
        if ctx.data() + at + length > ctx.data_end() {
            return Err(Counter::PassTruncated);
        }
        at += length;
    }
    match next {
        _ if is_transport::<QUOTE>(next) => Ok((next, at)),
        IPV6_HOP_BY_HOP => Err(Counter::PassMalformed),
        IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => Err(Counter::PassExtensionHeaders),
        IPV6_FRAGMENT => Err(Counter::PassFragment),
        _ => Err(Counter::PassNotTcpUdp),
    }
}

/// Whether an IPv6 next header ends the walk: TCP or UDP, and in a packet of its own (not a
/// quote) ICMPv6, whose errors may be about a connection.
#[inline(always)]
fn is_transport<const QUOTE: bool>(next: u8) -> bool {
    next == IPPROTO_TCP || next == IPPROTO_UDP || (!QUOTE && next == IPPROTO_ICMPV6)
}

/// An ICMP error to a VIP: the connection it is about, from the quoted IPv4 header and ports
/// of the packet that caused it (one the real server sent, from the VIP to the client). Any
/// other ICMP (echo to the VIP, say) is the kernel's, as before. A quote that is cut short is
/// `PassTruncated`; one that lies about its own header is `PassMalformed`.
#[inline(always)]
fn parse_icmp_error(
    ctx: &XdpContext,
    ip: &Ipv4Hdr,
    offset: usize,
    header_len: usize,
) -> Result<Flow<Ipv4Bytes>, Counter> {
    let icmp_offset = offset + header_len;
    let icmp: *const [u8; ICMP_HEADER_LEN] =
        ptr_at(ctx, icmp_offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let icmp_type = unsafe { (*icmp)[0] };
    if icmp_type != ICMP_DEST_UNREACH && icmp_type != ICMP_TIME_EXCEEDED {
        return Err(Counter::PassNotTcpUdp);
    }
    let quoted_offset = icmp_offset + ICMP_HEADER_LEN;
    let quoted: *const Ipv4Hdr = ptr_at(ctx, quoted_offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let quoted = unsafe { &*quoted };
    let quoted_header_len = usize::from(quoted.vihl & 0x0f) * 4;
    if quoted.vihl >> 4 != 4 || quoted_header_len < Ipv4Hdr::LEN {
        return Err(Counter::PassMalformed);
    }
    let protocol = quoted.proto;
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return Err(Counter::PassNotTcpUdp);
    }
    // A later fragment carries no ports to find the connection by.
    if u16::from_be_bytes(quoted.frags) & IPV4_FRAGMENT_OFFSET != 0 {
        return Err(Counter::PassFragment);
    }
    let quoted_l4 = quoted_offset + quoted_header_len;
    let ports: *const [u8; QUOTED_TRANSPORT_LEN] =
        ptr_at(ctx, quoted_l4).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`; TCP and UDP both start with the two ports.
    let ports = unsafe { &*ports };
    Ok(Flow {
        kind: Kind::IcmpError,
        ip_len: u32::from(u16::from_be_bytes(ip.tot_len)),
        // The quoted packet went from the VIP to the client: its connection, as the flow
        // table keys it, is from the client to the VIP.
        src_addr: quoted.dst_addr,
        dst_addr: quoted.src_addr,
        src_port: [ports[2], ports[3]],
        dst_port: [ports[0], ports[1]],
        protocol,
        tcp_flags: 0,
        ip_src: ip.src_addr,
        ip_dst: ip.dst_addr,
        ip_offset: offset,
        ip_header_len: header_len,
        l4_offset: icmp_offset,
        quote_end: quoted_l4 + QUOTED_TRANSPORT_LEN,
    })
}

/// An ICMPv6 error to a VIP, as `parse_icmp_error` reads an IPv4 one: the connection it is
/// about, from the quoted IPv6 header (its extension headers walked as a packet's are) and
/// ports of the packet that caused it, completing `flow` (whose IP fields `parse_flow6` has
/// written). Any other ICMPv6, neighbour discovery and echo among it, is the kernel's
/// (`PassNotTcpUdp`), untouched.
#[inline(always)]
fn parse_icmp6_error(
    ctx: &XdpContext,
    flow: &mut Flow<Ipv6Bytes>,
    icmp_offset: usize,
) -> Result<(), Counter> {
    let icmp: *const [u8; ICMP_HEADER_LEN] =
        ptr_at(ctx, icmp_offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let icmp_type = unsafe { (*icmp)[0] };
    if icmp_type != ICMPV6_DEST_UNREACH
        && icmp_type != ICMPV6_PACKET_TOO_BIG
        && icmp_type != ICMPV6_TIME_EXCEEDED
    {
        return Err(Counter::PassNotTcpUdp);
    }
    let quoted_offset = icmp_offset + ICMP_HEADER_LEN;
    let quoted: *const Ipv6Hdr = ptr_at(ctx, quoted_offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let quoted = unsafe { &*quoted };
    if quoted.vcf[0] >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let (protocol, quoted_l4) =
        walk_extension_headers::<true>(ctx, quoted_offset, quoted.next_hdr)?;
    let ports: *const [u8; QUOTED_TRANSPORT_LEN] =
        ptr_at(ctx, quoted_l4).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`; TCP and UDP both start with the two ports.
    let ports = unsafe { &*ports };
    flow.kind = Kind::IcmpError;
    // As for IPv4: the quoted packet went from the VIP to the client.
    copy_address(&mut flow.src_addr, &quoted.dst_addr);
    copy_address(&mut flow.dst_addr, &quoted.src_addr);
    flow.src_port = [ports[2], ports[3]];
    flow.dst_port = [ports[0], ports[1]];
    flow.protocol = protocol;
    flow.tcp_flags = 0;
    flow.l4_offset = icmp_offset;
    flow.quote_end = quoted_l4 + QUOTED_TRANSPORT_LEN;
    Ok(())
}

/// Checks a frame for a virtual service the way the kernel's own stack would check it before
/// it reached a socket, so that nothing a real server's stack would reject (or a director's
/// stack would call a martian) is forwarded or makes a flow. `parse_flow` or `parse_flow6` has
/// found the headers; this is the rest of the rule, run only for frames that hit a service so
/// that other traffic, which the kernel checks itself, pays nothing for it:
///
/// - Ethernet: the source MAC is not a group address.
/// - IPv4: the header checksum is right; the total length covers the header and fits in
///   the frame (`PassTruncated` when the frame is shorter than it says); the source is not
///   0.0.0.0/8, 127.0.0.0/8, multicast or the limited broadcast, nor the destination itself.
/// - IPv6: the payload length covers the extension headers and fits in the frame (which may
///   be longer, by Ethernet's padding); the source is not multicast, unspecified, loopback or
///   IPv4-mapped, nor the destination itself.
/// - TCP: the data offset is at least 5 words and the header lies inside the IP packet; a
///   SYN carries neither FIN nor RST.
/// - UDP: the length is at least 8 and at most what the IP packet holds after its headers;
///   over IPv6 the checksum is not zero.
/// - An ICMP error: it quotes a packet from the VIP it is sent to, and the quote up to the
///   ports lies inside the IP packet. (ICMP's checksum, like TCP's and UDP's, is left to the
///   real server, whose stack checks it.)
///
/// Everything that fails is passed to the kernel (which drops and counts it as its stack
/// does) and counted as `PassMalformed`, or `PassTruncated`.
#[inline(always)]
pub fn check_valid<A: Family>(ctx: &XdpContext, flow: &Flow<A>) -> Result<(), Counter> {
    // The offsets are read back opaquely: LLVM would otherwise drop the bounds checks below as
    // repeats of `parse_flow`'s, and the verifier, which no longer ties the packet pointer to
    // those checks after the map lookups in between, would refuse the loads.
    // SAFETY: reads of plain fields of a live reference.
    let (ip_offset, l4_offset) = unsafe {
        (
            core::ptr::read_volatile(&flow.ip_offset),
            core::ptr::read_volatile(&flow.l4_offset),
        )
    };
    // Opaque values have no bounds for the verifier; these (which the parsers guarantee)
    // give them some before they are added to a packet pointer.
    if ip_offset > MAX_IP_OFFSET || l4_offset > A::MAX_L4_OFFSET {
        return Err(Counter::PassMalformed);
    }
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    if unsafe { (*eth).src_addr[0] } & 0x01 != 0 {
        return Err(Counter::PassMalformed);
    }

    // First, while nothing else is known of the frame's length: LLVM would otherwise take the
    // header's bounds check as implied by the length checks below, which the verifier cannot
    // follow.
    if !A::header_ok(ctx, ip_offset, flow.ip_header_len) {
        return Err(Counter::PassMalformed);
    }
    let ip_len = flow.ip_len as usize;
    if ip_len < flow.ip_header_len {
        return Err(Counter::PassMalformed);
    }
    if ip_offset + ip_len > ctx.data_end() - ctx.data() {
        return Err(Counter::PassTruncated);
    }
    if A::is_martian(flow) {
        return Err(Counter::PassMalformed);
    }

    let l4_len = ip_len - flow.ip_header_len;
    if flow.kind == Kind::IcmpError {
        // The quote must be the VIP's own packet, whole up to its ports, inside the datagram.
        if !A::quotes_destination(flow) || flow.quote_end > ip_offset + ip_len {
            return Err(Counter::PassMalformed);
        }
    } else if flow.protocol == IPPROTO_TCP {
        let data_offset: *const u8 =
            ptr_at(ctx, l4_offset + TCP_DATA_OFFSET).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`.
        let header_len = usize::from(unsafe { *data_offset } >> 4) * 4;
        if header_len < TcpHdr::LEN || header_len > l4_len {
            return Err(Counter::PassMalformed);
        }
        if flow.tcp_flags & TCP_SYN != 0 && flow.tcp_flags & TCP_SYN_CONFLICTS != 0 {
            return Err(Counter::PassMalformed);
        }
    } else {
        let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`.
        let (udp_len, checksum) = unsafe { ((*udp).len, (*udp).check) };
        let udp_len = usize::from(u16::from_be_bytes(udp_len));
        if udp_len < UdpHdr::LEN || udp_len > l4_len {
            return Err(Counter::PassMalformed);
        }
        if A::UDP_CHECKSUM_REQUIRED && checksum == [0, 0] {
            return Err(Counter::PassMalformed);
        }
    }
    Ok(())
}

/// Whether the frame's destination MAC is `mac` (the director's own): frames for other hosts
/// reach XDP too when a bridge floods or the port is promiscuous, and the kernel would drop
/// them rather than deliver them.
#[inline(always)]
pub fn is_for(ctx: &XdpContext, mac: &[u8; 6]) -> bool {
    match ptr_at::<EthHdr>(ctx, 0) {
        // SAFETY: bounds checked by `ptr_at`.
        Some(eth) => unsafe { (*eth).dst_addr == *mac },
        None => false,
    }
}

/// Whether the IPv4 header at `offset`, `header_len` bytes long, sums to all ones in one's
/// complement (RFC 1071), as `ip_rcv` requires. The fixed 20 bytes are read through the
/// header `parse_flow` checked; options, rare, a word at a time.
#[inline(always)]
pub fn ipv4_checksum_ok(ctx: &XdpContext, offset: usize, header_len: usize) -> bool {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, offset) else {
        return false;
    };
    // SAFETY: bounds checked by `ptr_at`; the header is plain bytes.
    let ip = unsafe { &*ip };
    let word = |pair: [u8; 2]| u32::from(u16::from_be_bytes(pair));
    let mut sum = word([ip.vihl, ip.tos])
        + word(ip.tot_len)
        + word(ip.id)
        + word(ip.frags)
        + word([ip.ttl, ip.proto])
        + word(ip.check)
        + word([ip.src_addr[0], ip.src_addr[1]])
        + word([ip.src_addr[2], ip.src_addr[3]])
        + word([ip.dst_addr[0], ip.dst_addr[1]])
        + word([ip.dst_addr[2], ip.dst_addr[3]]);
    let option_words = (header_len - Ipv4Hdr::LEN) / 2;
    for index in 0..MAX_IPV4_OPTION_WORDS {
        if index >= option_words {
            break;
        }
        let Some(pair) = ptr_at::<[u8; 2]>(ctx, offset + Ipv4Hdr::LEN + index * 2) else {
            return false;
        };
        // SAFETY: bounds checked by `ptr_at`.
        sum += word(unsafe { *pair });
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

#[inline(always)]
fn is_vlan(ether_type: u16) -> bool {
    ether_type == EtherType::Ieee8021q as u16 || ether_type == EtherType::Ieee8021ad as u16
}
