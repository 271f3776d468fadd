//! `lvs import-keepalived`: keepalived.conf's `virtual_server` blocks as lvs's TOML config.
//! [`syntax`] reads keepalived's grammar, [`import`] maps the blocks, [`output`] is the TOML
//! shape. Pure: the caller reads the file and writes the result.

pub mod import;
pub mod output;
pub mod syntax;

pub use import::{Imported, Problem, import};

#[cfg(test)]
mod tests;
