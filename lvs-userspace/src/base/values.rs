//! Validated values: each type holds only what its rule allows, and the rule is written here
//! once. The front ends (the config file, lvsadm and `-R` files, the keepalived import, the
//! health config, the daemon's checks of API changes) validate through these types.
//!
//! A `ValueError` reads as the config file reports it (`weight 70000 is out of range
//! 0..=65535`); a front end whose users know other words (ipvsadm's `illegal weight
//! specified`, keepalived's `"0" is not a port (1 to 65535)`) maps the error to them. Types
//! that travel in messages implement `Deserialize` through the same rule, so a value out of
//! range cannot even decode.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

/// Why a value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("weight {0} is out of range 0..={max}", max = Weight::MAX)]
    Weight(i64),
    #[error("port {0} is out of range 1..=65535")]
    Port(i64),
    #[error("{0} cannot be a service or server address")]
    NotUnicast(IpAddr),
    #[error("{0} is not a netmask (its one bits must come first)")]
    NotNetmask(Ipv4Addr),
    #[error("prefix length {0} is out of range 0..=128")]
    Ipv6PrefixLength(i64),
    #[error("{0} is out of range 0..={max}", max = u32::MAX)]
    Threshold(i64),
    #[error("lower threshold {lower} is above upper threshold {upper}")]
    LowerAboveUpper { upper: u32, lower: u32 },
    #[error("{0} is out of range 1..={max}", max = Timeout::MAX)]
    Timeout(i64),
    #[error("{0} is out of range 0..={max}", max = Count::MAX)]
    Count(i64),
    #[error("{0} is not an HTTP status code (100-599)")]
    StatusCode(i64),
    #[error(
        "direct routing cannot change the port: the {role} must listen on the service port \
         {service}, not {server}"
    )]
    PortChanged {
        role: &'static str,
        service: u16,
        server: i64,
    },
    #[error("sync id {0} is out of range 0..=255")]
    SyncId(i64),
    #[error(
        "sync message length {0} is out of range {min}..={max}",
        min = SyncMaxLen::MIN,
        max = SyncMaxLen::MAX
    )]
    SyncMaxLen(i64),
    #[error("{0} is not a multicast group (224.0.0.0 to 239.255.255.255)")]
    NotMulticast(Ipv4Addr),

    #[error("multicast TTL {0} is out of range 1..=255")]
    MulticastTtl(i64),
    #[error(
        "routing table {0} is out of range 1..={max} or is one of the kernel's own \
         (253 default, 254 main, 255 local)",
        max = u32::MAX
    )]
    RouteTable(i64),
    #[error("BGP hold time {0} is out of range 3..=65535 (RFC 4271)")]
    HoldTime(i64),
    #[error("AS number {0} is out of range 1..={max}", max = u32::MAX)]
    AsNumber(i64),
    #[error(
        "not an address or prefix (a.b.c.d, a.b.c.d/length, an IPv6 address or \
         2001:db8::/length)"
    )]
    PrefixSyntax,
    #[error(
        "prefix length /{0} is out of range 1..=32 (a /0 would drop every frame: stop the \
         director instead)"
    )]
    PrefixLength(i64),
    #[error(
        "prefix length /{0} is out of range 1..=128 (a /0 would drop every frame: stop the \
         director instead)"
    )]
    Ipv6DenyPrefixLength(i64),
    #[error(
        "{address}/{length} is an IPv4-mapped IPv6 prefix, which no IPv6 frame comes from: \
         deny the IPv4 prefix instead"
    )]
    MappedDenyPrefix { address: Ipv6Addr, length: u8 },
    #[error("{address}/{length} has host bits set: the network is {network}/{length}")]
    HostBitsSet {
        address: IpAddr,
        length: u8,
        network: IpAddr,
    },
}

