//! Attaching the program in the configured XDP mode.

use anyhow::{Context as _, Result};
use tracing::warn;

use crate::logic::{
    config::XdpMode,
    dataplane::{AttachMode, Attachment, DataPlane},
};

/// Attaches in the configured mode; in `auto`, native first and generic as a fallback. A
/// program a previous director left attached is replaced on its attachment, whose mode stays.
/// Returns the mode's name, as the status shows it ("adopted" for a kept attachment).
pub(super) fn attach(
    dataplane: &mut impl DataPlane,
    if_index: u32,
    mode: XdpMode,
) -> Result<&'static str> {
    let attach = |dataplane: &mut dyn DataPlane, mode: AttachMode| {
        dataplane
            .attach(if_index, mode)
            .with_context(|| format!("attaching in {} mode", mode.name()))
            .map(name)
    };
    match mode {
        XdpMode::Native => attach(dataplane, AttachMode::Native),
        XdpMode::Generic => attach(dataplane, AttachMode::Generic),
        XdpMode::Auto => match dataplane.attach(if_index, AttachMode::Native) {
            Ok(attachment) => Ok(name(attachment)),
            Err(error) => {
                warn!(%error, "native XDP is not available here; falling back to generic mode");
                attach(dataplane, AttachMode::Generic)
            }
        },
    }
}

/// The status's name for how the program was attached.
fn name(attachment: Attachment) -> &'static str {
    match attachment {
        Attachment::New(mode) => mode.name(),
        Attachment::Replaced => "adopted",
    }
}
