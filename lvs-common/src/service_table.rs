//! The service table: the virtual services of one family as an open-addressed array, which
//! the data plane reads on every frame instead of the `SERVICES` hash map.
//!
//! A hash map lookup is a helper call that hashes the whole key with jhash, and it cost about
//! 20 ns per IPv4 frame here (25 ns per IPv6 frame), whether the frame is for a service or
//! not: most of what a frame that is not for a service costs. An array lookup is inlined by
//! the verifier into a bounds check and an add, so the table costs a multiply, a shift and a
//! compare or two. The services are few (`MAX_SERVICES`), the table large
//! (`SERVICE_TABLE_SLOTS`), so a service almost always sits in its home slot and a frame for
//! no service almost always finds its home slot empty.
//!
//! Rules both sides keep, written here once:
//! - a service's home slot is `home_slot` of its address folded to 32 bits (`Address::fold`),
//!   its port and its protocol;
//! - it sits in one of the `SERVICE_TABLE_PROBES` slots from its home on (`probe_slot`), and
//!   no empty slot lies between its home and its slot, so a reader stops at the first empty
//!   slot (a slot whose key's protocol is 0: no frame has protocol 0 here);
//! - the table is never changed in place. The controller fills a new table and swaps it into
//!   the map of maps whole, so a reader sees the old table or the new one, never half of one;
//! - when the services cannot be placed within the probes (only adversarial keys can do that),
//!   the controller leaves the map of maps empty, and the data plane falls back to the
//!   `SERVICES` hash maps, which always hold every service.

use crate::{Address, ServiceEntry, ServiceKey};

/// Slots of one family's service table: a power of two, eight times `MAX_SERVICES`, so the
/// table is at most 1/8 full and a lookup's home slot is almost always the answer. No more:
/// at 512 slots the IPv6 table (56 bytes a slot) and its map header fit in 32 KiB, which the
/// kernel allocates with kmalloc, in its linear map of 1 GiB pages, rather than with vmalloc
/// in pages of 4 KiB, each of which needs a TLB entry of its own that a large flow table's
/// random accesses keep evicting (checked in /proc/vmallocinfo: at 1,024 slots both
/// families' tables were vmalloc areas).
pub const SERVICE_TABLE_SLOTS: u32 = 512;

/// How many slots from its home on a service may sit: the bound of the reader's loop.
pub const SERVICE_TABLE_PROBES: u32 = 4;

/// Bits of `home_slot`'s result.
const SLOT_BITS: u32 = SERVICE_TABLE_SLOTS.trailing_zeros();

/// One slot of a service table: the service's key and its entry, or all zeroes (empty). Both
/// parts are made of 4-byte words (asserted below), so the data plane compares keys a word at
/// a time and the slot has no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSlot<A = crate::Ipv4Bytes> {
    pub key: ServiceKey<A>,
    pub entry: ServiceEntry,
}

/// A slot of the IPv6 service table.
pub type ServiceSlot6 = ServiceSlot<crate::Ipv6Bytes>;

/// The slot where the service of `address`, `port` (network byte order, as on the wire) and
/// `protocol` is looked for first: Fibonacci hashing (a multiply by 2^64 / φ, keeping the top
/// bits) of the three packed in one word, which spreads neighbouring addresses and ports over
/// the whole table.
#[inline(always)]
pub fn home_slot<A: Address>(address: &A, port: [u8; 2], protocol: u8) -> u32 {
    let word = u64::from(u32::from_ne_bytes(address.fold()))
        | u64::from(u16::from_ne_bytes(port)) << 32
        | u64::from(protocol) << 48;
    (word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOT_BITS)) as u32
}

/// The slot looked at on probe `probe` (0 is the home slot) from `home`, wrapping around.
#[inline(always)]
pub fn probe_slot(home: u32, probe: u32) -> u32 {
    (home + probe) & (SERVICE_TABLE_SLOTS - 1)
}

/// Whether a slot is empty: no service's key has protocol 0.
#[inline(always)]
pub fn is_empty<A>(slot: &ServiceSlot<A>) -> bool {
    slot.key.protocol == 0
}

const _: () = {
    assert!(SERVICE_TABLE_SLOTS.is_power_of_two());
    assert!(SERVICE_TABLE_SLOTS >= 8 * crate::MAX_SERVICES);
    assert!(size_of::<ServiceSlot>() == 40);
    assert!(size_of::<ServiceSlot6>() == 52);
    assert!(align_of::<ServiceSlot>() == 4);
    assert!(core::mem::offset_of!(ServiceSlot, entry) == 8);
    assert!(core::mem::offset_of!(ServiceSlot6, entry) == 20);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_slots_are_in_the_table_and_spread_neighbouring_ports() {
        let address = [10, 0, 0, 100];
        let mut seen = [false; SERVICE_TABLE_SLOTS as usize];
        for port in 1u16..=64 {
            let slot = home_slot(&address, port.to_be_bytes(), crate::IPPROTO_TCP);
            assert!(slot < SERVICE_TABLE_SLOTS);
            seen[slot as usize] = true;
        }
        // 64 neighbouring ports of one VIP land in 64 different home slots.
        assert_eq!(seen.iter().filter(|&&s| s).count(), 64);
    }

    #[test]
    fn probes_wrap_around_the_table() {
        assert_eq!(probe_slot(SERVICE_TABLE_SLOTS - 1, 1), 0);
        assert_eq!(probe_slot(5, 3), 8);
    }
}
