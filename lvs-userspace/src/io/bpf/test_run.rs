//! Running the loaded program on one frame through BPF_PROG_TEST_RUN, for the data-plane
//! tests and the benchmark.

use aya::programs::{TestRun, TestRunOptions};

use super::BpfDataPlane;
use crate::logic::dataplane::DataPlaneError;

/// What the program did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The XDP action (`XDP_PASS` is 2, `XDP_TX` is 3, ...).
    pub action: u32,
    /// The frame after the program ran.
    pub frame: Vec<u8>,
    /// Average run time per repetition, as the kernel measured it.
    pub duration: std::time::Duration,
}

/// Runs the program `repeat` times on `frame` (the kernel runs the same buffer each time).
pub fn run(
    dataplane: &mut BpfDataPlane,
    frame: &[u8],
    repeat: u32,
) -> Result<Outcome, DataPlaneError> {
    // XDP may grow the frame at the head or tail; leave room so the kernel never truncates.
    let mut out = vec![0u8; frame.len() + 512];
    let program = dataplane.program()?;
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.data_out = Some(&mut out);
    options.repeat = repeat;
    let result = program
        .test_run(options)
        .map_err(|source| DataPlaneError::Program {
            action: "test-running",
            source,
        })?;
    out.truncate(result.data_size_out as usize);
    Ok(Outcome {
        action: result.return_value,
        frame: out,
        duration: result.duration,
    })
}
