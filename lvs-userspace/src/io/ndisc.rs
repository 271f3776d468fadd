//! IPv6 neighbour discovery on the wire, for `doctor`: what ARP is to IPv4. Building neighbour
//! solicitations and reading advertisements (etherparse lays out the Ethernet, IPv6 and
//! ICMPv6 headers and the checksum), and a raw `AF_PACKET` socket bound to one interface to
//! send and receive them. As with ARP, the kernel's neighbour table keeps one MAC per address
//! and cannot say "who answers for this address?"; a real server that wrongly answers for
//! the VIP is exactly a second answer, so the doctor asks on the wire itself.

use std::{io, net::Ipv6Addr};

use etherparse::{Icmpv6Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::{arp::MIN_FRAME, packet_socket::PacketSocket};
use crate::base::mac::MacAddr;

/// Neighbour discovery messages go out, and are only believed, with the largest hop limit
/// (RFC 4861 7.1.1): it proves they did not cross a router.
const HOP_LIMIT: u8 = 255;
/// The NDP options lvs writes and reads (RFC 4861 4.6.1).
const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const ETH_P_IPV6: u16 = 0x86dd;

/// An advertisement: `sender_mac` says it has `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub sender_mac: MacAddr,
    pub target: Ipv6Addr,
}

/// The solicited-node multicast group of an address (RFC 4291 2.7.1): ff02::1:ff00:0/104
/// with the address's last 24 bits. A solicitation goes to it, and only hosts with an address
/// ending in those bits listen.
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, t[13], t[14], t[15],
    ])
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 7): 33:33 and its last 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let g = group.octets();
    [0x33, 0x33, g[12], g[13], g[14], g[15]]
}

/// A multicast neighbour solicitation for `target` from `source_mac`, which says it is
/// `source_ip` (an address of the asking interface; its link-local one does) and gives its
/// MAC in the source link-layer address option, as the kernel's own solicitations do. From
/// the unspecified address it is a duplicate address detection probe, which must carry no
/// such option (RFC 4861 7.1.1; Linux drops one that does) and is answered to all nodes.
pub fn solicitation_frame(source_mac: [u8; 6], source_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&target.octets());
    if !source_ip.is_unspecified() {
        body.extend_from_slice(&[SOURCE_LINK_LAYER_ADDRESS, 1]);
        body.extend_from_slice(&source_mac);
    }
    let builder = PacketBuilder::ethernet2(source_mac, multicast_mac(group))
        .ipv6(source_ip.octets(), group.octets(), HOP_LIMIT)
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut frame = Vec::with_capacity(MIN_FRAME + body.len());
    builder
        .write_to_vec(&mut frame, &body)
        .expect("writing to a Vec cannot fail");
    frame.resize(frame.len().max(MIN_FRAME), 0);
    frame
}

/// The neighbour advertisement in a frame, if it is one: Ethernet, IPv6 with hop limit 255,
/// ICMPv6 type 136 with a target. The advertiser's MAC is its target link-layer address
/// option, or the frame's source when the option is missing (which RFC 4861 allows in an
/// answer to a unicast solicitation).
pub fn parse_advertisement(frame: &[u8]) -> Option<Advertisement> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(LinkSlice::Ethernet2(ethernet)) = &packet.link else {
        return None;
    };
    let Some(NetSlice::Ipv6(ipv6)) = &packet.net else {
        return None;
    };
    if ipv6.header().hop_limit() != HOP_LIMIT {
        return None;
    }
    let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else {
        return None;
    };
    if !matches!(icmp.icmp_type(), Icmpv6Type::NeighborAdvertisement(_)) {
        return None;
    }
    let body = icmp.payload();
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(body.get(..16)?).ok()?);
    let sender_mac = target_link_layer_address(&body[16..]).unwrap_or(ethernet.source());
    Some(Advertisement {
        sender_mac: MacAddr(sender_mac),
        target,
    })
}

/// The target link-layer address option among NDP options, if there is a well-formed one.
fn target_link_layer_address(mut options: &[u8]) -> Option<[u8; 6]> {
    while let [kind, units, ..] = *options {
        // An option's length is in units of 8 bytes; 0 is invalid and ends the walk.
        let length = usize::from(units) * 8;
        if length == 0 || length > options.len() {
            return None;
        }
        if kind == TARGET_LINK_LAYER_ADDRESS && length == 8 {
            return <[u8; 6]>::try_from(&options[2..8]).ok();
        }
        options = &options[length..];
    }
    None
}

/// A raw packet socket for neighbour discovery frames (all IPv6 frames, filtered here) on
/// one interface.
pub struct NdiscSocket {
    socket: PacketSocket,
}

impl NdiscSocket {
    /// Opens the socket and binds it to the interface; needs CAP_NET_RAW.
    pub fn open(if_index: u32) -> io::Result<Self> {
        let socket = PacketSocket::open(if_index, ETH_P_IPV6)?;
        Ok(Self { socket })
    }

