//! The datagram checkers' settings (`UDP_CHECK`, `DNS_CHECK`, `PING_CHECK`) and the rules
//! of their values: keepalived's HEX_STR, the DNS query types and names. The config file and
//! the keepalived import both check with these rules, so an import writes only what the
//! config takes.

use std::{fmt, net::IpAddr};

use super::Endpoint;

/// keepalived's default `max_reply_length`.
pub const DEFAULT_MAX_REPLY_LENGTH: u16 = 255;
/// The most a UDP datagram over IPv4 can carry, so the longest `payload`.
pub const MAX_PAYLOAD: usize = 65_507;

/// `UDP_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpProbe {
    pub endpoint: Endpoint,
    /// `payload`: the datagram sent; without one, random bytes, as keepalived sends.
    pub payload: Option<Vec<u8>>,
    /// `require_reply`: a reply must come, and fit. Without it, only an ICMP error (port or
    /// host unreachable) within `connect_timeout` fails the check, as in keepalived.
    pub reply: Option<ReplyRule>,
}

/// What a `UDP_CHECK` reply must be.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyRule {
    /// `require_reply HEX_STR`: the reply's first bytes, up to the shorter of the two.
    pub pattern: Option<HexPattern>,
    /// `min_reply_length` and `max_reply_length`, in bytes, both included.
    pub min_length: u16,
    pub max_length: u16,
}

impl ReplyRule {
    /// Whether a reply fits; if not, why, in the operator's words.
    pub fn judge(&self, reply: &[u8]) -> Result<(), String> {
        let length = reply.len();
        if length < usize::from(self.min_length) || length > usize::from(self.max_length) {
            return Err(format!(
                "reply of {length} bytes, not {} to {}",
                self.min_length, self.max_length
            ));
        }
        if let Some(pattern) = &self.pattern
            && let Some(at) = pattern.mismatch(reply)
        {
            return Err(format!("reply differs from require_reply at byte {at}"));
        }
        Ok(())
    }
}

/// keepalived's HEX_STR: bytes in hex, and (in `require_reply`) nibbles that are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexPattern {
    pub bytes: Vec<u8>,
    /// Per byte, the bits that are not compared (an `x` nibble is 0x0f or 0xf0).
    pub ignored: Vec<u8>,
}

impl HexPattern {
    /// Reads keepalived's free-form HEX_STR: words separated by spaces or tabs, each read two
    /// digits to a byte, a word's odd last digit a byte of its own ("Ab12f 3" is AB 12 0F
    /// 03). With `wildcards`, an `x` or `X` digit matches any nibble.
    pub fn parse(text: &str, wildcards: bool) -> Result<Self, String> {
        let mut bytes = Vec::new();
        let mut ignored = Vec::new();
        for word in text.split([' ', '\t']).filter(|w| !w.is_empty()) {
            let digits = word.as_bytes();
            for pair in digits.chunks(2) {
                let mut value = 0u8;
                let mut mask = 0u8;
                for &digit in pair {
                    let (v, m) = nibble(digit, wildcards).ok_or_else(|| {
                        let what = if wildcards {
                            "hex digits and x"
                        } else {
                            "hex digits"
                        };
                        format!("{text:?} is not a hex string ({what}, spaces between)")
                    })?;
                    value = (value << 4) | v;
                    mask = (mask << 4) | m;
                }
                bytes.push(value);
                ignored.push(mask);
            }
        }
        if bytes.is_empty() {
            return Err("an empty hex string".into());
        }
        if bytes.len() > MAX_PAYLOAD {
            return Err(format!(
                "{} bytes, more than a UDP datagram carries ({MAX_PAYLOAD})",
                bytes.len()
            ));
        }
        Ok(Self { bytes, ignored })
    }

    /// The first byte where `reply` differs, comparing the shorter of the two lengths, as
    /// keepalived compares.
    pub fn mismatch(&self, reply: &[u8]) -> Option<usize> {
        self.bytes
            .iter()
            .zip(&self.ignored)
            .zip(reply)
            .position(|((want, ignored), got)| (want ^ got) & !ignored != 0)
    }
}

fn nibble(digit: u8, wildcards: bool) -> Option<(u8, u8)> {
    match digit {
        b'x' | b'X' if wildcards => Some((0, 0x0f)),
        _ => (digit as char).to_digit(16).map(|v| (v as u8, 0)),
    }
}

/// `DNS_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsProbe {
    pub endpoint: Endpoint,
    pub query_type: DnsType,
    /// The name asked for, as written (`.` is the root), checked by [`check_dns_name`].
    pub name: String,
}

