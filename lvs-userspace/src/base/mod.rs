//! The project's vocabulary: small types that every other module speaks, and that import
//! nothing of the project themselves (only std, serde and thiserror), so any module can use
//! them without creating an import cycle.
//!
//! - `values`: validated values (a weight, a port, a unicast address, a netmask, thresholds,
//!   timeouts, an HTTP status code). Each rule is written once here; the front ends (the
//!   config file, lvsadm, `-R` files, the keepalived import, the health config) validate
//!   through it and keep their own error wording where ipvsadm or keepalived users know it.
//! - `mac`: a MAC address, as ARP, netlink, the model and the doctor exchange it.
//! - `diagnostics`: where a problem in a configuration file is (`Locator`) and what it is
//!   (`Problem`).
//! - `health`: what health checking publishes about a real server, which the model keeps and
//!   the status shows, and `HealthRecord`, through which health checking hands it over.
//! - `values::same_port`: direct routing cannot change a server's port.

pub mod diagnostics;
pub mod health;
pub mod mac;
pub mod values;

#[cfg(test)]
mod tests {
    /// Architecture invariant: `base` imports nothing of the project, so that every module can
    /// import it without a cycle.
    #[test]
    fn base_imports_nothing_of_the_project() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("diagnostics.rs", include_str!("diagnostics.rs")),
            ("health.rs", include_str!("health.rs")),
            ("mac.rs", include_str!("mac.rs")),
            ("values.rs", include_str!("values.rs")),
        ];
        // Spelled in pieces so that this file does not find itself.
        let project = [
            concat!("crate", "::"),
            concat!("super::", "super"),
            concat!("lvs", "_common"),
        ];
        for (file, text) in files {
            for path in project {
                assert!(!text.contains(path), "base/{file} names {path}");
            }
        }
    }
}
