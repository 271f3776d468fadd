//! Parsing of option values as ipvsadm does it: `host[:port]`, numbers in a range, timeouts,
//! netmasks and scheduler flags.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{UsageError, names::Resolver};
use crate::{
    base::values::{Granularity, Netmask, PrefixLength},
    logic::{
        api::{MAX_TIMEOUT, Protocol, SchedFlags, Scheduler},
        schedule::SchedulerError,
    },
};

/// What a `host[:port]` argument names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPort {
    pub address: IpAddr,
    /// `None` when the argument has no `:port`.
    pub port: Option<u16>,
}

/// Why a `host[:port]` argument was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// Not an address, a known host, a number or a known service name.
    Illegal,
    /// An IPv6 address without brackets, whose last group cannot be told from a port.
    Unbracketed,
}

/// Parses `host[:port]` or `[v6][:port]` the way ipvsadm does: the host is a dotted quad, a
/// host name or a bracketed IPv6 address, the port a number from 0 to 65535 or a service
/// name of `protocol`. A bare number is not an address, and an IPv6 address needs its
/// brackets, since `2001:db8::1:80` is an address too.
pub fn address_port(
    text: &str,
    protocol: Protocol,
    names: &dyn Resolver,
) -> Result<AddressPort, AddressError> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::Illegal);
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Err(AddressError::Unbracketed);
    }
    let (address, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(AddressError::Illegal)?;
        let address: Ipv6Addr = inside.parse().map_err(|_| AddressError::Illegal)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(AddressError::Illegal)?),
        };
        (IpAddr::V6(address), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let address = host
            .parse::<Ipv4Addr>()
            .ok()
            .or_else(|| names.host_address(host))
            .ok_or(AddressError::Illegal)?;
        (IpAddr::V4(address), port)
    };
    let port = match port {
        None => None,
        Some(port) => Some(
            number(port, 0, 65535)
                .map(|n| n as u16)
                .or_else(|| names.service_port(port, protocol))
                .ok_or(AddressError::Illegal)?,
        ),
    };
    Ok(AddressPort { address, port })
}

