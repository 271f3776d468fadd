//! ICMP and ICMPv6 echo messages (RFC 792, RFC 4443), as far as `PING_CHECK` needs them:
//! the request it sends and the judgement of what it reads back. Pure: no socket here.

/// The ICMP header's length, the same in both families.
pub const ICMP_HEADER: usize = 8;

/// Which ICMP: the echo types differ, and so does who sums. An ICMPv6 checksum covers a
/// pseudo-header of addresses the kernel picks, so the kernel writes it on the way out and
/// checks it on the way in; an ICMP checksum covers the message alone, and is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn request_type(self) -> u8 {
        match self {
            Family::V4 => 8,
            Family::V6 => 128,
        }
    }

    fn reply_type(self) -> u8 {
        match self {
            Family::V4 => 0,
            Family::V6 => 129,
        }
    }
}

/// Builds an echo request (with its checksum, for ICMP). On an unprivileged ICMP socket the
/// kernel sets the identifier (to the socket's) and the checksum again.
pub fn request(family: Family, ident: u16, sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ICMP_HEADER + payload.len());
    message.extend_from_slice(&[family.request_type(), 0, 0, 0]);
    message.extend_from_slice(&ident.to_be_bytes());
    message.extend_from_slice(&sequence.to_be_bytes());
    message.extend_from_slice(payload);
    if family == Family::V4 {
        let sum = checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    message
}

/// The Internet checksum (RFC 1071): a message that carries it sums to 0.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the check expects back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected<'a> {
    pub family: Family,
    /// The identifier, when the socket does not filter by it (a raw socket does not; an
    /// unprivileged ICMP socket does, and rewrites it).
    pub ident: Option<u16>,
    pub sequence: u16,
    pub payload: &'a [u8],
    /// Whether what is read starts with the IPv4 header (a raw ICMP socket's does; ICMPv6
    /// sockets never hand over the IPv6 header).
    pub ip_header: bool,
}

/// Whether `packet` is the reply to our request; if not, why (it is passed over: a raw socket
/// reads every ICMP message from the address, our own request too on loopback).
pub fn judge(packet: &[u8], expected: &Expected<'_>) -> Result<(), &'static str> {
    let icmp = if expected.ip_header {
        let Some(&first) = packet.first() else {
            return Err("empty");
        };
        let header = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header < 20 {
            return Err("not an IPv4 packet");
        }
        packet.get(header..).ok_or("shorter than its IPv4 header")?
    } else {
        packet
    };
    if icmp.len() < ICMP_HEADER {
        return Err("shorter than an ICMP header");
    }
    if icmp[0] != expected.family.reply_type() || icmp[1] != 0 {
        return Err("not an echo reply");
    }
    if expected.family == Family::V4 && checksum(icmp) != 0 {
        return Err("a bad checksum");
    }
    let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    if expected.ident.is_some_and(|want| want != ident) {
        return Err("another identifier");
    }
    if u16::from_be_bytes([icmp[6], icmp[7]]) != expected.sequence {
        return Err("another sequence number");
    }
    if &icmp[ICMP_HEADER..] != expected.payload {
        return Err("another payload");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply a host sends to `request`: type 0, checksum made again.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = Family::V4.reply_type();
        reply[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        reply
    }

    fn with_ip_header(icmp: &[u8], header_words: u8) -> Vec<u8> {
        let mut packet = vec![0u8; usize::from(header_words) * 4];
        packet[0] = 0x40 | header_words;
        packet.extend_from_slice(icmp);
        packet
    }

    const PAYLOAD: &[u8] = b"lvs ping check!";

    fn expected(ident: Option<u16>, ip_header: bool) -> Expected<'static> {
        Expected {
            family: Family::V4,
            ident,
            sequence: 9,
            payload: PAYLOAD,
            ip_header,
        }
    }

    #[test]
    fn a_request_carries_a_valid_checksum() {
        let request = request(Family::V4, 0x1234, 9, PAYLOAD);
        assert_eq!(
            request[..8],
            [8, 0, request[2], request[3], 0x12, 0x34, 0, 9]
        );
        assert_eq!(checksum(&request), 0);
        // RFC 1071's example: the sum of these words is ddf2, its complement 220d.
        assert_eq!(checksum(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
    }

    #[test]
    fn the_reply_passes_with_and_without_an_ip_header() {
        let reply = reply_to(&request(Family::V4, 0x1234, 9, PAYLOAD));
        assert_eq!(judge(&reply, &expected(None, false)), Ok(()));
        assert_eq!(judge(&reply, &expected(Some(0x1234), false)), Ok(()));
        for words in [5, 6, 15] {
            let packet = with_ip_header(&reply, words);
            assert_eq!(judge(&packet, &expected(Some(0x1234), true)), Ok(()));
        }
    }

    #[test]
    fn anything_else_is_passed_over() {
        let request = request(Family::V4, 0x1234, 9, PAYLOAD);
        let reply = reply_to(&request);
        let ours = expected(Some(0x1234), false);
        assert_eq!(judge(&request, &ours), Err("not an echo reply"));
        assert_eq!(
            judge(&reply, &expected(Some(0x4321), false)),
            Err("another identifier")
        );
        let later = reply_to(&super::request(Family::V4, 0x1234, 10, PAYLOAD));
        assert_eq!(judge(&later, &ours), Err("another sequence number"));
        let other = reply_to(&super::request(Family::V4, 0x1234, 9, b"something else!"));
        assert_eq!(judge(&other, &ours), Err("another payload"));
        let mut corrupt = reply.clone();
        corrupt[10] ^= 1;
        assert_eq!(judge(&corrupt, &ours), Err("a bad checksum"));
        for cut in 0..reply.len() {
            assert!(judge(&reply[..cut], &ours).is_err(), "cut at {cut}");
        }
        let packet = with_ip_header(&reply, 5);
        for cut in 0..packet.len() {
            assert!(
                judge(&packet[..cut], &expected(Some(0x1234), true)).is_err(),
                "cut at {cut}"
            );
        }
        let mut ipv6 = packet.clone();
        ipv6[0] = 0x65;
        assert_eq!(
            judge(&ipv6, &expected(Some(0x1234), true)),
            Err("not an IPv4 packet")
        );
        let mut short_header = packet.clone();
        short_header[0] = 0x44;
        assert_eq!(
            judge(&short_header, &expected(Some(0x1234), true)),
            Err("not an IPv4 packet")
        );
    }

    #[test]
    fn icmpv6_echo_has_its_own_types_and_leaves_the_sum_to_the_kernel() {
        let request = request(Family::V6, 7, 9, PAYLOAD);
        assert_eq!(request[..8], [128, 0, 0, 0, 0, 7, 0, 9]);
        let mut reply = request.clone();
        reply[0] = 129;
        let v6 = Expected {
            family: Family::V6,
            ..expected(Some(7), false)
        };
        assert_eq!(judge(&reply, &v6), Ok(()), "no checksum of ours to check");
        assert_eq!(judge(&request, &v6), Err("not an echo reply"));
        let v4_reply = reply_to(&super::request(Family::V4, 7, 9, PAYLOAD));
        assert_eq!(judge(&v4_reply, &v6), Err("not an echo reply"));
    }
}
