//! Provisioning this host (or network namespace) as an LVS direct-routing real server.
//!
//! In LVS-DR the director forwards frames still addressed to the VIP, so every real server
//! must own the VIP, on `lo` as a host address (/32 or /128), yet never answer ARP for it, or
//! clients would send straight to it and bypass the director. For IPv4 that takes
//! `arp_ignore=1` (answer only for addresses on the interface asked) and `arp_announce=2`
//! (never use the VIP as the sender of our own ARP requests) on `all` and on the interfaces
//! facing the director. `arp_notify=1` on the same makes the kernel announce the real
//! server's own address by gratuitous ARP when its MAC changes, which is how the director
//! follows the change at once. IPv6 needs no such settings (a host answers neighbour
//! solicitations only for addresses on the interface asked), but `ndisc_notify=1` is the
//! equivalent of `arp_notify` and is set for IPv6 VIPs.
//!
//! `rp_filter` is left alone, deliberately: DR traffic arrives from the client's address on
//! the facing interface, which strict mode (1) accepts as long as the route back to the
//! client leaves through that interface (every single-homed real server), and loose mode (2)
//! or off (0) always accept. `status` reports the mode in effect, with that caveat for strict.
//!
//! `up` records every change before making it; `down` undoes exactly what `up` did: it
//! removes only VIPs it added, and puts a setting back only while it still holds the value
//! `up` wrote. Both are safe to repeat. The semantics match `scripts/realserver.sh`.

use std::{collections::BTreeMap, fmt, io::Write, net::IpAddr, path::PathBuf};

use super::{
    state::{State, StateError, StateFile, network_namespace_id},
    sysctl::{
        ApplyStep, RestoreStep, Setting, SysctlError, SysctlKey, Sysctls, Want, plan_apply,
        plan_restore, record_change,
    },
};
use crate::netlink::{InterfaceAddress, InterfaceSummary, Netlink, NetlinkError};

/// Where `up` records what it changed (the same place `scripts/realserver.sh` uses).
pub const DEFAULT_STATE_DIR: &str = "/run/lvs-realserver";

/// Errors of real-server provisioning.
#[derive(Debug, thiserror::Error)]
pub enum RealServerError {
    /// The request itself is wrong (a VIP or interface that cannot be used); nothing changed.
    #[error("{0}")]
    Usage(String),
    #[error(
        "this network namespace was provisioned by scripts/realserver.sh (state in {path}); \
         undo it with that script first, so that one tool restores what one tool changed"
    )]
    ProvisionedByScript { path: PathBuf },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    State(#[from] StateError),
}

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

/// The prefix length of a host address of this family.
pub fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
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

/// What `status` looked at: the namespace's interfaces and addresses, and the settings.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub interfaces: Vec<InterfaceSummary>,
    pub addresses: Vec<InterfaceAddress>,
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
fn rp_filter(interface: &str) -> SysctlKey {
    SysctlKey::ipv4_conf(interface, "rp_filter")
}

/// The real-server provisioning of this network namespace.
pub struct RealServer {
    netlink: Netlink,
    sysctls: Sysctls,
    state_dir: PathBuf,
}

/// The interfaces `up` and `status` work on, per family.
struct Facing {
    interfaces: Vec<InterfaceSummary>,
    loopback: u32,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

impl RealServer {
    pub fn new(netlink: Netlink, sysctls: Sysctls, state_dir: PathBuf) -> Self {
        Self {
            netlink,
            sysctls,
            state_dir,
        }
    }

