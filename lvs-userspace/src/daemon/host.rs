//! The director's changes to its host (the settings it relies on), as the daemon sees them:
//! made once the program is attached, undone at a stop for good.

use crate::io::{
    bpf::BpfDataPlane,
    provision::director::{DirectorHost, DirectorHostError},
};

/// The host's set-up for a data plane of type `D`.
pub trait Host<D> {
    /// Applies the settings the director relies on.
    fn set_up(&mut self, interface: &str, dataplane: &D) -> Result<(), DirectorHostError>;
    /// Undoes `set_up` as far as it can; failures are logged, never returned.
    fn tear_down(&mut self);
}

impl Host<BpfDataPlane> for DirectorHost {
    fn set_up(
        &mut self,
        interface: &str,
        _dataplane: &BpfDataPlane,
    ) -> Result<(), DirectorHostError> {
        DirectorHost::set_up(self, interface)
    }

    fn tear_down(&mut self) {
        DirectorHost::tear_down(self);
    }
}
