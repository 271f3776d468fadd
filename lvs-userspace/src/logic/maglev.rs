//! Maglev consistent hashing with weights: builds the lookup table the data plane indexes by
//! flow hash.
//!
//! Each real server gets a permutation of the table's slots from two hashes of its address;
//! servers take turns claiming their next free preferred slot until the table is full. A
//! server of weight `w` takes a turn in `w` of every `max_weight` rounds, so its share of slots
//! is proportional to its weight. Because the permutations depend only on the servers' own
//! addresses, every director with the same servers builds the same table, and removing one of
//! N servers moves only about 1/N of the slots.
//!
//! The build gives exactly the table of the paper's algorithm (`build_table_as_in_the_paper`,
//! kept to test against and to time beside it), faster: servers walk their permutations over
//! a bitmap of taken slots, testing the slot they are at alone and then four at a time, and
//! once few slots are left (when a walk would probe hundreds of taken slots to find a free
//! one) each turn looks up which free slot comes first in the server's permutation instead of
//! walking to it. What bounds it is the walk itself: about 65,000 fills and 400,000 probes of
//! the bitmap for 65,537 slots. Measured on a 2-core VM, a fill costs about 6 ns while the
//! table is nearly empty, 12 ns at half full and 60 ns at 98%, where each needs dozens of
//! probes.

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

/// One server as the build walks it: its id, its weight and the credit its turns are counted
/// with, and where it is in its permutation.
struct Server {
    id: u32,
    weight: u32,
    credit: u32,
    walk: Walk,
}

/// Where a server is in its permutation: the slot it looks at next, and one to four steps
/// of the permutation (each below `size`; the first is the step itself); and where the
/// permutation starts, for finding a slot's place in it once few slots are left.
struct Walk {
    position: u32,
    skips: [u32; 4],
    offset: u32,
}

impl Walk {
    fn new(offset: u32, skip: u32, size: u32) -> Self {
        let times = |k: u64| (u64::from(skip) * k % u64::from(size)) as u32;
        Walk {
            position: offset,
            skips: [times(1), times(2), times(3), times(4)],
            offset,
        }
    }

    /// The next free slot in the permutation, which becomes the walk's: the permutation is
    /// `offset, offset + skip, offset + 2 * skip, ...` modulo `size`, walked by adding
    /// (multiples of) `skip` and subtracting `size` once when past the end, several times
    /// faster than computing each slot with a division.
    fn take_next(&mut self, taken: &Taken) -> u32 {
        let size = taken.size;
        // Both terms are below `size`, so one subtraction brings the sum back below it.
        let add = |slot: u32, step: u32| {
            let advanced = u64::from(slot) + u64::from(step);
            if advanced >= u64::from(size) {
                (advanced - u64::from(size)) as u32
            } else {
                advanced as u32
            }
        };
        // The slot the walk is at first, alone: while the table is mostly empty it is free
        // more often than not, and testing one slot costs a quarter of testing four.
        let mut c0 = self.position;
        if taken.is_free(c0) {
            self.position = add(c0, self.skips[0]);
            return c0;
        }
        c0 = add(c0, self.skips[0]);
        // Then four candidates at a time, each the first plus a multiple of the skip (so they
        // do not wait on each other): the first free one in permutation order is the slot the
        // one-at-a-time walk finds, with a quarter of the unpredictable branches once the
        // table fills up. The sums are not brought back below `size`: the bitmap answers for
        // slots up to twice the size, and only the chosen one is.
        let steps = [0, self.skips[0], self.skips[1], self.skips[2]];
        loop {
            let free = u32::from(taken.is_free(c0 + steps[0]))
                | u32::from(taken.is_free(c0 + steps[1])) << 1
                | u32::from(taken.is_free(c0 + steps[2])) << 2
                | u32::from(taken.is_free(c0 + steps[3])) << 3;
            if free != 0 {
                let chosen = add(c0, steps[free.trailing_zeros() as usize]);
                self.position = add(chosen, self.skips[0]);
                return chosen;
            }
            c0 = add(c0, self.skips[3]);
        }
    }

