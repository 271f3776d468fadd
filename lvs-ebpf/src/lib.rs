//! Only here so that `lvs-userspace` can name this crate as a build dependency; the
//! program itself is the `lvs` binary target (`src/main.rs`).
#![no_std]
