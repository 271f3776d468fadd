//! Addresses as map keys hold them: wire bytes, 4 for IPv4 and 16 for IPv6.
//!
//! The data plane's code for a packet is written once and instantiated for each family
//! through `Address`, so that both follow the same rules; each family keeps its own maps
//! (`SERVICES`/`SERVICES6`, `FLOWS`/`FLOWS6`, `PERSIST`/`PERSIST6`), so that an IPv4 packet
//! never hashes or compares IPv6-sized keys.

/// An IPv4 address, network byte order.
pub type Ipv4Bytes = [u8; 4];
/// An IPv6 address, network byte order.
pub type Ipv6Bytes = [u8; 16];

/// What the data plane needs of an address of either family.
pub trait Address: Copy + Default + PartialEq + Eq + core::hash::Hash + Ord {
    /// The address folded into 32 bits for the schedulers' hash. IPv6 XORs its four words,
    /// as IPVS's `sh` and `dh` schedulers do (`ip_vs_sh_hashkey`), so the same clients spread
    /// the same way under lvs and IPVS.
    fn fold(&self) -> [u8; 4];
    /// The address masked with a service's persistence mask (`ServiceEntry::persist_mask`,
    /// whose first `size_of::<Self>()` bytes apply).
    fn masked(&self, mask: &Ipv6Bytes) -> Self;
}

impl Address for Ipv4Bytes {
    #[inline(always)]
    fn fold(&self) -> [u8; 4] {
        *self
    }

    #[inline(always)]
    fn masked(&self, mask: &Ipv6Bytes) -> Self {
        let masked =
            u32::from_ne_bytes(*self) & u32::from_ne_bytes([mask[0], mask[1], mask[2], mask[3]]);
        masked.to_ne_bytes()
    }
}

impl Address for Ipv6Bytes {
    #[inline(always)]
    fn fold(&self) -> [u8; 4] {
        let word = |i: usize| u32::from_ne_bytes([self[i], self[i + 1], self[i + 2], self[i + 3]]);
        (word(0) ^ word(4) ^ word(8) ^ word(12)).to_ne_bytes()
    }

    #[inline(always)]
    fn masked(&self, mask: &Ipv6Bytes) -> Self {
        let mut masked = *self;
        let mut i = 0;
        while i < 16 {
            masked[i] &= mask[i];
            i += 1;
        }
        masked
    }
}

/// The persistence mask of an IPv6 prefix length (`ipvsadm -M 64` for IPv6), as
/// `ServiceEntry::persist_mask` holds it. Lengths over 128 are 128.
pub const fn ipv6_prefix_mask(length: u8) -> Ipv6Bytes {
    let bits = if length > 128 { 128 } else { length as u32 };
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    mask.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_folds_by_xor_of_its_words() {
        let address: Ipv6Bytes = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        assert_eq!(address.fold(), [0x20, 0x01, 0x0d, 0xa8]);
        assert_eq!([10, 0, 0, 1].fold(), [10, 0, 0, 1]);
    }

    #[test]
    fn masks_keep_the_network() {
        assert_eq!(
            [10, 1, 2, 3].masked(&[255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            [10, 1, 2, 0]
        );
        let mask = ipv6_prefix_mask(64);
        assert_eq!(
            mask,
            [
                255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        let address: Ipv6Bytes = [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 1,
        ];
        assert_eq!(
            address.masked(&mask),
            [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ipv6_prefix_mask(0), [0; 16]);
        assert_eq!(ipv6_prefix_mask(128), [255; 16]);
        assert_eq!(ipv6_prefix_mask(200), [255; 16]);
        assert_eq!(ipv6_prefix_mask(1)[0], 0x80);
    }
}
