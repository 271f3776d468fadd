//! What several test targets share, in one crate they all depend on: the driver of the demo
//! lab (`cargo xtask run` and the end-to-end tests, so the demo shows exactly what the tests
//! check), the load that shows whether a change disturbed any client, the two directors with
//! keepalived of the two-director test and demo, the director set-up of the data-plane tests
//! and benchmarks, and the empty XDP program and the flow-table floor the benchmarks measure the director
//! against; a
//! headless browser for the tests that look at the status page; and the live-frames generator
//! of the live bench and the flood test.

pub mod browser;
pub mod empty_program;
#[cfg(feature = "fixture")]
pub mod fixture;
pub mod lab;
pub mod live;
pub mod load;
pub mod pair;
pub mod rawbpf;
pub mod table_floor;