    /// Of the `free` slots, the index of the one that comes first in this permutation: the
    /// slot the walk would reach, found without walking past the taken ones. A slot `s` is
    /// the permutation's `j`-th where `s = offset + j * skip (mod size)`, so
    /// `j = (s - offset) * skip⁻¹ (mod size)`, with `skip`'s inverse modulo the prime `size`.
    fn first_of(&self, free: &[u32], modulo: &Modulo) -> usize {
        let size = modulo.divisor;
        let inverse = inverse_modulo(self.skips[0], size as u32);
        let offset = u64::from(self.offset);
        let mut best = 0;
        let mut best_place = u64::MAX;
        for (index, &slot) in free.iter().enumerate() {
            let slot = u64::from(slot);
            let from_offset = if slot >= offset {
                slot - offset
            } else {
                slot + size - offset
            };
            let place = modulo.reduce(from_offset * inverse);
            if place < best_place {
                best = index;
                best_place = place;
            }
        }
        best
    }
}

/// Which slots are taken, one bit each: 8 KiB for 65537 slots stays in the L1 cache, where
/// the table itself (256 KiB) would not. Each slot has a second bit, `size` further on, so
/// that a slot plus a step (both below `size`) can be asked about without being brought back
/// below `size` first: the walk asks four times for each time it moves on.
struct Taken {
    bits: Vec<u64>,
    size: u32,
}

impl Taken {
    fn new(size: u32) -> Self {
        Taken {
            bits: vec![0; (2 * size as usize).div_ceil(64)],
            size,
        }
    }

    /// Whether `slot`, or `slot - size` when it is `size` or more, is free; `slot` is below
    /// twice the size.
    fn is_free(&self, slot: u32) -> bool {
        (self.bits[slot as usize / 64] >> (slot % 64)) & 1 == 0
    }

    fn take(&mut self, slot: u32) {
        for bit in [slot, slot + self.size] {
            self.bits[bit as usize / 64] |= 1 << (bit % 64);
        }
    }

    fn free_slots(&self) -> Vec<u32> {
        let mut free = Vec::new();
        for (index, &word) in self.bits.iter().enumerate() {
            let mut free_bits = !word;
            while free_bits != 0 {
                let slot = index as u32 * 64 + free_bits.trailing_zeros();
                if slot >= self.size {
                    return free;
                }
                free.push(slot);
                free_bits &= free_bits - 1;
            }
        }
        free
    }
}

/// `x mod divisor` for any `x` below 2⁶⁴ by Barrett reduction: a multiplication by a
/// precomputed `2⁶⁴ / divisor` instead of a 64-bit division, which costs several times as
/// much.
struct Modulo {
    divisor: u64,
    reciprocal: u64,
}

impl Modulo {
    fn new(divisor: u32) -> Self {
        let divisor = u64::from(divisor.max(1));
        Modulo {
            divisor,
            reciprocal: u64::MAX / divisor,
        }
    }

    fn reduce(&self, x: u64) -> u64 {
        // The quotient estimate is short by at most two, so at most two subtractions are left.
        let quotient = ((u128::from(x) * u128::from(self.reciprocal)) >> 64) as u64;
        let mut remainder = x - quotient * self.divisor;
        while remainder >= self.divisor {
            remainder -= self.divisor;
        }
        remainder
    }
}

/// `value`'s inverse modulo the prime `modulus` (`value` not a multiple of it), by the
/// extended Euclidean algorithm. The remainders stay below `modulus`, so they are divided as
/// 32-bit numbers (the quicker division); the coefficients stay within `±modulus`.
fn inverse_modulo(value: u32, modulus: u32) -> u64 {
    let (mut old_r, mut r) = (value % modulus, modulus);
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let quotient = old_r / r;
        (old_r, r) = (r, old_r - quotient * r);
        (old_s, s) = (s, old_s - i64::from(quotient) * s);
    }
    old_s.rem_euclid(i64::from(modulus)) as u64
}

