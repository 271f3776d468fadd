//! Announcing the VIPs to the routers (`[bgp]`): the routes `logic::announce` wants, kept in
//! the kernel's table through `DirectorNetlink` for the BGP daemon to read.
//!
//! The routes outlive the daemon on purpose: a stop for a restart (or a crash) leaves them,
//! since the data plane keeps forwarding, and the next daemon finds them in the table and
//! takes them for its own. A stop for good withdraws them before the program is detached,
//! so that the routers stop sending before the director stops forwarding. A route that
//! cannot be written is logged and tried again at the next event; it never stops the daemon.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use tracing::{info, warn};

use super::Director;
use crate::{
    health::Quorums,
    io::netlink::DirectorNetlink,
    logic::{
        announce::{self, BgpConfig, Changes},
        status::{BgpStatus, VipAnnouncement},
    },
};

impl<D, N: DirectorNetlink> Director<D, N> {
    /// Takes the routes found in the `[bgp]` table for this director's (a previous
    /// director's, or its own from before a restart), and withdraws lvs routes in any other
    /// table: left by an earlier config with another table or none, BIRD would announce them
    /// for ever.
    pub(super) async fn find_announced(&mut self) -> Result<()> {
        let found = self
            .netlink
            .announced()
            .await
            .context("reading the announced VIPs")?;
        let table = self.bgp_config.map(|bgp| bgp.route_table.get());
        let (ours, stale): (Vec<_>, Vec<_>) =
            found.into_iter().partition(|&(t, _)| Some(t) == table);
        for (stale_table, vip) in stale {
            match self.netlink.withdraw(stale_table, vip).await {
                Ok(()) => {
                    info!(%vip, table = stale_table, "a VIP announced in a table no longer lvs's withdrawn")
                }
                Err(error) => {
                    warn!(%vip, table = stale_table, error = %error, "withdrawing a stale announcement failed")
                }
            }
        }
        self.announced = ours.into_iter().map(|(_, vip)| vip).collect();
        if let (Some(table), false) = (table, self.announced.is_empty()) {
            info!(table, vips = ?self.announced, "announced VIPs found: kept for now");
        }
        Ok(())
    }

    /// Brings the announced routes in line with what is wanted now: the VIPs of the services
    /// that have their quorum in `quorums` (a service that health checking leaves out has
    /// it), while the data plane forwards. With a sync backup running, a VIP is announced
    /// only once it has been wanted for `SYNC_SETTLE_NS`, so that the peers' connections are
    /// here before the routers send any of them.
    pub(super) async fn announce_vips(&mut self, quorums: &Quorums) {
        let Some(bgp) = self.bgp_config else {
            return;
        };
        let forwards = self.mode != "detached";
        let wanted = announce::wanted(
            forwards,
            self.model.wanted_services().map(|service| {
                let quorum = quorums.get(&service.key()).copied().unwrap_or(true);
                (service.address, quorum)
            }),
        );
        let settle_ns = if self.sync.has_backup() {
            announce::SYNC_SETTLE_NS
        } else {
            0
        };
        let was_waiting = self.settling.is_waiting();
        let ready = self.settling.ready(
            &wanted,
            &self.announced,
            crate::logic::conntrack::monotonic_ns(),
            settle_ns,
        );
        if self.settling.is_waiting() && !was_waiting {
            info!(
                settle_s = settle_ns / 1_000_000_000,
                "a VIP waits for the sync peers' connections before it is announced"
            );
        }
        let changes = Changes::between(&self.announced, &ready);
        self.apply_announcements(bgp, changes).await;
    }

    /// Withdraws every announced VIP (at a stop for good, or when the table changes).
    pub(super) async fn withdraw_all(&mut self) {
        let Some(bgp) = self.bgp_config else {
            return;
        };
        let changes = Changes::between(&self.announced, &BTreeSet::new());
        self.apply_announcements(bgp, changes).await;
    }

    /// Takes a reloaded `[bgp]` section: a VIP announced in a table that is no longer the
    /// one (or with no section any more) is withdrawn from it, and the new table's routes are
    /// read, to be brought in line at the end of the event. A table that cannot be read is
    /// taken as empty: its routes are then written again, which is harmless.
    pub(super) async fn reconfigure_bgp(&mut self, new: Option<BgpConfig>) {
        let table = |bgp: Option<BgpConfig>| bgp.map(|b| b.route_table);
        if table(self.bgp_config) != table(new) {
            self.withdraw_all().await;
            self.bgp_config = new;
            if let Err(error) = self.find_announced().await {
                warn!(error = %format!("{error:#}"), "taking the new table as empty");
                self.announced.clear();
            }
        } else {
            self.bgp_config = new;
        }
    }

    async fn apply_announcements(&mut self, bgp: BgpConfig, changes: Changes) {
        let table = bgp.route_table.get();
        for vip in changes.announce {
            match self.netlink.announce(table, vip).await {
                Ok(()) => {
                    info!(%vip, table, "VIP announced");
                    self.announced.insert(vip);
                }
                Err(error) => warn!(%vip, table, error = %error, "announcing the VIP failed"),
            }
        }
        for vip in changes.withdraw {
            match self.netlink.withdraw(table, vip).await {
                Ok(()) => {
                    info!(%vip, table, "VIP withdrawn");
                    self.announced.remove(&vip);
                }
                Err(error) => warn!(%vip, table, error = %error, "withdrawing the VIP failed"),
            }
        }
    }

    /// What the status shows of the announcements: every VIP, and whether it is announced.
    pub(super) fn bgp_status(&self) -> Option<BgpStatus> {
        let bgp = self.bgp_config?;
        let mut vips: BTreeSet<_> = self.model.virtual_addresses().into_iter().collect();
        // A VIP still announced whose services went (a withdrawal that failed) shows too.
        vips.extend(self.announced.iter().copied());
        Some(BgpStatus {
            route_table: bgp.route_table.get(),
            hold_time: bgp.hold_time.get(),
            vips: vips
                .into_iter()
                .map(|vip| VipAnnouncement {
                    address: vip.to_string(),
                    announced: self.announced.contains(&vip),
                    settling: self.settling.waits(vip),
                })
                .collect(),
        })
    }
}