    /// Provisions the VIPs: settings first, so a VIP is never on `lo` while the host might
    /// still answer ARP for it, then the addresses. Prints what it does to `out`.
    pub async fn up(
        &self,
        vips: &[IpAddr],
        dev: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<(), RealServerError> {
        check_vips(vips, true)?;
        let facing = self.facing(dev).await?;
        let settings = wanted_settings(vips, &facing.ipv4, &facing.ipv6);
        let file = self.state_file()?;
        let mut state = file.load()?;

        let current = self.sysctls.read_all(settings.iter().map(|s| &s.key))?;
        let plan = plan_apply(&settings, &current)?;
        // Record every change before making any: a stale record is harmless, an unrecorded
        // change could never be undone.
        for step in &plan {
            if let ApplyStep::Change { key, from, to } = step {
                record_change(&mut state.sysctls, key, from, to);
            }
        }
        file.save(&state)?;
        for step in &plan {
            match step {
                ApplyStep::Keep { key, value } => say(out, format!("{key} is already {value}")),
                ApplyStep::Change { key, from, to } => {
                    self.sysctls.write(key, to)?;
                    say(out, format!("set {key}={to} (was {from})"));
                }
            }
        }

        let addresses = self.netlink.addresses().await?;
        for &vip in vips {
            let prefix = host_prefix(vip);
            for elsewhere in addresses
                .iter()
                .filter(|a| a.address == vip && a.if_index != facing.loopback)
            {
                let name = facing
                    .interfaces
                    .iter()
                    .find(|i| i.index == elsewhere.if_index)
                    .map_or("another interface", |i| i.name.as_str());
                say(
                    out,
                    format!(
                        "warning: {vip}/{} is also on {name}: the host answers ARP/NDP for it \
                         there, which DR forbids; remove it from {name}",
                        elsewhere.prefix
                    ),
                );
            }
            let on_lo = addresses
                .iter()
                .any(|a| a.address == vip && a.prefix == prefix && a.if_index == facing.loopback);
            if on_lo {
                say(out, format!("{vip}/{prefix} is already on lo"));
                continue;
            }
            state.added_addresses.insert(vip);
            file.save(&state)?;
            self.netlink.add_ip(facing.loopback, vip, prefix).await?;
            say(out, format!("added {vip}/{prefix} to lo"));
        }
        Ok(())
    }

    /// Undoes `up` for these VIPs (all VIPs `up` added when none are given). The settings are
    /// put back only once no VIP added by `up` remains, since they protect every one of them.
    pub async fn down(&self, vips: &[IpAddr], out: &mut dyn Write) -> Result<(), RealServerError> {
        check_vips(vips, false)?;
        let file = self.state_file()?;
        let mut state = file.load()?;
        if state.is_empty() {
            say(out, "nothing to undo in this network namespace");
            return Ok(());
        }
        let loopback = self.loopback_index().await?;
        let targets: Vec<IpAddr> = if vips.is_empty() {
            state.added_addresses.iter().copied().collect()
        } else {
            vips.to_vec()
        };
        for vip in targets {
            let prefix = host_prefix(vip);
            if !state.added_addresses.contains(&vip) {
                say(out, format!("{vip} was not added by up; leaving it alone"));
                continue;
            }
            if self.netlink.remove_ip(loopback, vip, prefix).await? {
                say(out, format!("removed {vip}/{prefix} from lo"));
            } else {
                say(out, format!("{vip}/{prefix} is already gone from lo"));
            }
            state.added_addresses.remove(&vip);
            file.save(&state)?;
        }
        if !state.added_addresses.is_empty() {
            let left: Vec<String> = state
                .added_addresses
                .iter()
                .map(ToString::to_string)
                .collect();
            say(
                out,
                format!(
                    "keeping the ARP settings: VIPs added by up remain: {}",
                    left.join(" ")
                ),
            );
            return Ok(());
        }
        let mut current = BTreeMap::new();
        for record in &state.sysctls {
            current.insert(record.key.clone(), self.sysctls.read(&record.key)?);
        }
        for step in plan_restore(&state.sysctls, &current) {
            match step {
                RestoreStep::Restore { key, to, .. } => {
                    self.sysctls.write(&key, &to)?;
                    say(out, format!("restored {key}={to}"));
                }
                RestoreStep::AlreadyOriginal { key, value } => {
                    say(out, format!("{key} is already back at {value}"));
                }
                RestoreStep::ChangedSince { key, now, set, .. } => say(
                    out,
                    format!("{key} was changed to {now} after up set {set}; leaving it"),
                ),
                RestoreStep::Gone { key } => {
                    say(out, format!("{key} no longer exists; nothing to restore"));
                }
            }
        }
        state.sysctls.clear();
        file.save(&state)?;
        say(out, format!("removed state {}", file.path().display()));
        Ok(())
    }

    /// Shows what is provisioned and what is wrong; returns whether everything is right.
    /// Without VIPs, it checks the ones `up` added.
    pub async fn status(
        &self,
        vips: &[IpAddr],
        dev: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<bool, RealServerError> {
        check_vips(vips, false)?;
        // Looking is harmless whoever provisioned the namespace, so the script's state is no
        // reason to refuse; it only means there is no record of ours to show.
        let state = match self.state_file() {
            Ok(file) => file.load()?,
            Err(RealServerError::ProvisionedByScript { path }) => {
                say(
                    out,
                    format!(
                        "provisioned by scripts/realserver.sh (state in {})",
                        path.display()
                    ),
                );
                State::new()
            }
            Err(error) => return Err(error),
        };
        let vips: Vec<IpAddr> = if vips.is_empty() {
            state.added_addresses.iter().copied().collect()
        } else {
            vips.to_vec()
        };
        if vips.is_empty() {
            return Err(RealServerError::Usage(
                "no VIP given, and none was added by `lvs realserver up` here".into(),
            ));
        }
        let facing = self.facing(dev).await?;
        let settings = wanted_settings(&vips, &facing.ipv4, &facing.ipv6);
        let mut observed = Observed {
            interfaces: self.netlink.interfaces().await?,
            addresses: self.netlink.addresses().await?,
            sysctls: BTreeMap::new(),
        };
        let rp_filters = std::iter::once("all")
            .chain(facing.ipv4.iter().map(String::as_str))
            .map(rp_filter);
        for key in settings.iter().map(|s| s.key.clone()).chain(rp_filters) {
            let value = self.sysctls.read(&key)?;
            observed.sysctls.insert(key, value);
        }
        let lines = assess(&vips, &settings, &facing.ipv4, &observed);
        for line in &lines {
            say(out, line);
        }
        say(out, describe_state(&state));
        Ok(lines.iter().all(|l| l.verdict != Verdict::Wrong))
    }

    /// Opens this namespace's state, refusing one that the shell script manages.
    fn state_file(&self) -> Result<StateFile, RealServerError> {
        let name = format!("netns-{}", network_namespace_id()?);
        let script_state = self.state_dir.join(&name);
        if script_state.is_dir() {
            return Err(RealServerError::ProvisionedByScript { path: script_state });
        }
        Ok(StateFile::lock(&self.state_dir, &name)?)
    }

    async fn loopback_index(&self) -> Result<u32, RealServerError> {
        self.netlink
            .interfaces()
            .await?
            .iter()
            .find(|i| i.loopback)
            .map(|i| i.index)
            .ok_or_else(|| {
                RealServerError::Usage("this namespace has no loopback interface".into())
            })
    }

    /// The interfaces facing the director: `dev`, or every non-loopback interface with IPv4
    /// settings (as the script does), and of those the ones with IPv6 settings.
    async fn facing(&self, dev: Option<&str>) -> Result<Facing, RealServerError> {
        let interfaces = self.netlink.interfaces().await?;
        let loopback = interfaces
            .iter()
            .find(|i| i.loopback)
            .map(|i| i.index)
            .ok_or_else(|| {
                RealServerError::Usage("this namespace has no loopback interface".into())
            })?;
        let ipv4: Vec<String> = match dev {
            Some(dev) => {
                let known = interfaces.iter().find(|i| i.name == dev);
                match known {
                    Some(i) if i.loopback => {
                        return Err(RealServerError::Usage(format!(
                            "--dev {dev}: the VIPs go on the loopback interface; --dev names the \
                             interface facing the director"
                        )));
                    }
                    Some(_) if self.sysctls.has_ipv4_conf(dev) => vec![dev.to_owned()],
                    _ => {
                        return Err(RealServerError::Usage(format!(
                            "no such interface '{dev}' in this network namespace"
                        )));
                    }
                }
            }
            None => interfaces
                .iter()
                .filter(|i| !i.loopback && self.sysctls.has_ipv4_conf(&i.name))
                .map(|i| i.name.clone())
                .collect(),
        };
        let ipv6 = ipv4
            .iter()
            .filter(|name| self.sysctls.has_ipv6_conf(name))
            .cloned()
            .collect();
        Ok(Facing {
            interfaces,
            loopback,
            ipv4,
            ipv6,
        })
    }
}

fn check_vips(vips: &[IpAddr], required: bool) -> Result<(), RealServerError> {
    if required && vips.is_empty() {
        return Err(RealServerError::Usage(
            "at least one VIP is required".into(),
        ));
    }
    for &vip in vips {
        validate_vip(vip).map_err(RealServerError::Usage)?;
    }
    Ok(())
}

/// A summary of what `up` recorded, for `status`.
fn describe_state(state: &State) -> String {
    if state.is_empty() {
        return "state: nothing recorded by `lvs realserver up` in this namespace".into();
    }
    let vips: Vec<String> = state
        .added_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "state: up added VIPs [{}] and changed {} settings, which down restores",
        vips.join(" "),
        state.sysctls.len()
    )
}

/// Prints one line of progress. A failed write (a closed pipe) must not stop provisioning
/// half-way, so it is ignored.
fn say(out: &mut dyn Write, line: impl fmt::Display) {
    let _ = writeln!(out, "{line}");
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
    }
}