/// Defines `TryFrom<$from>` through `$new` and `From<$type> for $into`, which serde's
/// `try_from` and `into` attributes use.
macro_rules! conversions {
    ($type:ident, $from:ty => $new:path, $into:ty) => {
        impl TryFrom<$from> for $type {
            type Error = ValueError;

            fn try_from(value: $from) -> Result<Self, ValueError> {
                $new(value)
            }
        }

        impl From<$type> for $into {
            fn from(value: $type) -> $into {
                value.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// A real server's weight: its relative share of new connections, 0 to 65535 as in ipvsadm
/// and IPVS. 0 quiesces the server: it keeps its connections but gets no new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Weight(u32);

impl Weight {
    pub const MAX: u32 = 65535;
    /// ipvsadm's (and keepalived's) weight when none is given.
    pub const DEFAULT: Weight = Weight(1);

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(weight) if weight <= Self::MAX => Ok(Weight(weight)),
            _ => Err(ValueError::Weight(value)),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::DEFAULT
    }
}

conversions!(Weight, i64 => Weight::new, u32);

impl TryFrom<u32> for Weight {
    type Error = ValueError;

    fn try_from(value: u32) -> Result<Self, ValueError> {
        Weight::new(i64::from(value))
    }
}

/// A TCP or UDP port a service (or a checker) uses: 1 to 65535. Port 0 (ipvsadm's "every
/// port" of a persistent service) is not a port lvs serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u16::try_from(value) {
            Ok(port) if port != 0 => Ok(Port(port)),
            _ => Err(ValueError::Port(value)),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

conversions!(Port, i64 => Port::new, u16);

/// An address a service, a real server, a sorry server or a checker can have: an IPv4 or
/// IPv6 address that names one host. The unspecified address, IPv4's broadcast address and
/// multicast addresses name none or many, so no frame could be addressed to them; an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address, which is written as such,
/// so that each host has one address in one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "IpAddr", into = "IpAddr")]
pub struct UnicastAddress(IpAddr);

impl UnicastAddress {
    pub fn new(address: impl Into<IpAddr>) -> Result<Self, ValueError> {
        let address = address.into();
        let unicast = match address {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
            IpAddr::V6(v6) => {
                !(v6.is_unspecified() || v6.is_multicast() || v6.to_ipv4_mapped().is_some())
            }
        };
        if unicast {
            Ok(UnicastAddress(address))
        } else {
            Err(ValueError::NotUnicast(address))
        }
    }

    pub const fn get(self) -> IpAddr {
        self.0
    }
}

conversions!(UnicastAddress, IpAddr => UnicastAddress::new, IpAddr);

/// A persistence netmask (ipvsadm's `-M`, keepalived's `persistence_granularity`): one bits
/// followed by zero bits, since clients that share a template form a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Ipv4Addr", into = "Ipv4Addr")]
pub struct Netmask(Ipv4Addr);

impl Netmask {
    /// One client address per template: ipvsadm's default.
    pub const HOST: Netmask = Netmask(Ipv4Addr::BROADCAST);

    pub fn new(mask: Ipv4Addr) -> Result<Self, ValueError> {
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() == 32 {
            Ok(Netmask(mask))
        } else {
            Err(ValueError::NotNetmask(mask))
        }
    }

    pub const fn get(self) -> Ipv4Addr {
        self.0
    }
}

conversions!(Netmask, Ipv4Addr => Netmask::new, Ipv4Addr);

/// An IPv6 service's persistence granularity: a prefix length, 0 to 128, as ipvsadm's `-M`
/// and keepalived's `persistence_granularity` take it for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct PrefixLength(u8);

impl PrefixLength {
    /// One client address per template: ipvsadm's default for IPv6.
    pub const HOST: PrefixLength = PrefixLength(128);

    pub fn new(length: i64) -> Result<Self, ValueError> {
        match u8::try_from(length) {
            Ok(length) if length <= 128 => Ok(PrefixLength(length)),
            _ => Err(ValueError::Ipv6PrefixLength(length)),
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

conversions!(PrefixLength, i64 => PrefixLength::new, u8);

/// How many clients share a persistence template, in the family of the service: IPv4's
/// netmask or IPv6's prefix length. In messages an IPv4 netmask is its dotted text and an
/// IPv6 prefix length a number, as ipvsadm prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Granularity {
    Netmask(Netmask),
    PrefixLength(PrefixLength),
}

impl Granularity {
    /// One client address per template, for a service at `address`: ipvsadm's default.
    pub const fn host(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Granularity::Netmask(Netmask::HOST),
            IpAddr::V6(_) => Granularity::PrefixLength(PrefixLength::HOST),
        }
    }

    /// Whether this is the default, which ipvsadm's listings leave out.
    pub fn is_host(self) -> bool {
        self == Granularity::Netmask(Netmask::HOST)
            || self == Granularity::PrefixLength(PrefixLength::HOST)
    }

    /// Whether it can be the granularity of a service at `address`: a netmask for IPv4, a
    /// prefix length for IPv6.
    pub const fn fits(self, address: IpAddr) -> bool {
        matches!(
            (self, address),
            (Granularity::Netmask(_), IpAddr::V4(_))
                | (Granularity::PrefixLength(_), IpAddr::V6(_))
        )
    }

    /// The data plane's mask (`ServiceEntry::persist_mask`): the netmask in the first four
    /// bytes, or the prefix's sixteen bytes.
    pub fn mask_bytes(self) -> [u8; 16] {
        match self {
            Granularity::Netmask(mask) => {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&mask.get().octets());
                bytes
            }
            Granularity::PrefixLength(length) => match length.get() {
                0 => [0; 16],
                bits => (u128::MAX << (128 - u32::from(bits))).to_be_bytes(),
            },
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::Netmask(mask) => mask.fmt(f),
            Granularity::PrefixLength(length) => length.fmt(f),
        }
    }
}

/// A connection threshold of a real server (ipvsadm's `-x` and `-y`, keepalived's
/// `uthreshold` and `lthreshold`); 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Threshold(u32);

impl Threshold {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        u32::try_from(value)
            .map(Threshold)
            .map_err(|_| ValueError::Threshold(value))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

conversions!(Threshold, i64 => Threshold::new, u32);

/// A real server's two connection thresholds. At `upper` connections the server takes no
/// new ones until it is back at `lower`. An upper threshold of 0 means no limit; a lower one
/// of 0 means three quarters of the upper one, as in IPVS. A lower threshold above a set
/// upper one would never let the server back in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Thresholds {
    upper: u32,
    lower: u32,
}

impl Thresholds {
    pub fn new(upper: u32, lower: u32) -> Result<Self, ValueError> {
        if upper != 0 && lower > upper {
            return Err(ValueError::LowerAboveUpper { upper, lower });
        }
        Ok(Thresholds { upper, lower })
    }

    pub const fn upper(self) -> u32 {
        self.upper
    }

    pub const fn lower(self) -> u32 {
        self.lower
    }
}

/// An idle timeout (`--set tcp tcpfin udp`, `timeout_tcp`) or a persistence timeout (`-p`,
/// `persistence_timeout`), in seconds: at least 1, and few enough that the data plane's
/// milliseconds fit in 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Timeout(u32);

impl Timeout {
    pub const MAX: u32 = u32::MAX / 1000;

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(seconds) if (1..=Self::MAX).contains(&seconds) => Ok(Timeout(seconds)),
            _ => Err(ValueError::Timeout(value)),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

conversions!(Timeout, i64 => Timeout::new, u32);

/// A count in the health config: `quorum`, `hysteresis`, `retry`. A million is far more
/// than any service has real servers or any check needs retries, and keeps sums in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Count(u32);

impl Count {
    pub const MAX: u32 = 1_000_000;

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(count) if count <= Self::MAX => Ok(Count(count)),
            _ => Err(ValueError::Count(value)),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

conversions!(Count, i64 => Count::new, u32);

/// An HTTP status code a check accepts (keepalived's `status_code`): 100 to 599.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct StatusCode(u16);

impl StatusCode {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u16::try_from(value) {
            Ok(code) if (100..=599).contains(&code) => Ok(StatusCode(code)),
            _ => Err(ValueError::StatusCode(value)),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

conversions!(StatusCode, i64 => StatusCode::new, u16);

/// In direct routing the frame reaches a real server (or the sorry server, the `role`) as
/// the client sent it, so the server listens on the service's port: a port given for it must
/// be that one.
pub fn same_port(role: &'static str, service: u16, server: i64) -> Result<(), ValueError> {
    if server == i64::from(service) {
        Ok(())
    } else {
        Err(ValueError::PortChanged {
            role,
            service,
            server,
        })
    }
}

/// The sync id of connection sync (ipvsadm's `--syncid`, keepalived's `lvs_sync_daemon ...
/// id`): directors exchange connections only within one id, so that several pairs can share
/// a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct SyncId(u8);

impl SyncId {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        u8::try_from(value)
            .map(SyncId)
            .map_err(|_| ValueError::SyncId(value))
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

conversions!(SyncId, i64 => SyncId::new, u8);

/// The largest connection-sync message, in bytes of UDP payload (ipvsadm's `--sync-maxlen`).
/// The default fits a 1500-byte MTU after the IPv4 and UDP headers, so a message is never
/// fragmented; the least holds one entry; the most is the largest IPv4 UDP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct SyncMaxLen(u16);

impl SyncMaxLen {
    /// A header (20 bytes), one entry (28) and the HMAC (32): see `logic::sync::wire`.
    pub const MIN: u16 = 80;
    pub const MAX: u16 = 65507;
    pub const DEFAULT: SyncMaxLen = SyncMaxLen(1472);

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u16::try_from(value) {
            Ok(length) if (Self::MIN..=Self::MAX).contains(&length) => Ok(SyncMaxLen(length)),
            _ => Err(ValueError::SyncMaxLen(value)),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

conversions!(SyncMaxLen, i64 => SyncMaxLen::new, u16);

/// The multicast group connection sync is sent to (ipvsadm's `--mcast-group`). IPVS also
/// takes a unicast address here; lvs takes only a group, so that every backup on the segment
/// hears the master and a typo cannot send the connection table to one stranger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Ipv4Addr", into = "Ipv4Addr")]
pub struct MulticastGroup(Ipv4Addr);

impl MulticastGroup {
    /// IPVS's group, 224.0.0.81: link-local, so routers never forward it.
    pub const DEFAULT: MulticastGroup = MulticastGroup(Ipv4Addr::new(224, 0, 0, 81));

    pub fn new(address: Ipv4Addr) -> Result<Self, ValueError> {
        if address.is_multicast() {
            Ok(MulticastGroup(address))
        } else {
            Err(ValueError::NotMulticast(address))
        }
    }

    /// A group as an operator writes it (`--mcast-group`, keepalived's `lvs_sync_daemon
    /// ... group`, the config's `sync.group`): an IPv4 multicast address. An IPv6 group is
    /// refused with the reason, since the sync transport is IPv4 multicast whatever the
    /// connections' family.
    pub fn parse(text: &str) -> Result<Self, GroupError> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(address)) => Ok(MulticastGroup::new(address)?),
            Ok(IpAddr::V6(address)) => Err(GroupError::Ipv6(address)),
            Err(_) => Err(GroupError::NotAnAddress(text.to_owned())),
        }
    }

    pub const fn get(self) -> Ipv4Addr {
        self.0
    }
}

conversions!(MulticastGroup, Ipv4Addr => MulticastGroup::new, Ipv4Addr);

/// Why a sync group as written was refused (`MulticastGroup::parse`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    #[error(
        "{0} is an IPv6 group: connection sync runs over IPv4 multicast (IPv6 connections are \
         synced over it too)"
    )]
    Ipv6(Ipv6Addr),
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// The TTL of sync messages (ipvsadm's `--mcast-ttl`): 1, the default, keeps them on the
/// directors' segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct MulticastTtl(u8);

impl MulticastTtl {
    pub const DEFAULT: MulticastTtl = MulticastTtl(1);

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u8::try_from(value) {
            Ok(ttl) if ttl != 0 => Ok(MulticastTtl(ttl)),
            _ => Err(ValueError::MulticastTtl(value)),
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

conversions!(MulticastTtl, i64 => MulticastTtl::new, u8);

/// The kernel routing table where the director puts the routes of the VIPs it announces
/// (`[bgp] route_table`), which the BGP daemon's kernel protocol reads. Not 0 (unspecified)
/// and not the kernel's own tables (253 default, 254 main, 255 local): announcing must not
/// change how the director itself routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct RouteTable(u32);

impl RouteTable {
    /// Free on a stock Linux system, and the same number as lvs's route protocol, so that
    /// `ip route show table 245 proto 245` is easy to remember.
    pub const DEFAULT: RouteTable = RouteTable(245);

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(table) if table != 0 && !(253..=255).contains(&table) => Ok(RouteTable(table)),
            _ => Err(ValueError::RouteTable(value)),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

conversions!(RouteTable, i64 => RouteTable::new, u32);

/// A BGP hold time in seconds: how long a router keeps a peer's routes without hearing from
/// it, so how long a dead director may still get new flows. RFC 4271 allows 0 (never) or at
/// least 3; lvs refuses 0, since a director that dies must be withdrawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct HoldTime(u16);

impl HoldTime {
    /// Short enough that a director that dies is withdrawn within 3 s.
    pub const DEFAULT: HoldTime = HoldTime(3);

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u16::try_from(value) {
            Ok(seconds) if seconds >= 3 => Ok(HoldTime(seconds)),
            _ => Err(ValueError::HoldTime(value)),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// The keepalive time BGP sends with it: a third of the hold time (RFC 4271's advice).
    pub const fn keepalive(self) -> u16 {
        self.0 / 3
    }
}

conversions!(HoldTime, i64 => HoldTime::new, u16);

impl std::str::FromStr for HoldTime {
    type Err = String;

    /// For command-line flags: a number of seconds, by the same rule.
    fn from_str(text: &str) -> Result<Self, String> {
        let value: i64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        HoldTime::new(value).map_err(|error| error.to_string())
    }
}

/// A BGP autonomous system number: 4 bytes (RFC 6793), not 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct AsNumber(u32);

impl AsNumber {
    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(number) if number != 0 => Ok(AsNumber(number)),
            _ => Err(ValueError::AsNumber(value)),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

conversions!(AsNumber, i64 => AsNumber::new, u32);

impl std::str::FromStr for AsNumber {
    type Err = String;

    /// For command-line flags: a number, by the same rule.
    fn from_str(text: &str) -> Result<Self, String> {
        let value: i64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        AsNumber::new(value).map_err(|error| error.to_string())
    }
}

/// A source prefix of the deny list: an IPv4 network, `a.b.c.d/length` with no host bits
/// set, or one address (`a.b.c.d`, a /32); or an IPv6 network, `2001:db8::/32` likewise
/// (an address alone is a /128). /0 is refused: it would drop every frame. An IPv4-mapped
/// IPv6 prefix (`::ffff:a.b.c.d/length`) is refused too: no IPv6 frame carries such a source,
/// and the IPv4 prefix is the one that denies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourcePrefix {
    address: IpAddr,
    length: u8,
}

impl SourcePrefix {
    pub fn new(address: impl Into<IpAddr>, length: i64) -> Result<Self, ValueError> {
        let address = address.into();
        let bits: u8 = if address.is_ipv4() { 32 } else { 128 };
        let length = match u8::try_from(length) {
            Ok(length) if (1..=bits).contains(&length) => length,
            _ if address.is_ipv4() => return Err(ValueError::PrefixLength(length)),
            _ => return Err(ValueError::Ipv6DenyPrefixLength(length)),
        };
        let network = match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX << (32 - u32::from(length));
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                if v6.to_ipv4_mapped().is_some() && length >= 96 {
                    return Err(ValueError::MappedDenyPrefix {
                        address: v6,
                        length,
                    });
                }
                let mask = u128::MAX << (128 - u32::from(length));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        if network != address {
            return Err(ValueError::HostBitsSet {
                address,
                length,
                network,
            });
        }
        Ok(SourcePrefix { address, length })
    }

    pub const fn address(self) -> IpAddr {
        self.address
    }

    pub const fn length(self) -> u8 {
        self.length
    }
}

impl std::str::FromStr for SourcePrefix {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let (address, length) = match text.split_once('/') {
            Some((address, length)) => (address, Some(length)),
            None => (text, None),
        };
        let address = address
            .parse::<IpAddr>()
            .map_err(|_| ValueError::PrefixSyntax)?;
        let length = match length {
            Some(length) => length
                .parse::<i64>()
                .map_err(|_| ValueError::PrefixSyntax)?,
            None if address.is_ipv4() => 32,
            None => 128,
        };
        SourcePrefix::new(address, length)
    }
}

impl TryFrom<String> for SourcePrefix {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
            .map_err(|error: ValueError| format!("{text:?}: {error}"))
    }
}

impl From<SourcePrefix> for String {
    fn from(prefix: SourcePrefix) -> String {
        prefix.to_string()
    }
}

impl fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_prefixes() {
        let ok = |text: &str| text.parse::<SourcePrefix>().unwrap().to_string();
        assert_eq!(ok("203.0.113.0/24"), "203.0.113.0/24");
        assert_eq!(ok("198.51.100.7"), "198.51.100.7/32");
        assert_eq!(ok("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(ok("128.0.0.0/1"), "128.0.0.0/1");
        let refused = |text: &str| text.parse::<SourcePrefix>().unwrap_err().to_string();
        assert_eq!(
            refused("203.0.113.1/24"),
            "203.0.113.1/24 has host bits set: the network is 203.0.113.0/24"
        );
        assert!(refused("0.0.0.0/0").starts_with("prefix length /0 is out of range 1..=32"));
        assert!(refused("10.0.0.0/33").starts_with("prefix length /33"));
        assert!(refused("10.0.0.0/-1").starts_with("prefix length /-1"));
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/8/8",
            " 10.0.0.1",
            "2001:db8::/",
            "[2001:db8::]/32",
            "2001:db8:::/32",
        ] {
            assert_eq!(
                refused(bad),
                "not an address or prefix (a.b.c.d, a.b.c.d/length, an IPv6 address or \
                 2001:db8::/length)",
                "{bad:?}"
            );
        }
        let decoded: Result<SourcePrefix, _> = serde_json::from_str("\"10.1.0.0/15\"");
        assert_eq!(
            decoded.unwrap_err().to_string(),
            "\"10.1.0.0/15\": 10.1.0.0/15 has host bits set: the network is 10.0.0.0/15"
        );
        let prefix: SourcePrefix = serde_json::from_str("\"10.0.0.0/15\"").unwrap();
        assert_eq!(prefix.address(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)));
        assert_eq!(serde_json::to_string(&prefix).unwrap(), "\"10.0.0.0/15\"");
    }

    #[test]
    fn ipv6_source_prefixes() {
        let ok = |text: &str| text.parse::<SourcePrefix>().unwrap().to_string();
        assert_eq!(ok("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(ok("2001:DB8:0::/48"), "2001:db8::/48");
        assert_eq!(ok("2001:db8::7"), "2001:db8::7/128");
        assert_eq!(ok("8000::/1"), "8000::/1");
        // A prefix that only holds the mapped range is not one: it holds much more.
        assert_eq!(ok("::/80"), "::/80");
        let refused = |text: &str| text.parse::<SourcePrefix>().unwrap_err().to_string();
        assert_eq!(
            refused("2001:db8::1/32"),
            "2001:db8::1/32 has host bits set: the network is 2001:db8::/32"
        );
        assert!(refused("::/0").starts_with("prefix length /0 is out of range 1..=128"));
        assert!(
            refused("2001:db8::/129").starts_with("prefix length /129 is out of range 1..=128")
        );
        assert!(refused("2001:db8::/-1").starts_with("prefix length /-1"));
        // One rule for either family's length: an IPv4 prefix stops at 32.
        assert!(refused("10.0.0.0/64").starts_with("prefix length /64 is out of range 1..=32"));
        for mapped in [
            "::ffff:192.0.2.0/120",
            "::ffff:0.0.0.0/96",
            "::ffff:192.0.2.1",
        ] {
            assert!(
                refused(mapped).contains("is an IPv4-mapped IPv6 prefix"),
                "{mapped}: {}",
                refused(mapped)
            );
        }
        assert_eq!(
            refused("::ffff:192.0.2.1"),
            "::ffff:192.0.2.1/128 is an IPv4-mapped IPv6 prefix, which no IPv6 frame comes \
             from: deny the IPv4 prefix instead"
        );
        let prefix: SourcePrefix = serde_json::from_str("\"2001:db8:1::/48\"").unwrap();
        assert_eq!(prefix.length(), 48);
        assert!(prefix.address().is_ipv6());
        assert_eq!(
            serde_json::to_string(&prefix).unwrap(),
            "\"2001:db8:1::/48\""
        );
        // IPv4 prefixes sort before IPv6 ones.
        assert!(prefix > "203.0.113.0/24".parse::<SourcePrefix>().unwrap());
    }
    #[test]
    fn route_tables_and_hold_times() {
        check(
            RouteTable::new,
            &[
                (1, "1"),
                (245, "245"),
                (252, "252"),
                (256, "256"),
                (4294967295, "4294967295"),
                (
                    0,
                    "routing table 0 is out of range 1..=4294967295 or is one of the kernel's \
                     own (253 default, 254 main, 255 local)",
                ),
                (
                    254,
                    "routing table 254 is out of range 1..=4294967295 or is one of the \
                     kernel's own (253 default, 254 main, 255 local)",
                ),
                (
                    4294967296,
                    "routing table 4294967296 is out of range 1..=4294967295 or is one of the \
                     kernel's own (253 default, 254 main, 255 local)",
                ),
            ],
        );
        for table in [253, 255, -1] {
            assert!(RouteTable::new(table).is_err(), "{table}");
        }
        check(
            HoldTime::new,
            &[
                (3, "3"),
                (90, "90"),
                (65535, "65535"),
                (0, "BGP hold time 0 is out of range 3..=65535 (RFC 4271)"),
                (2, "BGP hold time 2 is out of range 3..=65535 (RFC 4271)"),
                (
                    65536,
                    "BGP hold time 65536 is out of range 3..=65535 (RFC 4271)",
                ),
            ],
        );
        assert_eq!(HoldTime::DEFAULT.keepalive(), 1);
        check(
            AsNumber::new,
            &[
                (1, "1"),
                (4294967295, "4294967295"),
                (0, "AS number 0 is out of range 1..=4294967295"),
                (
                    4294967296,
                    "AS number 4294967296 is out of range 1..=4294967295",
                ),
            ],
        );
        assert_eq!("65001".parse::<AsNumber>().map(AsNumber::get), Ok(65001));
        assert!("x".parse::<AsNumber>().is_err());
        assert_eq!(HoldTime::new(90).unwrap().keepalive(), 30);
    }

    /// Checks a rule on each input: the value it keeps, or the message of its error.
    fn check<T: fmt::Display, I: fmt::Debug + Copy>(
        rule: impl Fn(I) -> Result<T, ValueError>,
        cases: &[(I, &str)],
    ) {
        for &(input, expected) in cases {
            let got = match rule(input) {
                Ok(value) => value.to_string(),
                Err(error) => error.to_string(),
            };
            assert_eq!(got, expected, "for {input:?}");
        }
    }

    #[test]
    fn weight() {
        check(
            Weight::new,
            &[
                (0, "0"),
                (1, "1"),
                (65535, "65535"),
                (65536, "weight 65536 is out of range 0..=65535"),
                (-1, "weight -1 is out of range 0..=65535"),
                (
                    i64::MAX,
                    "weight 9223372036854775807 is out of range 0..=65535",
                ),
            ],
        );
        assert_eq!(Weight::default().get(), 1);
        assert_eq!(Weight::try_from(70000u32), Err(ValueError::Weight(70000)));
    }

    #[test]
    fn port() {
        check(
            Port::new,
            &[
                (1, "1"),
                (80, "80"),
                (65535, "65535"),
                (0, "port 0 is out of range 1..=65535"),
                (65536, "port 65536 is out of range 1..=65535"),
                (-80, "port -80 is out of range 1..=65535"),
            ],
        );
    }

    #[test]
    fn unicast_address() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().expect("an address");
        check(
            UnicastAddress::new,
            &[
                (ip("192.0.2.10"), "192.0.2.10"),
                (ip("10.0.0.1"), "10.0.0.1"),
                (ip("127.0.0.1"), "127.0.0.1"),
                (
                    ip("0.0.0.0"),
                    "0.0.0.0 cannot be a service or server address",
                ),
                (
                    ip("255.255.255.255"),
                    "255.255.255.255 cannot be a service or server address",
                ),
                (
                    ip("224.0.0.1"),
                    "224.0.0.1 cannot be a service or server address",
                ),
                (
                    ip("239.255.255.255"),
                    "239.255.255.255 cannot be a service or server address",
                ),
            ],
        );
    }

    #[test]
    fn netmask() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().expect("an address");
        check(
            Netmask::new,
            &[
                (ip("255.255.255.255"), "255.255.255.255"),
                (ip("255.255.255.0"), "255.255.255.0"),
                (ip("255.128.0.0"), "255.128.0.0"),
                (ip("0.0.0.0"), "0.0.0.0"),
                (
                    ip("255.0.255.0"),
                    "255.0.255.0 is not a netmask (its one bits must come first)",
                ),
                (
                    ip("0.0.0.255"),
                    "0.0.0.255 is not a netmask (its one bits must come first)",
                ),
            ],
        );
        assert_eq!(Netmask::HOST.get(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn threshold() {
        check(
            Threshold::new,
            &[
                (0, "0"),
                (4294967295, "4294967295"),
                (4294967296, "4294967296 is out of range 0..=4294967295"),
                (-1, "-1 is out of range 0..=4294967295"),
            ],
        );
    }

    #[test]
    fn thresholds() {
        let both = |(upper, lower): (u32, u32)| {
            Thresholds::new(upper, lower).map(|t| format!("{}/{}", t.upper(), t.lower()))
        };
        check(
            both,
            &[
                ((0, 0), "0/0"),
                ((100, 0), "100/0"),
                ((100, 100), "100/100"),
                ((100, 75), "100/75"),
                // With no upper threshold the lower one has nothing to be above.
                ((0, 20), "0/20"),
                ((10, 20), "lower threshold 20 is above upper threshold 10"),
            ],
        );
    }

    #[test]
    fn timeout() {
        check(
            Timeout::new,
            &[
                (1, "1"),
                (300, "300"),
                (4294967, "4294967"),
                (0, "0 is out of range 1..=4294967"),
                (4294968, "4294968 is out of range 1..=4294967"),
                (-5, "-5 is out of range 1..=4294967"),
            ],
        );
    }

    #[test]
    fn count() {
        check(
            Count::new,
            &[
                (0, "0"),
                (1_000_000, "1000000"),
                (1_000_001, "1000001 is out of range 0..=1000000"),
                (-1, "-1 is out of range 0..=1000000"),
            ],
        );
    }

    #[test]
    fn status_code() {
        check(
            StatusCode::new,
            &[
                (100, "100"),
                (200, "200"),
                (599, "599"),
                (99, "99 is not an HTTP status code (100-599)"),
                (600, "600 is not an HTTP status code (100-599)"),
                (-200, "-200 is not an HTTP status code (100-599)"),
            ],
        );
    }

    #[test]
    fn direct_routing_keeps_the_port() {
        let real_server = |(service, server): (u16, i64)| {
            same_port("real server", service, server).map(|()| "same")
        };
        check(
            real_server,
            &[
                ((80, 80), "same"),
                ((65535, 65535), "same"),
                (
                    (80, 8080),
                    "direct routing cannot change the port: the real server must listen on the \
                     service port 80, not 8080",
                ),
                (
                    (80, 70000),
                    "direct routing cannot change the port: the real server must listen on the \
                     service port 80, not 70000",
                ),
            ],
        );
        assert_eq!(
            same_port("sorry server", 53, 54).unwrap_err().to_string(),
            "direct routing cannot change the port: the sorry server must listen on the service \
             port 53, not 54"
        );
    }

    #[test]
    fn sync_ids_and_message_lengths() {
        check(
            SyncId::new,
            &[
                (0, "0"),
                (255, "255"),
                (256, "sync id 256 is out of range 0..=255"),
                (-1, "sync id -1 is out of range 0..=255"),
            ],
        );
        check(
            SyncMaxLen::new,
            &[
                (80, "80"),
                (1472, "1472"),
                (65507, "65507"),
                (79, "sync message length 79 is out of range 80..=65507"),
                (
                    65508,
                    "sync message length 65508 is out of range 80..=65507",
                ),
            ],
        );
        check(
            |address: [u8; 4]| MulticastGroup::new(Ipv4Addr::from(address)),
            &[
                ([224, 0, 0, 81], "224.0.0.81"),
                ([239, 255, 255, 255], "239.255.255.255"),
                (
                    [10, 0, 0, 1],
                    "10.0.0.1 is not a multicast group (224.0.0.0 to 239.255.255.255)",
                ),
                (
                    [255, 255, 255, 255],
                    "255.255.255.255 is not a multicast group (224.0.0.0 to 239.255.255.255)",
                ),
            ],
        );
        check(
            MulticastTtl::new,
            &[
                (1, "1"),
                (255, "255"),
                (0, "multicast TTL 0 is out of range 1..=255"),
                (256, "multicast TTL 256 is out of range 1..=255"),
            ],
        );
    }

    #[test]
    fn a_value_out_of_range_does_not_decode() {
        let check = |json: &str, expected: Result<&str, &str>| {
            #[derive(Debug, Deserialize, Serialize)]
            struct Server {
                address: UnicastAddress,
                weight: Weight,
                port: Port,
            }
            let got = serde_json::from_str::<Server>(json)
                .map(|server| serde_json::to_string(&server).expect("serializes"))
                .map_err(|error| error.to_string());
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{json}"),
                (Err(got), Err(expected)) => {
                    assert!(got.contains(expected), "{json}: {got}");
                }
                (got, expected) => panic!("{json}: got {got:?}, want {expected:?}"),
            }
        };
        let good = r#"{"address":"10.0.0.1","weight":3,"port":80}"#;
        check(good, Ok(good));
        check(
            r#"{"address":"10.0.0.1","weight":70000,"port":80}"#,
            Err("weight 70000 is out of range 0..=65535"),
        );
        check(
            r#"{"address":"224.0.0.1","weight":1,"port":80}"#,
            Err("224.0.0.1 cannot be a service or server address"),
        );
        check(
            r#"{"address":"10.0.0.1","weight":1,"port":0}"#,
            Err("port 0 is out of range 1..=65535"),
        );
        check(
            r#"{"address":"10.0.0.1","weight":-1,"port":80}"#,
            Err("weight -1 is out of range 0..=65535"),
        );
    }
}
