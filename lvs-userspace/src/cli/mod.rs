//! What the command-line tools do beyond parsing their arguments: `lvsadm`'s client and
//! printing, and `lvs doctor`'s checks of a cluster. The binaries (`src/main.rs`,
//! `src/bin/lvsadm.rs`) only parse, call these, and choose an exit status.

pub mod doctor;
pub mod lvsadm;
