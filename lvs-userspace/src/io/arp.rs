//! ARP on the wire, for `doctor`: building who-has requests and reading replies (etherparse
//! does the frame layout), and a raw `AF_PACKET` socket bound to one interface to send and
//! receive them. The kernel's own ARP code cannot be asked "who answers for this address?",
//! only "what is the one MAC you keep for it?", and a real server that wrongly answers for the
//! VIP is exactly a second answer.

use std::{io, net::Ipv4Addr};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, SlicedPacket};

use super::packet_socket::PacketSocket;
use crate::base::mac::MacAddr;

/// The shortest Ethernet frame (without the FCS); shorter ones are padded.
pub(crate) const MIN_FRAME: usize = 60;
const BROADCAST: [u8; 6] = [0xff; 6];

/// A reply: `sender_mac` says it has `sender_ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpReply {
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
}

/// A broadcast who-has request for `target` from `source_mac`, which says it is `sender_ip`
/// (0.0.0.0 makes it an RFC 5227 probe, which hosts answer too).
pub fn request_frame(source_mac: [u8; 6], sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &source_mac,
        &sender_ip.octets(),
        &[0; 6],
        &target.octets(),
    )
    .expect("Ethernet and IPv4 address lengths are valid for ARP");
    let builder = PacketBuilder::ethernet2(source_mac, BROADCAST).arp(arp);
    let mut frame = Vec::with_capacity(MIN_FRAME);
    builder
        .write_to_vec(&mut frame)
        .expect("writing to a Vec cannot fail");
    frame.resize(frame.len().max(MIN_FRAME), 0);
    frame
}

/// The ARP reply in a frame, if it is one (Ethernet, IPv4 addresses, operation reply).
pub fn parse_reply(frame: &[u8]) -> Option<ArpReply> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let arp = packet.net?.arp_ref()?.to_packet().try_eth_ipv4().ok()?;
    (arp.operation == ArpOperation::REPLY).then(|| ArpReply {
        sender_mac: MacAddr(arp.sender_mac),
        sender_ip: arp.sender_ipv4_addr(),
    })
}

/// A raw packet socket for ARP frames on one interface.
pub struct ArpSocket {
    socket: PacketSocket,
}

impl ArpSocket {
    /// Opens the socket and binds it to the interface; needs CAP_NET_RAW.
    pub fn open(if_index: u32) -> io::Result<Self> {
        let socket = PacketSocket::open(if_index, libc::ETH_P_ARP as u16)?;
        Ok(Self { socket })
    }

    /// Sends a whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send(frame)
    }

    /// Waits for the next ARP reply that arrived on the interface (frames this host sent,
    /// and frames that are not replies, are skipped).
    pub async fn recv_reply(&self) -> io::Result<ArpReply> {
        let mut buffer = [0u8; 1518];
        loop {
            let length = self.socket.recv_incoming(&mut buffer).await?;
            if let Some(reply) = parse_reply(&buffer[..length]) {
                return Ok(reply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const SERVER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

    #[test]
    fn a_request_is_a_padded_broadcast_who_has() {
        let frame = request_frame(
            DIRECTOR,
            Ipv4Addr::new(10, 77, 0, 1),
            Ipv4Addr::new(10, 77, 0, 100),
        );
        assert_eq!(frame.len(), MIN_FRAME);
        assert_eq!(&frame[0..6], &BROADCAST);
        assert_eq!(&frame[6..12], &DIRECTOR);
        assert_eq!(&frame[12..14], &[0x08, 0x06], "EtherType ARP");
        assert_eq!(&frame[20..22], &[0, 1], "operation: request");
        assert_eq!(&frame[22..28], &DIRECTOR, "sender MAC");
        assert_eq!(&frame[28..32], &[10, 77, 0, 1], "sender IP");
        assert_eq!(&frame[32..38], &[0; 6], "target MAC unknown");
        assert_eq!(&frame[38..42], &[10, 77, 0, 100], "target IP");
        assert_eq!(parse_reply(&frame), None, "a request is not a reply");
    }

    #[test]
    fn a_reply_names_its_sender() {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REPLY,
            &SERVER,
            &[10, 77, 0, 11],
            &DIRECTOR,
            &[10, 77, 0, 1],
        )
        .unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SERVER, DIRECTOR)
            .arp(arp)
            .write_to_vec(&mut frame)
            .unwrap();
        assert_eq!(
            parse_reply(&frame),
            Some(ArpReply {
                sender_mac: MacAddr(SERVER),
                sender_ip: Ipv4Addr::new(10, 77, 0, 11),
            })
        );
        assert_eq!(parse_reply(&frame[..30]), None, "truncated");
        assert_eq!(parse_reply(&[]), None);
    }
}