    /// Sends a whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send(frame)
    }

    /// Waits for the next neighbour advertisement that arrived on the interface (frames this
    /// host sent, and every other IPv6 frame, are skipped).
    pub async fn recv_advertisement(&self) -> io::Result<Advertisement> {
        let mut buffer = [0u8; 1518];
        loop {
            let length = self.socket.recv_incoming(&mut buffer).await?;
            if let Some(advertisement) = parse_advertisement(&buffer[..length]) {
                return Ok(advertisement);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::icmpv6::NeighborAdvertisementHeader;

    use super::*;

    const DIRECTOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const SERVER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

    fn ip(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    /// An advertisement as a host sends it in answer, with the given options.
    fn advertisement(source: [u8; 6], target: Ipv6Addr, hop_limit: u8, options: &[u8]) -> Vec<u8> {
        let mut body = target.octets().to_vec();
        body.extend_from_slice(options);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(source, DIRECTOR)
            .ipv6(target.octets(), ip("fe80::1").octets(), hop_limit)
            .icmpv6(Icmpv6Type::NeighborAdvertisement(
                NeighborAdvertisementHeader {
                    router: false,
                    solicited: true,
                    r#override: true,
                },
            ))
            .write_to_vec(&mut frame, &body)
            .unwrap();
        frame
    }

    #[test]
    fn the_solicited_node_group_and_its_mac_take_the_last_bits() {
        let target = ip("2001:db8:77::abcd:1234");
        assert_eq!(solicited_node(target), ip("ff02::1:ffcd:1234"));
        assert_eq!(
            multicast_mac(solicited_node(target)),
            [0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]
        );
    }

    #[test]
    fn a_solicitation_is_a_multicast_ns_with_our_mac() {
        let target = ip("2001:db8:77::100");
        let frame = solicitation_frame(DIRECTOR, ip("fe80::1"), target);
        assert_eq!(frame.len(), 14 + 40 + 8 + 16 + 8);
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0xff, 0, 0x01, 0x00]);
        assert_eq!(&frame[6..12], &DIRECTOR);
        assert_eq!(&frame[12..14], &[0x86, 0xdd], "EtherType IPv6");
        assert_eq!(frame[14 + 6], 58, "next header ICMPv6");
        assert_eq!(frame[14 + 7], 255, "hop limit");
        assert_eq!(&frame[22..38], &ip("fe80::1").octets(), "source");
        assert_eq!(&frame[38..54], &ip("ff02::1:ff00:100").octets(), "group");
        assert_eq!(frame[54], 135, "type: neighbour solicitation");
        assert_eq!(&frame[62..78], &target.octets(), "target");
        assert_eq!(&frame[78..80], &[1, 1], "source link-layer address option");
        assert_eq!(&frame[80..86], &DIRECTOR);
        // The checksum etherparse wrote is the one a receiver computes.
        let packet = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = packet.transport else {
            panic!("no ICMPv6 in {frame:?}");
        };
        let Some(NetSlice::Ipv6(ipv6)) = packet.net else {
            panic!("no IPv6 in {frame:?}");
        };
        let header = icmp.header();
        assert_eq!(
            header
                .icmp_type
                .calc_checksum(
                    ipv6.header().source(),
                    ipv6.header().destination(),
                    icmp.payload()
                )
                .unwrap(),
            header.checksum
        );
        assert_eq!(
            parse_advertisement(&frame),
            None,
            "a solicitation is no answer"
        );
        let probe = solicitation_frame(DIRECTOR, Ipv6Addr::UNSPECIFIED, target);
        assert_eq!(
            probe.len(),
            14 + 40 + 8 + 16,
            "no source link-layer option from ::"
        );
    }

    #[test]
    fn an_advertisement_names_its_target_and_sender() {
        let target = ip("2001:db8:77::11");
        let option = [2, 1, 0x02, 0, 0, 0, 0, 0x22];
        assert_eq!(
            parse_advertisement(&advertisement(SERVER, target, 255, &option)),
            Some(Advertisement {
                sender_mac: MacAddr([0x02, 0, 0, 0, 0, 0x22]),
                target,
            }),
            "the target link-layer address option names the answerer"
        );
        assert_eq!(
            parse_advertisement(&advertisement(SERVER, target, 255, &[])),
            Some(Advertisement {
                sender_mac: MacAddr(SERVER),
                target,
            }),
            "without the option, the frame's source does"
        );
        let frame = advertisement(SERVER, target, 64, &option);
        assert_eq!(parse_advertisement(&frame), None, "hop limit below 255");
        let frame = advertisement(SERVER, target, 255, &option);
        assert_eq!(parse_advertisement(&frame[..60]), None, "truncated");
        assert_eq!(parse_advertisement(&[]), None);
    }

    #[test]
    fn malformed_options_fall_back_on_the_frame_source() {
        assert_eq!(target_link_layer_address(&[2, 0, 1, 2, 3, 4, 5, 6]), None);
        assert_eq!(target_link_layer_address(&[2, 2, 1, 2, 3, 4, 5, 6]), None);
        assert_eq!(
            target_link_layer_address(&[1, 1, 9, 9, 9, 9, 9, 9, 2, 1, 1, 2, 3, 4, 5, 6]),
            Some([1, 2, 3, 4, 5, 6]),
            "found after another option"
        );
    }
}
