//! The program's per-packet log (only produced with `trace_packets`), forwarded to tracing.

use anyhow::{Context as _, Result};

use crate::io::bpf::BpfDataPlane;

/// Forwards the program's aya-log records to tracing, from a task of its own.
pub(super) fn start(dataplane: &mut BpfDataPlane) -> Result<()> {
    let logger = aya_log::EbpfLogger::init(dataplane.ebpf_mut())
        .context("starting the data plane's packet log")?;
    // SAFETY: the logger owns its ring-buffer descriptor for its whole life and always
    // reports the same one, and the AsyncFd owns the logger.
    let mut logger = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    }
    .map_err(|error| error.into_parts().1)
    .context("watching the packet log")?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}
