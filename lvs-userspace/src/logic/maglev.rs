//! Maglev consistent hashing with weights: builds the lookup table the data plane indexes by
//! flow hash.
//!
//! Each real server gets a permutation of the table's slots from two hashes of its address;
//! servers take turns claiming their next free preferred slot until the table is full. A
//! server of weight `w` takes a turn in `w` of every `max_weight` rounds, so its share of slots
//! is proportional to its weight. Because the permutations depend only on the servers' own
//! addresses, every director with the same servers builds the same table, and removing one of
//! N servers moves only about 1/N of the slots.

use lvs_common::{NO_REAL_SERVER, hash::bytes_hash};

const OFFSET_SEED: u32 = 0x6d61_676c;
const SKIP_SEED: u32 = 0x6c65_7621;

/// One real server as the table builder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The id written into the table's slots.
    pub id: u32,
    /// What the permutation is derived from: stable across directors (the address and port).
    pub identity: Vec<u8>,
    pub weight: u32,
}

/// Where a server is in its permutation: the slot it looks at next, and one to four steps
/// of the permutation (each below `size`).
struct Walk {
    position: u32,
    skips: [u32; 4],
}

impl Walk {
    fn new(offset: u32, skip: u32, size: u32) -> Self {
        let times = |k: u64| (u64::from(skip) * k % u64::from(size)) as u32;
        Walk {
            position: offset,
            skips: [times(1), times(2), times(3), times(4)],
        }
    }
}

