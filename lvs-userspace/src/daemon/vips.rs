//! The VIPs the director puts on its interface (with `manage_vips`), and takes off again:
//! only those it added, never ones it found there (unless it adopted the previous director's
//! running data plane, whose VIPs they are).

use std::net::IpAddr;

use anyhow::Result;
use tracing::{info, warn};

use super::Director;
use crate::io::netlink::DirectorNetlink;

impl<D, N: DirectorNetlink> Director<D, N> {
    /// Puts every service's VIP on the interface, unless another system owns them.
    pub(super) async fn add_vips(&mut self) -> Result<()> {
        if !self.settings.manage_vips {
            return Ok(());
        }
        for vip in self.model.virtual_addresses() {
            if self.added_vips.contains(&vip) {
                continue;
            }
            if self.netlink.add_vip(self.link.index, vip).await? {
                info!(%vip, interface = %self.interface, "VIP added");
                self.added_vips.push(vip);
            } else if self.adopted {
                // The previous director, whose data plane this one adopted, put it there.
                self.added_vips.push(vip);
            }
        }
        Ok(())
    }

    /// Takes off the VIPs this director added that no service uses any more.
    pub(super) async fn remove_unused_vips(&mut self) {
        let used = self.model.virtual_addresses();
        let (keep, unused): (Vec<IpAddr>, Vec<IpAddr>) = std::mem::take(&mut self.added_vips)
            .into_iter()
            .partition(|vip| used.contains(vip));
        self.added_vips = keep;
        for vip in unused {
            self.remove_vip(vip).await;
        }
    }

    /// Takes off every VIP this director added, at exit.
    pub(super) async fn remove_all_vips(&mut self) {
        for vip in std::mem::take(&mut self.added_vips) {
            self.remove_vip(vip).await;
        }
    }

    async fn remove_vip(&self, vip: IpAddr) {
        match self.netlink.remove_vip(self.link.index, vip).await {
            Ok(()) => info!(%vip, "VIP removed"),
            Err(error) => warn!(%vip, %error, "removing the VIP failed"),
        }
    }
}
