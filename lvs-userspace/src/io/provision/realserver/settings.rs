//! What a real server for given VIPs needs: which addresses can be VIPs, their host prefix,
//! and the settings on `all` and the facing interfaces. Pure.

use std::net::IpAddr;

pub use crate::io::netlink::host_prefix;
use crate::io::provision::sysctl::{Setting, SysctlKey, Want};

/// Checks that an address can be a VIP on `lo`.
pub fn validate_vip(vip: IpAddr) -> Result<(), String> {
    let problem = match vip {
        _ if vip.is_unspecified() => Some("the unspecified address"),
        _ if vip.is_loopback() => Some("a loopback address"),
        _ if vip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Some("an IPv4-mapped IPv6 address (give the IPv4 address)")
        }
        _ => None,
    };
    match problem {
        Some(what) => Err(format!("{vip} cannot be a VIP: it is {what}")),
        None => Ok(()),
    }
}

/// The settings a real server for these VIPs needs: the ARP settings (and `arp_notify`) on
/// `all` and each IPv4 interface when any VIP is IPv4, `ndisc_notify` on `all` and each IPv6
/// interface when any VIP is IPv6.
pub fn wanted_settings(
    vips: &[IpAddr],
    ipv4_interfaces: &[String],
    ipv6_interfaces: &[String],
) -> Vec<Setting> {
    let with_all = |interfaces: &[String]| {
        std::iter::once("all".to_owned())
            .chain(interfaces.iter().cloned())
            .collect::<Vec<_>>()
    };
    let mut settings = Vec::new();
    if vips.iter().any(IpAddr::is_ipv4) {
        for interface in with_all(ipv4_interfaces) {
            for (name, value) in [("arp_ignore", 1), ("arp_announce", 2), ("arp_notify", 1)] {
                settings.push(Setting::new(
                    SysctlKey::ipv4_conf(&interface, name),
                    Want::Exactly(value),
                ));
            }
        }
    }
    if vips.iter().any(IpAddr::is_ipv6) {
        for interface in with_all(ipv6_interfaces) {
            settings.push(Setting::new(
                SysctlKey::ipv6_conf(&interface, "ndisc_notify"),
                Want::Exactly(1),
            ));
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn vips_that_cannot_be_on_lo_are_refused() {
        for bad in [
            "0.0.0.0",
            "127.0.0.5",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(validate_vip(ip(bad)).is_err(), "{bad}");
        }
        for good in ["10.77.0.100", "192.0.2.10", "2001:db8::100"] {
            assert_eq!(validate_vip(ip(good)), Ok(()), "{good}");
        }
        assert!(
            "010.0.0.1".parse::<IpAddr>().is_err(),
            "octal-looking octets"
        );
    }

    #[test]
    fn settings_follow_the_families_of_the_vips() {
        let v4 = wanted_settings(&[ip("10.0.0.1")], &names(&["eth0"]), &names(&["eth0"]));
        let keys: Vec<String> = v4.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "net.ipv4.conf.all.arp_ignore",
                "net.ipv4.conf.all.arp_announce",
                "net.ipv4.conf.all.arp_notify",
                "net.ipv4.conf.eth0.arp_ignore",
                "net.ipv4.conf.eth0.arp_announce",
                "net.ipv4.conf.eth0.arp_notify",
            ]
        );
        assert_eq!(v4[1].want, Want::Exactly(2));
        let v6 = wanted_settings(&[ip("2001:db8::1")], &names(&["eth0"]), &names(&["eth0"]));
        let keys: Vec<String> = v6.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "net.ipv6.conf.all.ndisc_notify",
                "net.ipv6.conf.eth0.ndisc_notify"
            ]
        );
        let both = wanted_settings(
            &[ip("10.0.0.1"), ip("2001:db8::1")],
            &names(&[]),
            &names(&[]),
        );
        assert_eq!(both.len(), 4);
    }
}