/// How few free slots are left when the build stops walking permutations. Walking, a server
/// probes `size / free` slots on average to find a free one; looking up costs a few
/// multiplications for each of the `free` slots, and an inverse. The two cross below the
/// square root of `size`: for 65,537 slots and 1,000 servers the last 128 slots took about
/// 200 µs walked (over 350,000 probes, near half of the whole build's) and 25 µs looked up,
/// where the 128 before them took about 50 µs walked and more looked up.
fn free_slots_to_look_up(size: u32) -> usize {
    (f64::from(size).sqrt() as usize) / 2
}

/// The servers that take turns, in their order: those of non-zero weight, sorted by identity,
/// which makes the table independent of the order the servers were configured in.
fn in_turn_order(backends: &[Backend]) -> Vec<&Backend> {
    let mut active: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
    active.sort_by(|a, b| a.identity.cmp(&b.identity));
    active
}

/// A server's permutation of the `size` slots: where it starts, and its step (from 1 to
/// `size - 1`, so that with `size` prime it visits every slot once).
fn permutation(identity: &[u8], size: u32) -> (u32, u32) {
    let offset = bytes_hash(identity, OFFSET_SEED) % size;
    let skip = bytes_hash(identity, SKIP_SEED) % (size - 1).max(1) + 1;
    (offset, skip % size)
}

/// Builds a table of `size` slots. `size` must be prime so every permutation visits every slot,
/// and below 2³¹ so that a slot plus a step fits in 32 bits (the walk adds them). With no
/// backend of non-zero weight, every slot is `NO_REAL_SERVER`.
pub fn build_table(backends: &[Backend], size: u32) -> Vec<u32> {
    debug_assert!(size < 1 << 31, "a Maglev table of {size} slots");
    let size_usize = size as usize;
    let mut table = vec![NO_REAL_SERVER; size_usize];
    let active = in_turn_order(backends);
    if active.is_empty() || size == 0 {
        return table;
    }
    let mut servers: Vec<Server> = active
        .iter()
        .map(|b| {
            let (offset, skip) = permutation(&b.identity, size);
            Server {
                id: b.id,
                weight: b.weight,
                credit: 0,
                walk: Walk::new(offset, skip, size),
            }
        })
        .collect();
    let mut turns = Turns {
        next: 0,
        max_weight: active.iter().map(|b| b.weight).max().unwrap_or(1),
    };
    // Every slot but the last few is found by walking; the last few are looked up.
    let look_up = free_slots_to_look_up(size).min(size_usize);
    let mut taken = Taken::new(size);
    walk_turns(
        &mut servers,
        &mut turns,
        size_usize - look_up,
        &mut taken,
        &mut table,
    );
    let modulo = Modulo::new(size);
    // The free slots, in no order.
    let mut free = taken.free_slots();
    for _ in 0..look_up {
        let server = turns.next(&mut servers);
        let slot = free.swap_remove(server.walk.first_of(&free, &modulo));
        table[slot as usize] = server.id;
    }
    table
}

/// Whose turn it is: servers take turns in their order, round after round, and one of weight
/// `w` takes a turn in `w` of every `max_weight` rounds, so its share of slots is proportional
/// to its weight.
struct Turns {
    /// The server visited next.
    next: usize,
    max_weight: u32,
}

impl Turns {
    fn next<'a>(&mut self, servers: &'a mut [Server]) -> &'a mut Server {
        loop {
            let index = self.next;
            self.next = if index + 1 == servers.len() {
                0
            } else {
                index + 1
            };
            let server = &mut servers[index];
            server.credit += server.weight;
            if server.credit >= self.max_weight {
                server.credit -= self.max_weight;
                return &mut servers[index];
            }
        }
    }
}

/// `count` turns, each walking its server's permutation to the next free slot. A loop of its
/// own, apart from the lookups of the last slots, so that its few variables stay in registers
/// (in one loop with the lookups' they were spilled to the stack).
fn walk_turns(
    servers: &mut [Server],
    turns: &mut Turns,
    count: usize,
    taken: &mut Taken,
    table: &mut [u32],
) {
    for _ in 0..count {
        let server = turns.next(servers);
        let slot = server.walk.take_next(taken);
        taken.take(slot);
        table[slot as usize] = server.id;
    }
}

