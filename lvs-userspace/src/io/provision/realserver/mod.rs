//! Provisioning this host (or network namespace) as an LVS direct-routing real server.
//!
//! In LVS-DR the director forwards frames still addressed to the VIP, so every real server
//! must own the VIP, on `lo` as a host address (/32 or /128), yet never answer ARP for it, or
//! clients would send straight to it and bypass the director. For IPv4 that takes
//! `arp_ignore=1` (answer only for addresses on the interface asked) and `arp_announce=2`
//! (never use the VIP as the sender of our own ARP requests) on `all` and on the interfaces
//! facing the director. `arp_notify=1` on the same makes the kernel announce the real
//! server's own address by gratuitous ARP when its MAC changes, which is how the director
//! follows the change at once.
//!
//! IPv6 needs no equivalent of `arp_ignore` or `arp_announce`. Linux answers a neighbour
//! solicitation only for an address on the interface it arrived on: `ndisc_recv_ns` looks
//! the target up with `ipv6_get_ifaddr(net, target, dev, 1)`, whose last argument (strict)
//! refuses an address of another interface, so a VIP on `lo` is never advertised on the
//! facing interface. (The one way around it is proxy NDP, `proxy_ndp` with forwarding and a
//! proxy entry, which is off by default; `status` reports a proxy entry for a VIP.) And a host's own solicitations name the address
//! that is asked for as the target, from an address of the interface they leave by, so the
//! VIP is not announced as `arp_announce=2` prevents for IPv4. `ndisc_notify=1` is the
//! counterpart of `arp_notify` (an unsolicited advertisement of the interface's own
//! addresses when its MAC changes); like `arp_notify` it is per interface, so it is set on
//! `all` and each facing interface. `tests/provision.rs` checks the first point on the wire:
//! a real server with the VIP on `lo` sends no advertisement for it.
//!
//! An IPv6 VIP goes on `lo` as a /128 with IFA_F_NODAD: every real server holds the same
//! address, and although the kernel runs no duplicate address detection on `lo`, the flag
//! says so explicitly and keeps the address usable the moment it is added.
//!
//! `rp_filter` is left alone, deliberately: DR traffic arrives from the client's address on
//! the facing interface, which strict mode (1) accepts as long as the route back to the
//! client leaves through that interface (every single-homed real server), and loose mode (2)
//! or off (0) always accept. `status` reports the mode in effect, with that caveat for strict.
//!
//! `up` records every change before making it; `down` undoes exactly what `up` did: it
//! removes only VIPs it added, and puts a setting back only while it still holds the value
//! `up` wrote. Both are safe to repeat. The semantics match `scripts/realserver.sh`.

mod settings;
mod status;

use std::{collections::BTreeMap, fmt, io::Write, net::IpAddr, path::PathBuf};

pub use settings::{host_prefix, validate_vip, wanted_settings};
pub use status::{Observed, StatusLine, Verdict, assess};

use super::{
    state::{State, StateError, StateFile, network_namespace_id},
    sysctl::{
        ApplyStep, RestoreStep, SysctlError, Sysctls, plan_apply, plan_restore, record_change,
    },
};
use crate::io::netlink::{InterfaceSummary, Netlink, NetlinkError};
use status::rp_filter;

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
            self.netlink.add_host_address(facing.loopback, vip).await?;
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
            // Proxy NDP concerns IPv6 VIPs only; a host without IPv6 is not asked.
            proxied: match vips.iter().any(IpAddr::is_ipv6) {
                true => self.netlink.proxied().await?,
                false => Vec::new(),
            },
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
        loopback_of(&self.netlink.interfaces().await?)
    }

    /// The interfaces facing the director: `dev`, or every non-loopback interface with IPv4
    /// settings (as the script does), and of those the ones with IPv6 settings.
    async fn facing(&self, dev: Option<&str>) -> Result<Facing, RealServerError> {
        let interfaces = self.netlink.interfaces().await?;
        let loopback = loopback_of(&interfaces)?;
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

/// The loopback interface's index, where the VIPs go.
fn loopback_of(interfaces: &[InterfaceSummary]) -> Result<u32, RealServerError> {
    interfaces
        .iter()
        .find(|i| i.loopback)
        .map(|i| i.index)
        .ok_or_else(|| RealServerError::Usage("this namespace has no loopback interface".into()))
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
