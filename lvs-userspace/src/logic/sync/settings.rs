//! The sync daemons as the operator sets them up: `ipvsadm --start-daemon master|backup` with
//! its `--mcast-*`, `--syncid` and `--sync-maxlen` options, the `[sync]` section of the
//! config file, and keepalived's `lvs_sync_daemon`. Every front end builds these values, so
//! the daemon sees one shape whichever way a sync daemon was asked for.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::values::{MulticastGroup, MulticastTtl, Port, SyncId, SyncMaxLen};

/// IPVS's sync port.
pub const DEFAULT_PORT: u16 = 8848;

/// Which of the two sync daemons: the master sends this director's connections, the backup
/// receives a master's. Both may run at once, each director the master for the connections
/// it forwards and a backup for its peer's, so that a failback keeps connections too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    /// Both roles, in the order ipvsadm lists them.
    pub const ALL: [SyncRole; 2] = [SyncRole::Master, SyncRole::Backup];

    /// The word ipvsadm uses (`--start-daemon master`).
    pub const fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

impl fmt::Display for SyncRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One sync daemon's parameters, as `ipvsadm --start-daemon` takes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemon {
    pub role: SyncRole,
    /// `--mcast-interface`: where the messages are sent or received.
    pub interface: String,
    /// `--syncid`: directors exchange connections only within one id.
    pub sync_id: SyncId,
    /// `--mcast-group`.
    pub group: MulticastGroup,
    /// `--mcast-port`.
    pub port: Port,
    /// `--mcast-ttl`; a backup ignores it, as IPVS does.
    pub ttl: MulticastTtl,
    /// `--sync-maxlen`: the largest message, in bytes of UDP payload.
    pub max_len: SyncMaxLen,
}

impl SyncDaemon {
    /// A daemon on `interface` with ipvsadm's defaults: sync id 0, group 224.0.0.81, port
    /// 8848, TTL 1, messages of at most 1472 bytes.
    pub fn with_defaults(role: SyncRole, interface: impl Into<String>) -> Self {
        SyncDaemon {
            role,
            interface: interface.into(),
            sync_id: SyncId::new(0).expect("0 is a sync id"),
            group: MulticastGroup::DEFAULT,
            port: Port::new(DEFAULT_PORT.into()).expect("8848 is a port"),
            ttl: MulticastTtl::DEFAULT,
            max_len: SyncMaxLen::DEFAULT,
        }
    }
}

/// The `[sync]` section of the config file: the sync daemons to run, and what every daemon
/// of this director shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// At most one per role.
    pub daemons: Vec<SyncDaemon>,
    /// The file holding the key shared by the directors (at least 16 bytes), read by the
    /// daemon when it starts a sync daemon and at each reload. The key itself never appears
    /// in the config, the status or the logs.
    pub key_file: PathBuf,
    /// The most messages a master sends per second, so that a burst of new connections (or
    /// a whole table sent to a backup that has just appeared) cannot take the segment's
    /// bandwidth: at the default 1472-byte messages, the default is about 5.9 MB/s.
    pub max_rate: u32,
}

impl SyncConfig {
    pub const DEFAULT_MAX_RATE: u32 = 4000;
}
