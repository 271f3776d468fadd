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