/// The query types keepalived's `DNS_CHECK` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    Soa,
    Mx,
    Txt,
    Aaaa,
}

impl DnsType {
    const ALL: [DnsType; 7] = [
        DnsType::A,
        DnsType::Ns,
        DnsType::Cname,
        DnsType::Soa,
        DnsType::Mx,
        DnsType::Txt,
        DnsType::Aaaa,
    ];

    /// Reads a type name, in any case as keepalived does.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("{text:?} is not a DNS_CHECK type (A, NS, CNAME, SOA, MX, TXT or AAAA)")
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
        }
    }

    /// The type's number on the wire (RFC 1035, RFC 3596).
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
        }
    }
}

impl fmt::Display for DnsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rule for `DNS_CHECK`'s `name`: `.` (the root), or labels of 1 to 63 printable ASCII
/// characters separated by dots, with an optional final dot, at most 253 characters in all
/// (what a query can carry). keepalived refuses empty labels; it takes longer ones, but
/// cannot send them.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name == "." {
        return Ok(());
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    let fits = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| (1..=63).contains(&label.len()))
        && bare.bytes().all(|b| b.is_ascii_graphic());
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a DNS name (labels of 1 to 63 printable characters, \
             253 characters in all, or \".\")"
        ))
    }
}

/// `PING_CHECK`. The checker pings either family; the config gives it IPv4 addresses only,
/// as it does every address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PingProbe {
    /// `connect_ip`, by default the real server's address.
    pub address: IpAddr,
    /// `bindto`: the local source address.
    pub bind: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        HexPattern::parse(text, false).unwrap().bytes
    }

    #[test]
    fn hex_strings_read_as_keepalived_reads_them() {
        assert_eq!(
            hex("Ab12f 3 456 546443123"),
            [
                0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03
            ]
        );
        assert_eq!(hex("\t00ff "), [0x00, 0xff]);
        for bad in ["", "  ", "0g", "12 x4", "1-2"] {
            assert!(HexPattern::parse(bad, false).is_err(), "{bad:?}");
        }
        let too_long = "00".repeat(MAX_PAYLOAD + 1);
        assert!(HexPattern::parse(&too_long, false).is_err());
    }

    #[test]
    fn wildcards_ignore_their_nibble_in_reply_patterns_only() {
        let pattern = HexPattern::parse("1x X2 ff", true).unwrap();
        assert_eq!(pattern.bytes, [0x10, 0x02, 0xff]);
        assert_eq!(pattern.ignored, [0x0f, 0xf0, 0x00]);
        assert_eq!(pattern.mismatch(&[0x1a, 0xb2, 0xff, 0x00]), None);
        assert_eq!(pattern.mismatch(&[0x1a, 0xb3]), Some(1));
        assert_eq!(pattern.mismatch(&[0x20]), Some(0));
        assert_eq!(pattern.mismatch(&[0x10]), None, "the shorter length counts");
        assert!(HexPattern::parse("1x", false).is_err());
    }

    #[test]
    fn a_reply_fits_its_lengths_and_pattern() {
        let rule = ReplyRule {
            pattern: Some(HexPattern::parse("ab", true).unwrap()),
            min_length: 2,
            max_length: 4,
        };
        assert_eq!(rule.judge(&[0xab, 0]), Ok(()));
        assert!(rule.judge(&[0xab]).unwrap_err().contains("1 bytes"));
        assert!(rule.judge(&[0xab; 5]).unwrap_err().contains("5 bytes"));
        assert!(rule.judge(&[0xac, 0]).unwrap_err().contains("byte 0"));
    }

    #[test]
    fn dns_types_are_keepalived_s() {
        assert_eq!(DnsType::parse("soa"), Ok(DnsType::Soa));
        assert_eq!(DnsType::parse("AAAA").map(DnsType::code), Ok(28));
        assert!(DnsType::parse("SRV").is_err());
        assert!(DnsType::parse("").is_err());
    }

    #[test]
    fn dns_names_have_no_empty_or_long_labels() {
        for good in [".", "example.com", "example.com.", "a", "_dns.x-y.test"] {
            assert_eq!(check_dns_name(good), Ok(()), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = vec!["a".repeat(63); 4].join(".");
        for bad in [
            "",
            "..",
            ".com",
            "a..b",
            "a b",
            long_label.as_str(),
            long_name.as_str(),
            "é.test",
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad:?}");
        }
    }
}
