//! The sync daemon's part of the command line: the role of `--start-daemon` and
//! `--stop-daemon`, and the options `--mcast-interface`, `--syncid`, `--mcast-group`,
//! `--mcast-port`, `--mcast-ttl` and `--sync-maxlen`, each through its `base::values` rule,
//! with ipvsadm's messages.

use crate::base::values::GroupError;

use super::super::{UsageError, args::Args, values};
use crate::base::values::{MulticastGroup, MulticastTtl, Port, SyncId, SyncMaxLen};
use crate::logic::config::is_interface_name;
use crate::logic::sync::{SyncDaemon, SyncRole};

/// The sync daemon's options (`--mcast-interface`, `--syncid`, `--mcast-*`, `--sync-maxlen`).
#[derive(Default)]
pub(super) struct SyncOptions {
    interface: Option<String>,
    sync_id: Option<SyncId>,
    group: Option<MulticastGroup>,
    port: Option<Port>,
    ttl: Option<MulticastTtl>,
    max_len: Option<SyncMaxLen>,
}

/// The role of `--start-daemon` or `--stop-daemon`, with ipvsadm's messages.
pub(super) fn role(args: &Args) -> Result<Option<SyncRole>, UsageError> {
    let of = |text: &str| match text {
        "master" => Some(SyncRole::Master),
        "backup" => Some(SyncRole::Backup),
        _ => None,
    };
    if let Some(text) = args.start_daemon.first() {
        return of(text).map(Some).ok_or(UsageError::IllegalStartDaemon);
    }
    if let Some(text) = args.stop_daemon.first() {
        return of(text).map(Some).ok_or(UsageError::IllegalStopDaemon);
    }
    Ok(None)
}

/// The first value of a number option through its rule; `error` when it is not a number or
/// the rule refuses it.
fn number<T, E>(
    list: &[String],
    rule: impl Fn(i64) -> Result<T, E>,
    error: UsageError,
) -> Result<Option<T>, UsageError> {
    list.first()
        .map(|text| {
            values::integer(text)
                .and_then(|n| rule(n).ok())
                .ok_or(error)
        })
        .transpose()
}

impl SyncOptions {
    /// Each value through its `base::values` rule; the messages are ipvsadm's.
    pub(super) fn parse(args: &Args) -> Result<SyncOptions, UsageError> {
        let interface = args
            .mcast_interface
            .first()
            .map(|name| {
                if is_interface_name(name) {
                    Ok(name.clone())
                } else {
                    Err(UsageError::IllegalMcastInterface(name.clone()))
                }
            })
            .transpose()?;
        let group = args
            .mcast_group
            .first()
            .map(|text| match MulticastGroup::parse(text) {
                Ok(group) => Ok(group),
                Err(error @ GroupError::Ipv6(_)) => {
                    Err(UsageError::Ipv6McastGroup(error.to_string()))
                }
                Err(_) => Err(UsageError::InvalidMcastGroup(text.clone())),
            })
            .transpose()?;
        Ok(SyncOptions {
            interface,
            sync_id: number(&args.syncid, SyncId::new, UsageError::IllegalSyncId)?,
            group,
            port: number(&args.mcast_port, Port::new, UsageError::IllegalMcastPort)?,
            ttl: number(
                &args.mcast_ttl,
                MulticastTtl::new,
                UsageError::IllegalMcastTtl,
            )?,
            max_len: number(
                &args.sync_maxlen,
                SyncMaxLen::new,
                UsageError::IllegalSyncMaxLen,
            )?,
        })
    }

    /// The daemon `--start-daemon` asks for: ipvsadm's defaults for what is not given,
    /// `eth0` for the interface as in ipvsadm.
    pub(super) fn daemon(&self, role: SyncRole) -> SyncDaemon {
        let mut daemon = SyncDaemon::with_defaults(
            role,
            self.interface.as_deref().unwrap_or(DEFAULT_MCAST_INTERFACE),
        );
        daemon.sync_id = self.sync_id.unwrap_or(daemon.sync_id);
        daemon.group = self.group.unwrap_or(daemon.group);
        daemon.port = self.port.unwrap_or(daemon.port);
        daemon.ttl = self.ttl.unwrap_or(daemon.ttl);
        daemon.max_len = self.max_len.unwrap_or(daemon.max_len);
        daemon
    }
}

/// ipvsadm's interface when `--start-daemon` has no `--mcast-interface`.
pub const DEFAULT_MCAST_INTERFACE: &str = "eth0";
