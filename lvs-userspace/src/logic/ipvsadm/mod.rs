//! ipvsadm's interface, pure: its command line ([`args`], [`command`]), its rule table
//! semantics ([`rules`]), its listing layouts ([`list`]), its save format ([`save`]) and its
//! restore format ([`restore`]). Nothing here does I/O; names are looked up through a
//! [`names::Resolver`].

pub mod args;
pub mod command;
mod error;
#[cfg(test)]
mod fixture;
pub mod list;
pub mod names;
pub mod restore;
pub mod rules;
pub mod save;
pub mod values;

pub use args::Args;
pub use command::{Command, Layout, List, ListFormat, ListTarget};
pub use error::UsageError;
