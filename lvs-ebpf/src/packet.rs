//! Bounds-checked access to the frame and the parsing of the headers the director needs.

use aya_ebpf::programs::XdpContext;
use lvs_common::{Counter, IPPROTO_TCP, IPPROTO_UDP};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// How many VLAN tags are skipped: an 802.1ad outer tag and an 802.1Q inner one (QinQ).
const MAX_VLAN_TAGS: usize = 2;

/// The "more fragments" flag and the fragment offset in the IPv4 `frags` field (big endian).
const IPV4_MF_AND_OFFSET: u16 = 0x3fff;

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

/// The most 16-bit words of IPv4 options (a 60-byte header less the fixed 20 bytes).
const MAX_IPV4_OPTION_WORDS: usize = 20;

/// Offset of the data-offset nibble (the TCP header's length in 32-bit words).
const TCP_DATA_OFFSET: usize = 12;

/// SYN with FIN or RST: no stack opens a connection for either, so neither may make a flow.
const TCP_SYN: u8 = 0x02;
const TCP_SYN_CONFLICTS: u8 = 0x01 | 0x04;

/// What the director needs to know about a TCP or UDP over IPv4 frame.
pub struct Flow {
    /// The IPv4 total length: the bytes counted per service and real server, as IPVS does.
    pub ip_len: u16,
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub protocol: u8,
    /// The TCP flags byte (`lvs_common::flow::TCP_*`); 0 for UDP.
    pub tcp_flags: u8,
    /// Where the IPv4 header starts and how long it is, and where TCP or UDP starts, for
    /// [`check_valid`].
    ip_offset: usize,
    ip_header_len: usize,
    l4_offset: usize,
}

/// Parses Ethernet (with up to two VLAN tags), IPv4 and the TCP or UDP ports.
/// `Err` carries the pass reason for frames that are not for the director to forward.
#[inline(always)]
pub fn parse_flow(ctx: &XdpContext) -> Result<Flow, Counter> {
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
    if ether_type != EtherType::Ipv4 as u16 {
        return Err(Counter::PassNotIpv4);
    }

    let ip: *const Ipv4Hdr = ptr_at(ctx, offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Counter::PassMalformed);
    }
    let protocol = ip.proto;
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return Err(Counter::PassNotTcpUdp);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(Counter::PassFragment);
    }
    let (src_addr, dst_addr) = (ip.src_addr, ip.dst_addr);
    let ip_len = u16::from_be_bytes(ip.tot_len);
    let l4_offset = offset + header_len;

    let (src_port, dst_port, tcp_flags) = if protocol == IPPROTO_TCP {
        let tcp: *const TcpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`. The flags are the low byte of the 16-bit word
        // after the sequence and acknowledgement numbers (byte 13 of the header).
        unsafe {
            let flags = *(tcp as *const u8).add(TCP_FLAGS_OFFSET);
            ((*tcp).source, (*tcp).dest, flags)
        }
    } else {
        let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds checked by `ptr_at`.
        unsafe { ((*udp).src, (*udp).dst, 0) }
    };

    Ok(Flow {
        ip_len,
        src_addr,
        dst_addr,
        src_port,
        dst_port,
        protocol,
        tcp_flags,
        ip_offset: offset,
        ip_header_len: header_len,
        l4_offset,
    })
}

/// Checks a frame for a virtual service the way the kernel's own stack would check it before
/// it reached a socket, so that nothing a real server's stack would reject (or a director's
/// stack would call a martian) is forwarded or makes a flow. `parse_flow` has found the
/// headers; this is the rest of the rule, run only for frames that hit a service so that
/// other traffic, which the kernel checks itself, pays nothing for it:
///
/// - Ethernet: the source MAC is not a group address.
/// - IPv4: the header checksum is right; the total length covers the header and fits in
///   the frame (`PassTruncated` when the frame is shorter than it says); the source is not
///   0.0.0.0/8, 127.0.0.0/8, multicast or the limited broadcast, nor the destination itself.
/// - TCP: the data offset is at least 5 words and the header lies inside the IP packet; a
///   SYN carries neither FIN nor RST.
/// - UDP: the length is at least 8 and at most what the IP packet holds after its header.
///
/// Everything that fails is passed to the kernel (which drops and counts it as its stack
/// does) and counted as `PassMalformed`, or `PassTruncated`.
#[inline(always)]
pub fn check_valid(ctx: &XdpContext, flow: &Flow) -> Result<(), Counter> {
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
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds checked by `ptr_at`.
    if unsafe { (*eth).src_addr[0] } & 0x01 != 0 {
        return Err(Counter::PassMalformed);
    }

    let ip_len = usize::from(flow.ip_len);
    if ip_len < flow.ip_header_len {
        return Err(Counter::PassMalformed);
    }
    if ip_offset + ip_len > ctx.data_end() - ctx.data() {
        return Err(Counter::PassTruncated);
    }
    let source = flow.src_addr;
    if source[0] == 0
        || source[0] == 127
        || source[0] & 0xf0 == 0xe0
        || source == [0xff; 4]
        || source == flow.dst_addr
    {
        return Err(Counter::PassMalformed);
    }
    if !ipv4_checksum_ok(ctx, ip_offset, flow.ip_header_len) {
        return Err(Counter::PassMalformed);
    }

    let l4_len = ip_len - flow.ip_header_len;
    if flow.protocol == IPPROTO_TCP {
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
        let udp_len = usize::from(u16::from_be_bytes(unsafe { (*udp).len }));
        if udp_len < UdpHdr::LEN || udp_len > l4_len {
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
fn ipv4_checksum_ok(ctx: &XdpContext, offset: usize, header_len: usize) -> bool {
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