/// The table built as the paper writes the algorithm, and as lvs built it before the walk and
/// the bitmap: each turn computes its server's next slot with a division and looks at the
/// table itself, one slot at a time. `build_table` must give exactly this table (a unit test
/// compares them), and the scaling bench times both in one run.
pub fn build_table_as_in_the_paper(backends: &[Backend], size: u32) -> Vec<u32> {
    let mut table = vec![NO_REAL_SERVER; size as usize];
    let active = in_turn_order(backends);
    if active.is_empty() || size == 0 {
        return table;
    }
    let permutations: Vec<(u64, u64)> = active
        .iter()
        .map(|b| {
            let (offset, skip) = permutation(&b.identity, size);
            (u64::from(offset), u64::from(skip))
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

    #[test]
    fn the_table_is_the_papers_construction() {
        for (count, weights) in [(1, 1), (3, 1), (10, 3), (100, 5), (1000, 3)] {
            let backends: Vec<_> = (0..count).map(|i| backend(i, 1 + i % weights)).collect();
            assert_eq!(
                build_table(&backends, SIZE),
                build_table_as_in_the_paper(&backends, SIZE),
                "{count} servers, weights 1..={weights}"
            );
        }
        // Weights in no pattern along the turn order, some of them zero.
        let scattered: Vec<_> = (0..300).map(|i| backend(i, (i * 37) % 101)).collect();
        assert_eq!(
            build_table(&scattered, SIZE),
            build_table_as_in_the_paper(&scattered, SIZE)
        );
        let small: Vec<_> = (0..4).map(|i| backend(i, 1)).collect();
        assert_eq!(
            build_table(&small, 1),
            build_table_as_in_the_paper(&small, 1)
        );
        assert_eq!(
            build_table(&small, 7),
            build_table_as_in_the_paper(&small, 7)
        );
        assert_eq!(
            build_table(&small, 2),
            build_table_as_in_the_paper(&small, 2)
        );
    }

    #[test]
    fn the_reduction_is_the_remainder() {
        for divisor in [1u32, 2, 7, 65537, 1_000_003, u32::MAX] {
            let modulo = Modulo::new(divisor);
            let d = u64::from(divisor);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let edges = [0, 1, d - 1, d, d + 1, d * d - 1, u64::MAX - 1, u64::MAX];
            for value in edges.into_iter().chain((0..1000).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })) {
                assert_eq!(modulo.reduce(value), value % d, "{value} mod {divisor}");
            }
        }
    }

    #[test]
    fn the_inverse_times_the_value_is_one() {
        for modulus in [2u32, 7, 65537, 1_000_003] {
            let values = [1, 2, 3, modulus / 2, modulus - 1, modulus + 1];
            for value in values.into_iter().filter(|value| value % modulus != 0) {
                let inverse = inverse_modulo(value, modulus);
                assert!(inverse < u64::from(modulus));
                assert_eq!(
                    u64::from(value) * inverse % u64::from(modulus),
                    1,
                    "{value} mod {modulus}"
                );
            }
        }
    }

    #[test]
    fn the_lookup_finds_the_slot_the_walk_reaches() {
        // A table with every slot taken but a few: the walk and the lookup must agree.
        let size = 65537;
        let mut taken = Taken::new(size);
        for slot in 0..size {
            if slot % 4099 != 17 {
                taken.take(slot);
            }
        }
        let free = taken.free_slots();
        assert_eq!(free.len(), 16);
        assert!(free.iter().all(|&slot| taken.is_free(slot)));
        let modulo = Modulo::new(size);
        for (offset, skip) in [(0, 1), (5, 2), (65536, 65536), (12345, 4099), (777, 31337)] {
            let mut walk = Walk::new(offset, skip, size);
            let looked_up = free[walk.first_of(&free, &modulo)];
            assert_eq!(
                walk.take_next(&taken),
                looked_up,
                "offset {offset}, skip {skip}"
            );
        }
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
