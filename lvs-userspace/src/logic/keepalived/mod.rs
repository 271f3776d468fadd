//! `lvs import-keepalived`: keepalived.conf's `virtual_server` blocks as lvs's TOML config,
//! and (`--vrrp-out`) the rest of the file as the keepalived.conf keepalived keeps running.
//! [`syntax`] reads keepalived's grammar, [`import`] maps the blocks, `check` holds each
//! imported service to the config's own rules, [`sync`] maps the connection sync daemon,
//! [`output`] is the TOML shape, [`vrrp`] cuts the blocks out. Pure: the caller reads the
//! file and writes the result.

mod check;
pub mod import;
pub mod output;
pub mod sync;
pub mod syntax;
pub mod vrrp;

pub use import::{Imported, Problem, import};
pub use vrrp::{SplitError, vrrp_only};

#[cfg(test)]
mod tests;