/// Builds a table of `size` slots. `size` must be prime so every permutation visits every slot.
/// With no backend of non-zero weight, every slot is `NO_REAL_SERVER`.
pub fn build_table(backends: &[Backend], size: u32) -> Vec<u32> {
    let size_usize = size as usize;
    let mut table = vec![NO_REAL_SERVER; size_usize];
    // Sorting by identity makes the table independent of the order servers were configured in.
    let mut active: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
    if active.is_empty() || size == 0 {
        return table;
    }
    active.sort_by(|a, b| a.identity.cmp(&b.identity));

    // Each server's place in its permutation. The permutation is `offset, offset + skip,
    // offset + 2 * skip, ...` modulo `size`; walking it by adding (multiples of) `skip` and
    // subtracting `size` once when past the end gives the same slots as computing each one
    // with a division, several times faster.
    let mut walks: Vec<Walk> = active
        .iter()
        .map(|b| {
            let offset = bytes_hash(&b.identity, OFFSET_SEED) % size;
            let skip = bytes_hash(&b.identity, SKIP_SEED) % (size - 1).max(1) + 1;
            Walk::new(offset, skip % size, size)
        })
        .collect();
    let max_weight = active.iter().map(|b| b.weight).max().unwrap_or(1);
    let mut credit = vec![0u32; active.len()];
    // Which slots are taken, one bit each: 8 KiB for 65537 slots stays in the L1 cache, where
    // the table itself (256 KiB) would not.
    let mut taken = vec![0u64; size_usize.div_ceil(64)];
    let mut filled = 0usize;

    loop {
        for (i, backend) in active.iter().enumerate() {
            credit[i] += backend.weight;
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let walk = &mut walks[i];
            // Both terms are below `size`, so one subtraction brings the sum back below it.
            let add = |slot: u32, step: u32| {
                let advanced = u64::from(slot) + u64::from(step);
                if advanced >= u64::from(size) {
                    (advanced - u64::from(size)) as u32
                } else {
                    advanced as u32
                }
            };
            let is_free = |slot: u32| (taken[slot as usize / 64] >> (slot % 64)) & 1 == 0;
            // Four candidates at a time, each computed from the first with a multiple of the
            // skip (so they do not wait on each other): the first free one in permutation
            // order is the slot the one-at-a-time walk finds, with a quarter of the
            // unpredictable branches once the table fills up.
            let mut c0 = walk.position;
            let slot = loop {
                let c1 = add(c0, walk.skips[0]);
                let c2 = add(c0, walk.skips[1]);
                let c3 = add(c0, walk.skips[2]);
                let free = u32::from(is_free(c0))
                    | u32::from(is_free(c1)) << 1
                    | u32::from(is_free(c2)) << 2
                    | u32::from(is_free(c3)) << 3;
                if free != 0 {
                    let chosen = [c0, c1, c2, c3][free.trailing_zeros() as usize];
                    walk.position = add(chosen, walk.skips[0]);
                    break chosen as usize;
                }
                c0 = add(c0, walk.skips[3]);
            };
            taken[slot / 64] |= 1u64 << (slot % 64);
            table[slot] = backend.id;
            filled += 1;
            if filled == size_usize {
                return table;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SIZE: u32 = 65537;

    fn backend(id: u32, weight: u32) -> Backend {
        Backend {
            id,
            identity: vec![10, 0, (id >> 8) as u8, id as u8, 0, 80],
            weight,
        }
    }

    fn shares(table: &[u32]) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for &id in table {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// The table as the algorithm is written in the paper (and as lvs built it before the
    /// incremental walk and the bitmap): the fast build must give exactly this table.
    fn reference_table(backends: &[Backend], size: u32) -> Vec<u32> {
        let mut table = vec![NO_REAL_SERVER; size as usize];
        let mut active: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
        if active.is_empty() {
            return table;
        }
        active.sort_by(|a, b| a.identity.cmp(&b.identity));
        let permutations: Vec<(u64, u64)> = active
            .iter()
            .map(|b| {
                let offset = u64::from(bytes_hash(&b.identity, OFFSET_SEED) % size);
                let skip = u64::from(bytes_hash(&b.identity, SKIP_SEED) % (size - 1).max(1) + 1);
                (offset, skip)
            })
            .collect();
        let max_weight = active.iter().map(|b| b.weight).max().unwrap_or(1);
        let mut next = vec![0u64; active.len()];
        let mut credit = vec![0u32; active.len()];
        let mut filled = 0;
        loop {
            for (i, backend) in active.iter().enumerate() {
                credit[i] += backend.weight;
                if credit[i] < max_weight {
                    continue;
                }
                credit[i] -= max_weight;
                let (offset, skip) = permutations[i];
                let slot = loop {
                    let candidate = ((offset + next[i] * skip) % u64::from(size)) as usize;
                    next[i] += 1;
                    if table[candidate] == NO_REAL_SERVER {
                        break candidate;
                    }
                };
                table[slot] = backend.id;
                filled += 1;
                if filled == size as usize {
                    return table;
                }
            }
        }
    }

    #[test]
    fn the_table_is_the_reference_construction() {
        for (count, weights) in [(1, 1), (3, 1), (10, 3), (100, 5), (1000, 3)] {
            let backends: Vec<_> = (0..count).map(|i| backend(i, 1 + i % weights)).collect();
            assert_eq!(
                build_table(&backends, SIZE),
                reference_table(&backends, SIZE),
                "{count} servers, weights 1..={weights}"
            );
        }
        let small: Vec<_> = (0..4).map(|i| backend(i, 1)).collect();
        assert_eq!(build_table(&small, 7), reference_table(&small, 7));
        assert_eq!(build_table(&small, 2), reference_table(&small, 2));
    }

    #[test]
    fn empty_or_all_zero_weight_gives_an_empty_table() {
        assert!(build_table(&[], 7).iter().all(|&s| s == NO_REAL_SERVER));
        let table = build_table(&[backend(1, 0), backend(2, 0)], 7);
        assert!(table.iter().all(|&s| s == NO_REAL_SERVER));
    }

    #[test]
    fn every_slot_is_filled_with_a_known_backend() {
        let backends: Vec<_> = (0..5).map(|i| backend(i, 1)).collect();
        let table = build_table(&backends, SIZE);
        assert_eq!(table.len(), SIZE as usize);
        assert!(table.iter().all(|&s| s < 5));
    }

    #[test]
    fn equal_weights_share_slots_evenly() {
        let backends: Vec<_> = (0..10).map(|i| backend(i, 1)).collect();
        let counts = shares(&build_table(&backends, SIZE));
        let fair = SIZE as f64 / 10.0;
        for (id, count) in counts {
            let off = (count as f64 - fair).abs() / fair;
            assert!(off < 0.01, "backend {id} has {count} slots, fair is {fair}");
        }
    }

    #[test]
    fn shares_follow_weights() {
        let backends = [backend(1, 1), backend(2, 2), backend(3, 5)];
        let counts = shares(&build_table(&backends, SIZE));
        for b in &backends {
            let want = SIZE as f64 * f64::from(b.weight) / 8.0;
            let got = counts[&b.id] as f64;
            assert!(
                (got - want).abs() / want < 0.01,
                "backend {}: {got} slots, want {want}",
                b.id
            );
        }
    }

    #[test]
    fn zero_weight_backends_get_no_slots() {
        let table = build_table(&[backend(1, 1), backend(2, 0)], SIZE);
        assert!(!table.contains(&2));
    }

    #[test]
    fn identical_inputs_in_any_order_give_identical_tables() {
        let forward: Vec<_> = (0..20).map(|i| backend(i, 1 + i % 3)).collect();
        let mut reversed = forward.clone();
        reversed.reverse();
        assert_eq!(build_table(&forward, SIZE), build_table(&reversed, SIZE));
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_slots() {
        let n = 10u32;
        let all: Vec<_> = (0..n).map(|i| backend(i, 1)).collect();
        let before = build_table(&all, SIZE);
        let after = build_table(&all[1..], SIZE);
        // Slots of the removed server must move; count only the others that moved too.
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 0 && b != a)
            .count();
        let disrupted = moved as f64 / SIZE as f64;
        assert!(
            disrupted < 0.05,
            "{:.1}% of other flows moved",
            disrupted * 100.0
        );
    }
}
