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
    })
}

#[inline(always)]
fn is_vlan(ether_type: u16) -> bool {
    ether_type == EtherType::Ieee8021q as u16 || ether_type == EtherType::Ieee8021ad as u16
}
