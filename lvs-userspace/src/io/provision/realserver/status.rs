//! How `lvs realserver status` judges what it sees: the VIPs on `lo` and nowhere else, every
//! wanted setting, and the reverse-path filter in effect. Pure.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use super::settings::host_prefix;
use crate::io::{
    netlink::{InterfaceAddress, InterfaceSummary},
    provision::sysctl::{Setting, SysctlKey},
};

/// How a line of `status` judges what it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Wrong,
    Note,
}

/// One line of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub verdict: Verdict,
    pub text: String,
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.verdict {
            Verdict::Ok => "OK",
            Verdict::Wrong => "WRONG",
            Verdict::Note => "note",
        };
        write!(f, "{label:<6} {}", self.text)
    }
}

/// What `status` looked at: the namespace's interfaces and addresses, its proxy neighbour
/// entries, and the settings.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub interfaces: Vec<InterfaceSummary>,
    pub addresses: Vec<InterfaceAddress>,
    /// The addresses this host answers neighbour solicitations for on behalf of others
    /// (`ip -6 neigh show proxy`), as (interface index, address).
    pub proxied: Vec<(u32, IpAddr)>,
    pub sysctls: BTreeMap<SysctlKey, Option<String>>,
}

impl Observed {
    fn interface_name(&self, index: u32) -> String {
        self.interfaces
            .iter()
            .find(|i| i.index == index)
            .map_or_else(|| format!("interface #{index}"), |i| i.name.clone())
    }

    fn is_loopback(&self, index: u32) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.index == index && i.loopback)
    }

    fn number(&self, key: &SysctlKey) -> Option<u32> {
        self.sysctls.get(key)?.as_deref()?.trim().parse().ok()
    }
}

/// Judges a real server's provisioning: the VIPs on `lo` and nowhere else, every wanted
/// setting, and (as a note) the reverse-path filter in effect on each IPv4 interface.
pub fn assess(
    vips: &[IpAddr],
    settings: &[Setting],
    ipv4_interfaces: &[String],
    observed: &Observed,
) -> Vec<StatusLine> {
    let line = |verdict, text: String| StatusLine { verdict, text };
    let mut lines = Vec::new();
    for &vip in vips {
        let prefix = host_prefix(vip);
        let on_lo = observed
            .addresses
            .iter()
            .any(|a| a.address == vip && a.prefix == prefix && observed.is_loopback(a.if_index));
        lines.push(if on_lo {
            line(Verdict::Ok, format!("{vip}/{prefix} on lo"))
        } else {
            line(
                Verdict::Wrong,
                format!("{vip}/{prefix} is not on lo (run `lvs realserver up {vip}`)"),
            )
        });
        for elsewhere in observed
            .addresses
            .iter()
            .filter(|a| a.address == vip && !observed.is_loopback(a.if_index))
        {
            let name = observed.interface_name(elsewhere.if_index);
            lines.push(line(
                Verdict::Wrong,
                format!(
                    "{vip}/{} is on {name}: the host answers ARP/NDP for it there and takes \
                     clients' traffic from the director (remove it: `ip addr del {vip}/{} dev {name}`)",
                    elsewhere.prefix, elsewhere.prefix
                ),
            ));
        }
        // Proxy NDP is the one way Linux advertises an address of no interface it arrives
        // on: with proxy_ndp and forwarding on, a proxy entry for the VIP on the facing
        // interface makes the host answer for it there, as a VIP on that interface would.
        for &(if_index, _) in observed
            .proxied
            .iter()
            .filter(|&&(if_index, address)| address == vip && !observed.is_loopback(if_index))
        {
            let name = observed.interface_name(if_index);
            lines.push(line(
                Verdict::Wrong,
                format!(
                    "{vip} has a proxy neighbour entry on {name}: with proxy_ndp the host \
                     advertises it there and takes clients' traffic from the director (remove \
                     it: `ip -6 neigh del proxy {vip} dev {name}`)"
                ),
            ));
        }
    }
    for setting in settings {
        let value = observed.sysctls.get(&setting.key).cloned().flatten();
        let number = observed.number(&setting.key);
        lines.push(match (value, number) {
            (Some(value), Some(n)) if setting.want.accepts(n) => {
                line(Verdict::Ok, format!("{} = {value}", setting.key))
            }
            (Some(value), _) => line(
                Verdict::Wrong,
                format!("{} = {value} (want {})", setting.key, setting.want),
            ),
            (None, _) => line(
                Verdict::Wrong,
                format!("{} does not exist (want {})", setting.key, setting.want),
            ),
        });
    }
    if vips.iter().any(IpAddr::is_ipv4) {
        let all = observed.number(&rp_filter("all")).unwrap_or(0);
        for interface in ipv4_interfaces {
            // The kernel uses the higher of `all` and the interface's own value.
            let mode = all.max(observed.number(&rp_filter(interface)).unwrap_or(0));
            let meaning = match mode {
                0 => "off: fine for DR".to_owned(),
                1 => format!(
                    "strict: fine while replies to clients leave through {interface}; \
                     set 2 (loose) if they may leave by another interface"
                ),
                _ => "loose: fine for DR".to_owned(),
            };
            lines.push(line(
                Verdict::Note,
                format!("rp_filter in effect on {interface} = {mode} ({meaning})"),
            ));
        }
    }
    lines
}

