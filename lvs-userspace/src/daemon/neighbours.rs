//! Real servers' MACs: asking the kernel to resolve them and following its neighbour table.

use std::{net::IpAddr, time::Duration};

use anyhow::Result;
use tracing::{info, warn};

use crate::{
    io::netlink::{self, DirectorNetlink, LinkInfo},
    logic::model::{Model, Neighbour},
};

/// Asks the kernel to resolve every real server, then waits up to a second for answers, so
/// the first sync already forwards to the servers that answer ARP promptly.
pub(super) async fn resolve_initially(
    netlink: &impl DirectorNetlink,
    link: &LinkInfo,
    model: &mut Model,
) -> Result<()> {
    request_resolutions(netlink, link, model, true).await;
    for _ in 0..10 {
        refresh(netlink, link, model).await?;
        let all_known = model.real_server_addresses().iter().all(|&a| {
            matches!(
                model.neighbour(a),
                Neighbour::Resolved { .. } | Neighbour::OffLink
            )
        });
        if all_known {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Requests resolution of unresolved on-link real servers, and of resolved ones too when
/// `all`. Off-link servers are never asked for: ARP cannot reach them; nor are servers with a
/// static (PERMANENT or NOARP) entry, which lvs uses as it is and never changes.
pub(super) async fn request_resolutions(
    netlink: &impl DirectorNetlink,
    link: &LinkInfo,
    model: &Model,
    all: bool,
) {
    // The table is read first: a static entry must be seen before anything is asked for.
    let entries = match netlink.neighbours(link.index).await {
        Ok(entries) => entries,
        Err(error) => {
            warn!(%error, "reading the neighbour table failed; no resolution requested");
            return;
        }
    };
    for address in model.real_server_addresses() {
        let wanted = match model.neighbour(address) {
            Neighbour::Resolved { .. } => all,
            _ => true,
        };
        let entry = entries.iter().find(|e| e.address == address);
        if wanted && link.on_link(address) && netlink::may_refresh(entry) {
            if let Err(error) = netlink.resolve(link.index, address).await {
                warn!(%address, %error, "requesting neighbour resolution failed");
            }
        }
    }
}

/// Reads the neighbour table and updates the model; returns whether anything changed.
pub(super) async fn refresh(
    netlink: &impl DirectorNetlink,
    link: &LinkInfo,
    model: &mut Model,
) -> Result<bool> {
    let entries = netlink.neighbours(link.index).await?;
    let mut changed = false;
    for address in model.real_server_addresses() {
        let entry = entries.iter().find(|e| e.address == address);
        let on_link = link.on_link(address);
        let next = netlink::next_neighbour(model.neighbour(address), entry, on_link);
        if model.set_neighbour(address, next.clone()) {
            log_change(address, &next);
            changed = true;
        }
    }
    Ok(changed)
}

fn log_change(address: IpAddr, next: &Neighbour) {
    match next {
        Neighbour::Resolved { mac } => info!(real_server = %address, %mac, "real server resolved"),
        Neighbour::Unresolved { reason } => {
            warn!(real_server = %address, reason, "real server unresolved: not forwarding to it")
        }
        Neighbour::OffLink => warn!(
            real_server = %address,
            "real server is not on the director interface's subnets: not forwarding to it"
        ),
        Neighbour::Unknown => {}
    }
}
