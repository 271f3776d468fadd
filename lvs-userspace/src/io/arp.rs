//! ARP on the wire, for `doctor`: building who-has requests and reading replies (etherparse
//! does the frame layout), and a raw `AF_PACKET` socket bound to one interface to send and
//! receive them. The kernel's own ARP code cannot be asked "who answers for this address?",
//! only "what is the one MAC you keep for it?", and a real server that wrongly answers for the
//! VIP is exactly a second answer.

use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, SlicedPacket};
use tokio::io::{Interest, unix::AsyncFd};

use crate::base::mac::MacAddr;

/// The shortest Ethernet frame (without the FCS); shorter ones are padded.
const MIN_FRAME: usize = 60;
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
    fd: AsyncFd<OwnedFd>,
}

impl ArpSocket {
    /// Opens the socket and binds it to the interface; needs CAP_NET_RAW.
    pub fn open(if_index: u32) -> io::Result<Self> {
        let protocol = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: socket() takes no pointers; a valid descriptor is owned from here on.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let address = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: protocol,
            sll_ifindex: i32::try_from(if_index)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: the pointer and length describe `address`, which lives across the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor for its whole life, so the descriptor it
        // registered is the one it reads, and it is closed only after deregistration.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Sends a whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, which lives across the call.
        let sent = unsafe {
            libc::send(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next ARP reply that arrived on the interface (frames this host sent,
    /// and frames that are not replies, are skipped).
    pub async fn recv_reply(&self) -> io::Result<ArpReply> {
        let mut buffer = [0u8; 1518];
        loop {
            let mut guard = self.fd.readable().await?;
            let received = guard.try_io(|fd| {
                // SAFETY: zeroed is a valid sockaddr_ll; recvfrom writes at most `length`
                // bytes into it and at most `buffer.len()` bytes into `buffer`.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut length = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        (&raw mut from).cast(),
                        &mut length,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok((n.unsigned_abs(), from.sll_pkttype))
            });
            match received {
                Ok(Ok((length, kind))) if kind != libc::PACKET_OUTGOING => {
                    if let Some(reply) = parse_reply(&buffer[..length]) {
                        return Ok(reply);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => {}
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
