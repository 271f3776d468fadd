//! Attaching the program in the configured XDP mode.

use anyhow::{Context as _, Result};
use tracing::warn;

use crate::logic::{
    config::XdpMode,
    dataplane::{AttachMode, DataPlane},
};

/// Attaches in the configured mode; in `auto`, native first and generic as a fallback.
/// Returns the mode's name, as the status shows it.
pub(super) fn attach(
    dataplane: &mut impl DataPlane,
    if_index: u32,
    mode: XdpMode,
) -> Result<&'static str> {
    let attach = |dataplane: &mut dyn DataPlane, mode: AttachMode| {
        dataplane
            .attach(if_index, mode)
            .with_context(|| format!("attaching in {} mode", mode.name()))
            .map(|()| mode.name())
    };
    match mode {
        XdpMode::Native => attach(dataplane, AttachMode::Native),
        XdpMode::Generic => attach(dataplane, AttachMode::Generic),
        XdpMode::Auto => match dataplane.attach(if_index, AttachMode::Native) {
            Ok(()) => Ok(AttachMode::Native.name()),
            Err(error) => {
                warn!(%error, "native XDP is not available here; falling back to generic mode");
                attach(dataplane, AttachMode::Generic)
            }
        },
    }
}