/// The keys `status` reads for the reverse-path filter note.
pub fn rp_filter(interface: &str) -> SysctlKey {
    SysctlKey::ipv4_conf(interface, "rp_filter")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::provision::realserver::settings::wanted_settings;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn observed(addresses: &[(u32, &str, u8)], sysctls: &[(SysctlKey, &str)]) -> Observed {
        Observed {
            interfaces: vec![
                InterfaceSummary {
                    index: 1,
                    name: "lo".into(),
                    loopback: true,
                },
                InterfaceSummary {
                    index: 2,
                    name: "eth0".into(),
                    loopback: false,
                },
            ],
            addresses: addresses
                .iter()
                .map(|&(if_index, address, prefix)| InterfaceAddress {
                    if_index,
                    address: ip(address),
                    prefix,
                })
                .collect(),
            proxied: Vec::new(),
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.clone(), Some((*v).to_owned())))
                .collect(),
        }
    }

    fn verdicts(lines: &[StatusLine]) -> Vec<(Verdict, &str)> {
        lines
            .iter()
            .map(|l| (l.verdict, l.text.split(' ').next().unwrap_or("")))
            .collect()
    }

    #[test]
    fn status_finds_a_missing_vip_a_vip_on_the_wrong_interface_and_wrong_settings() {
        let vips = [ip("10.77.0.100")];
        let eth0 = names(&["eth0"]);
        let settings = wanted_settings(&vips, &eth0, &[]);
        let good: Vec<(SysctlKey, &str)> = settings
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    if s.key.path().ends_with("announce") {
                        "2"
                    } else {
                        "1"
                    },
                )
            })
            .chain([(rp_filter("all"), "0"), (rp_filter("eth0"), "1")])
            .collect();
        let fine = assess(
            &vips,
            &settings,
            &eth0,
            &observed(&[(1, "10.77.0.100", 32)], &good),
        );
        assert!(
            fine.iter().all(|l| l.verdict != Verdict::Wrong),
            "{fine:#?}"
        );
        assert_eq!(fine.last().unwrap().verdict, Verdict::Note);
        assert!(
            fine.last().unwrap().text.contains("= 1 (strict"),
            "{fine:#?}"
        );

        let mut bad_settings = good.clone();
        bad_settings[0].1 = "0";
        let broken = assess(
            &vips,
            &settings,
            &eth0,
            &observed(&[(2, "10.77.0.100", 32)], &bad_settings),
        );
        let wrong: Vec<_> = verdicts(&broken)
            .into_iter()
            .filter(|(v, _)| *v == Verdict::Wrong)
            .collect();
        assert_eq!(
            wrong,
            [
                (Verdict::Wrong, "10.77.0.100/32"),
                (Verdict::Wrong, "10.77.0.100/32"),
                (Verdict::Wrong, "net.ipv4.conf.all.arp_ignore"),
            ],
            "{broken:#?}"
        );
        assert!(broken[0].text.contains("not on lo"));
        assert!(broken[1].text.contains("is on eth0"));
        assert!(broken[2].text.ends_with("= 0 (want 1)"), "{}", broken[2]);
        assert_eq!(broken[2].to_string(), format!("WRONG  {}", broken[2].text));
    }

    #[test]
    fn status_of_an_ipv6_vip_needs_a_host_route_on_lo_and_no_arp_settings() {
        let vips = [ip("2001:db8::100")];
        let settings = wanted_settings(&vips, &names(&["eth0"]), &names(&["eth0"]));
        let sysctls: Vec<(SysctlKey, &str)> =
            settings.iter().map(|s| (s.key.clone(), "1")).collect();
        let lines = assess(
            &vips,
            &settings,
            &names(&["eth0"]),
            &observed(&[(1, "2001:db8::100", 128)], &sysctls),
        );
        assert!(lines.iter().all(|l| l.verdict == Verdict::Ok), "{lines:#?}");
        let wrong_prefix = assess(
            &vips,
            &settings,
            &names(&["eth0"]),
            &observed(&[(1, "2001:db8::100", 64)], &sysctls),
        );
        assert_eq!(wrong_prefix[0].verdict, Verdict::Wrong);

        let mut proxied = observed(&[(1, "2001:db8::100", 128)], &sysctls);
        proxied.proxied = vec![(2, ip("2001:db8::100")), (2, ip("2001:db8::7"))];
        let lines = assess(&vips, &settings, &names(&["eth0"]), &proxied);
        let wrong: Vec<&str> = lines
            .iter()
            .filter(|l| l.verdict == Verdict::Wrong)
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(wrong.len(), 1, "only the VIP's entry matters: {lines:#?}");
        assert!(
            wrong[0].contains("proxy neighbour entry on eth0")
                && wrong[0].contains("ip -6 neigh del proxy 2001:db8::100 dev eth0"),
            "{}",
            wrong[0]
        );
    }
}