/// A decimal number, as ipvsadm's `string_to_number` reads it, for a value type's rule to
/// check.
pub fn integer(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// A decimal number within `min..=max`, as ipvsadm's `string_to_number` reads it.
pub fn number(text: &str, min: i64, max: i64) -> Option<u32> {
    let value = integer(text)?;
    (min..=max)
        .contains(&value)
        .then(|| u32::try_from(value).ok())
        .flatten()
}

/// A timeout in seconds within `min..=31 days`.
pub fn timeout(text: &str, min: u32) -> Result<u32, UsageError> {
    number(text, i64::from(min), i64::from(MAX_TIMEOUT))
        .ok_or_else(|| UsageError::InvalidTimeout(text.to_owned()))
}

/// A persistence granularity for a service at `service`: for IPv4 a dotted quad (or a host
/// name, as ipvsadm allows) whose one bits are contiguous, since a persistence group is a
/// network; for IPv6 a prefix length from 0 to 128, as ipvsadm takes it.
pub fn netmask(
    text: &str,
    service: IpAddr,
    names: &dyn Resolver,
) -> Result<Granularity, UsageError> {
    match service {
        IpAddr::V4(_) => {
            let mask = text
                .parse::<Ipv4Addr>()
                .ok()
                .or_else(|| names.host_address(text))
                .ok_or(UsageError::IllegalNetmask)?;
            Netmask::new(mask)
                .map(Granularity::Netmask)
                .map_err(|_| UsageError::IllegalNetmask)
        }
        IpAddr::V6(_) => integer(text)
            .and_then(|length| PrefixLength::new(length).ok())
            .map(Granularity::PrefixLength)
            .ok_or(UsageError::IllegalNetmask),
    }
}

/// A scheduler name: one lvs has, one of ipvsadm's that lvs lacks, or an unknown one.
pub fn scheduler(name: &str) -> Result<Scheduler, UsageError> {
    name.parse().map_err(|error| match error {
        SchedulerError::Unsupported(name) => UsageError::UnsupportedScheduler(name),
        _ => UsageError::UnknownScheduler,
    })
}

/// Comma-separated scheduler flags; they must mean something for the scheduler. ipvsadm
/// splits with strtok, so empty items between commas are skipped.
pub fn sched_flags(text: &str, scheduler: Scheduler) -> Result<SchedFlags, UsageError> {
    let names = text.split(',').filter(|name| !name.is_empty());
    SchedFlags::parse(scheduler, names).map_err(|error| match error {
        SchedulerError::FlagNotForScheduler { flag, .. }
            if flag.starts_with("sh-") || flag.starts_with("mh-") =>
        {
            UsageError::IncompatibleSchedFlag(flag)
        }
        SchedulerError::FlagNotForScheduler { flag, scheduler } => {
            UsageError::MeaninglessSchedFlag { flag, scheduler }
        }
        SchedulerError::UnknownFlag(flag)
        | SchedulerError::Unsupported(flag)
        | SchedulerError::Unknown(flag) => UsageError::InvalidSchedFlag(flag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::ipvsadm::names::Table;

    #[test]
    fn addresses_and_ports() {
        let names = Table::example();
        let at = |text| address_port(text, Protocol::Tcp, &names);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6 = IpAddr::V6("2001:db8::1".parse().unwrap());
        let cases = [
            ("10.0.0.1:80", Ok((ip, Some(80)))),
            ("10.0.0.1", Ok((ip, None))),
            ("10.0.0.1:0", Ok((ip, Some(0)))),
            ("web.example.com:http", Ok((ip, Some(80)))),
            ("10.0.0.1:https", Ok((ip, Some(443)))),
            ("10.0.0.1:65536", Err(AddressError::Illegal)),
            ("10.0.0.1:-1", Err(AddressError::Illegal)),
            ("10.0.0.1:gopher", Err(AddressError::Illegal)),
            ("10.0.0.300:80", Err(AddressError::Illegal)),
            ("nowhere.example.com:80", Err(AddressError::Illegal)),
            ("8080", Err(AddressError::Illegal)),
            ("", Err(AddressError::Illegal)),
            ("[2001:db8::1]:80", Ok((v6, Some(80)))),
            ("[2001:db8::1]", Ok((v6, None))),
            ("[2001:db8::1]:http", Ok((v6, Some(80)))),
            ("2001:db8::1", Err(AddressError::Unbracketed)),
            ("2001:db8::1:80", Err(AddressError::Unbracketed)),
            ("[2001:db8::1]80", Err(AddressError::Illegal)),
            ("[2001:db8::1", Err(AddressError::Illegal)),
            ("[10.0.0.1]:80", Err(AddressError::Illegal)),
            ("[2001:db8::1]:65536", Err(AddressError::Illegal)),
        ];
        for (text, expected) in cases {
            let got = at(text).map(|a| (a.address, a.port));
            assert_eq!(got, expected, "{text}");
        }
        assert_eq!(
            address_port("10.0.0.1:domain", Protocol::Udp, &names).map(|a| a.port),
            Ok(Some(53))
        );
    }

    #[test]
    fn numbers_timeouts_and_netmasks() {
        assert_eq!(number("65535", 0, 65535), Some(65535));
        assert_eq!(number("65536", 0, 65535), None);
        assert_eq!(number("+7", 0, 65535), Some(7));
        assert_eq!(number("7x", 0, 65535), None);
        assert_eq!(timeout("0", 0), Ok(0));
        assert_eq!(timeout("0", 1), Err(UsageError::InvalidTimeout("0".into())));
        assert_eq!(timeout("2678400", 1), Ok(2_678_400));
        assert!(timeout("2678401", 1).is_err());
        let names = Table::example();
        let v4: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let mask = |a, b, c, d| {
            Ok(Granularity::Netmask(
                Netmask::new(Ipv4Addr::new(a, b, c, d)).unwrap(),
            ))
        };
        assert_eq!(netmask("255.255.255.0", v4, &names), mask(255, 255, 255, 0));
        assert_eq!(netmask("0.0.0.0", v4, &names), mask(0, 0, 0, 0));
        assert_eq!(
            netmask("255.0.255.0", v4, &names),
            Err(UsageError::IllegalNetmask)
        );
        assert_eq!(netmask("24", v4, &names), Err(UsageError::IllegalNetmask));
        let prefix = |length| {
            Ok(Granularity::PrefixLength(
                PrefixLength::new(length).unwrap(),
            ))
        };
        assert_eq!(netmask("64", v6, &names), prefix(64));
        assert_eq!(netmask("0", v6, &names), prefix(0));
        assert_eq!(netmask("128", v6, &names), prefix(128));
        assert_eq!(netmask("129", v6, &names), Err(UsageError::IllegalNetmask));
        assert_eq!(
            netmask("255.255.255.0", v6, &names),
            Err(UsageError::IllegalNetmask)
        );
    }

    #[test]
    fn scheduler_flags_follow_ipvsadm() {
        let both = SchedFlags {
            fallback: true,
            port: true,
        };
        assert_eq!(
            sched_flags("sh-fallback,sh-port", Scheduler::SourceHashing),
            Ok(both)
        );
        assert_eq!(
            sched_flags("mh-port,mh-fallback", Scheduler::MaglevHashing),
            Ok(both)
        );
        assert_eq!(
            sched_flags("flag-1,,flag-2", Scheduler::MaglevHashing),
            Ok(both)
        );
        assert_eq!(
            sched_flags("flag-1", Scheduler::WeightedLeastConnection),
            Err(UsageError::MeaninglessSchedFlag {
                flag: "flag-1".into(),
                scheduler: Scheduler::WeightedLeastConnection
            })
        );
        assert_eq!(
            sched_flags("flag-3", Scheduler::SourceHashing).map_err(|e| e.to_string()),
            Err(
                "scheduler flag `flag-3' has no meaning for scheduler sh: lvs takes sh-fallback, \
                 sh-port, mh-fallback and mh-port"
                    .into()
            )
        );
        assert_eq!(
            sched_flags("sh-port", Scheduler::MaglevHashing),
            Err(UsageError::IncompatibleSchedFlag("sh-port".into()))
        );
        assert_eq!(
            sched_flags("sh-port,bogus", Scheduler::SourceHashing),
            Err(UsageError::InvalidSchedFlag("bogus".into()))
        );
    }

    #[test]
    fn scheduler_names() {
        assert_eq!(scheduler("mh"), Ok(Scheduler::MaglevHashing));
        assert_eq!(
            scheduler("lblcr"),
            Err(UsageError::UnsupportedScheduler("lblcr".into()))
        );
        assert_eq!(scheduler("fastest"), Err(UsageError::UnknownScheduler));
    }
}
