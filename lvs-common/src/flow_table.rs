//! The flow table's shape: an array of buckets of four connections, in which a connection sits
//! in one of the two buckets its key hashes to. The data plane, the controller (connection
//! sync's installs, the sweep's reads, restart adoption) and the benchmarks all place, find and
//! read connections by the rules written here once.
//!
//! Why an array rather than the kernel's LRU hash map: an LRU lookup is a helper call that
//! hashes the key with jhash, walks a bucket's chain and marks the element referenced, and an
//! insert takes a bucket lock and the LRU's list lock and moves an element between lists. Under
//! a flood of new connections, or with a million live ones, that was most of what a frame cost:
//! lvs forwarded 0.36-0.41 of the XDP floor's rate under a flood, and the LRU map alone could
//! not do better. An array lookup is inlined by the verifier; a bucket is read where it lies.
//!
//! Rules both sides keep:
//! - a connection's key hashes (`flow_hash`, with the table's seed) to two buckets
//!   (`buckets_of`), and it sits in one way of one of them, at most once;
//! - a slot is written only under its sequence word (`seq`): a writer moves it from even to odd
//!   with a compare-and-swap, writes the key and the entry, and moves it on to even. A reader
//!   that saw the same even value before and after its copy has a whole slot; a writer that
//!   finds the word odd leaves the slot to the writer that holds it. Only the data plane's
//!   in-place updates of a live connection (its stamp, TCP state and packet count, single
//!   words and bytes of the entry) are made without it, as they were in the LRU map's
//!   elements;
//! - a slot whose `last_seen_ns` is 0 is empty, and one whose connection has outlived its
//!   state's timeout is as good as empty: a new connection takes the place of an expired one
//!   (`SlotChoice`), so nothing has to delete connections (the controller's sweep empties
//!   expired slots only so that listings and counts show live ones);
//! - a new connection goes to the bucket with fewer live connections. Two choices keep the
//!   buckets even. Simulated with the table at its size (half its slots): while it fills,
//!   fewer than 1 in 10,000 new connections finds both its buckets full, and about 2 in 1,000
//!   once its connections turn over at that size; with one choice, 4 and 8 in 100. When both
//!   are full it takes the place of the least worth keeping: the one that has sent fewest
//!   packets (a flood's SYN, a lone datagram: `FLOW_SEEN_SHIFT`), and the stalest of those,
//!   so a flood of new connections turns itself over and leaves live ones alone.

use crate::flow::{FlowEntry, FlowKey, Settings, packets_seen};

/// Connections per bucket.
pub const FLOW_BUCKET_WAYS: usize = 4;

/// One place for a connection: its sequence word, its key and its entry. All zeroes is an
/// empty slot.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot<A = crate::Ipv4Bytes> {
    /// Even while the slot is whole, odd while a writer rewrites it.
    pub seq: u64,
    pub key: FlowKey<A>,
    pub entry: FlowEntry,
}

/// A bucket: the element of the `FLOWS` and `FLOWS6` arrays. An IPv4 bucket is 192 bytes,
/// three cache lines; an IPv6 one 288.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBucket<A = crate::Ipv4Bytes> {
    pub slots: [FlowSlot<A>; FLOW_BUCKET_WAYS],
}

/// A bucket of the `FLOWS6` array.
pub type FlowBucket6 = FlowBucket<crate::Ipv6Bytes>;

/// Buckets of a table sized for `flow_table_size` connections: two slots for each, rounded up
/// to a power of two, so that a bucket's index is a mask of the hash. The table can hold twice
/// its size; until it holds its size, a new connection seldom finds both its buckets full (see
/// the module's rules).
pub const fn bucket_count(flow_table_size: u32) -> u32 {
    let buckets = flow_table_size.div_ceil(FLOW_BUCKET_WAYS as u32 / 2);
    if buckets <= 1 {
        1
    } else {
        buckets.next_power_of_two()
    }
}

/// The map flag every flow table is created with (`BPF_F_MMAPABLE`), so that the controller
/// reads and writes slots in place, under their sequence words, rather than through syscalls
/// that copy whole buckets.
pub const FLOW_TABLE_MAP_FLAGS: u32 = 1 << 10;

/// murmur3's 64-bit finaliser.
#[inline(always)]
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The hash of a connection's key with the table's seed, a word of the key at a time. Each
/// word is multiplied in and rotated, and the result goes through murmur3's finaliser, so
/// neighbouring clients and ports spread over the whole table. The seed is random for each
/// table, so that no one can aim connections at one bucket without knowing it.
#[inline(always)]
pub fn flow_hash<A>(key: &FlowKey<A>, seed: u64) -> u64 {
    let words = size_of::<FlowKey<A>>() / 8;
    let base = core::ptr::from_ref(key).cast::<u64>();
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut i = 0;
    while i < words {
        // SAFETY: `FlowKey` is aligned to 8 and a whole number of words (asserted below),
        // every byte of it initialised (its padding is a field), and i < its words.
        let word = unsafe { *base.add(i) };
        h = (h ^ word)
            .wrapping_mul(0x87c3_7b91_1142_53d5)
            .rotate_left(31);
        i += 1;
    }
    fmix64(h)
}

/// The two buckets a connection with `hash` may sit in, in a table of `mask + 1` buckets: one
/// from each half of the hash. They may be the same bucket.
#[inline(always)]
pub const fn buckets_of(hash: u64, mask: u32) -> [u32; 2] {
    [(hash as u32) & mask, ((hash >> 32) as u32) & mask]
}

/// What a slot holds, as far as a new connection is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occupant {
    /// Empty, or a connection past its timeout: free to take.
    Free,
    /// A live connection: `keep` orders them by how much they are worth keeping (lowest goes
    /// first): by the packets they have sent (up to four), then by their last packet.
    Live { keep: u64 },
}

/// What the slot holding `entry` is to a new connection at `now_ns`.
#[inline(always)]
pub fn occupant(entry: &FlowEntry, now_ns: u64, settings: &Settings) -> Occupant {
    if entry.last_seen_ns == 0
        || now_ns.saturating_sub(entry.last_seen_ns) > settings.timeout_ns(entry.state)
    {
        return Occupant::Free;
    }
    // Stamps are nanoseconds of CLOCK_MONOTONIC, far below 2^61 (73 years): the two bits
    // above order connections by the packets they sent first.
    const STAMP: u64 = (1 << 61) - 1;
    Occupant::Live {
        keep: u64::from(packets_seen(entry.flags)) << 61 | (entry.last_seen_ns & STAMP),
    }
}

/// No slot: `SlotChoice`'s value for "none seen yet".
const NONE: u32 = u32::MAX;

/// Where a connection goes among the eight slots of its two buckets. Each slot is shown to
/// `consider` once, and `chosen` names the slot, as `choice * FLOW_BUCKET_WAYS + way`:
/// - the slot that already holds its key (a connection scheduled anew);
/// - else a free slot of the bucket with fewer live connections (the first bucket on a tie);
/// - else the live connection least worth keeping (`Occupant::Live::keep`).
#[derive(Clone, Copy, Debug)]
pub struct SlotChoice {
    same_key: u32,
    free: [u32; 2],
    live: [u32; 2],
    least: u32,
    least_keep: u64,
}

impl Default for SlotChoice {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotChoice {
    #[inline(always)]
    pub const fn new() -> Self {
        Self {
            same_key: NONE,
            free: [NONE; 2],
            live: [0; 2],
            least: NONE,
            least_keep: u64::MAX,
        }
    }

    /// Shows the slot at `way` of the connection's bucket `choice` (0 or 1).
    #[inline(always)]
    pub fn consider(&mut self, choice: usize, way: usize, same_key: bool, occupant: Occupant) {
        let slot = (choice * FLOW_BUCKET_WAYS + way) as u32;
        // The bucket's fields by name rather than by index: the data plane's verifier then
        // sees constant offsets into its stack.
        let (free, live) = if choice == 0 {
            (&mut self.free[0], &mut self.live[0])
        } else {
            (&mut self.free[1], &mut self.live[1])
        };
        if same_key && self.same_key == NONE {
            self.same_key = slot;
        }
        match occupant {
            Occupant::Free => {
                if *free == NONE {
                    *free = slot;
                }
            }
            Occupant::Live { keep } => {
                *live += 1;
                if keep < self.least_keep {
                    self.least_keep = keep;
                    self.least = slot;
                }
            }
        }
    }

    /// The slot chosen, as `choice * FLOW_BUCKET_WAYS + way`, once every slot was shown.
    #[inline(always)]
    pub fn chosen(&self) -> u32 {
        if self.same_key != NONE {
            return self.same_key;
        }
        let [first, second] = self.free;
        if first != NONE && (second == NONE || self.live[0] <= self.live[1]) {
            return first;
        }
        if second != NONE {
            return second;
        }
        if self.least != NONE { self.least } else { 0 }
    }
}

/// A slot as one writer left it: its sequence word (even), its key and its entry (whose
/// `last_seen_ns` is 0 when the slot is empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRead<A> {
    pub seq: u64,
    pub key: FlowKey<A>,
    pub entry: FlowEntry,
}

/// Reads a whole slot, or `None` while a writer is in it (the caller may try again). The
/// controller's reader; the data plane reads a word at a time by the same protocol (its target
/// has no atomic read-modify-write in `core`, so it writes with the compiler's intrinsics).
///
/// # Safety
/// `slot` must point at a slot of a flow table (shared with the data plane and other
/// processes), valid for reads and aligned.
#[cfg(not(target_arch = "bpf"))]
pub unsafe fn read_slot<A: Copy>(slot: *const FlowSlot<A>) -> Option<SlotRead<A>> {
    use core::sync::atomic::{AtomicU64, Ordering, fence};
    // SAFETY: the caller vouches for the slot; its first word is the sequence word, aligned
    // to 8, and only ever changed atomically.
    let seq = unsafe { AtomicU64::from_ptr(core::ptr::addr_of!((*slot).seq).cast_mut()) };
    let before = seq.load(Ordering::Acquire);
    if before & 1 != 0 {
        return None;
    }
    // SAFETY: as above; a torn copy is detected by the sequence word and thrown away.
    let (key, entry) = unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!((*slot).key)),
            core::ptr::read_volatile(core::ptr::addr_of!((*slot).entry)),
        )
    };
    fence(Ordering::Acquire);
    if seq.load(Ordering::Relaxed) != before {
        return None;
    }
    Some(SlotRead {
        seq: before,
        key,
        entry,
    })
}

/// Writes a slot whole, under its sequence word, if the word is still `seq` (the even value
/// it had when the slot was read). False when another writer came first: the slot then keeps
/// what that writer puts in it.
///
/// # Safety
/// As `read_slot`, and valid for writes.
#[cfg(not(target_arch = "bpf"))]
pub unsafe fn write_slot<A: Copy>(
    slot: *mut FlowSlot<A>,
    seq: u64,
    key: &FlowKey<A>,
    entry: &FlowEntry,
) -> bool {
    use core::sync::atomic::{AtomicU64, Ordering};
    // SAFETY: as in `read_slot`.
    let word = unsafe { AtomicU64::from_ptr(core::ptr::addr_of_mut!((*slot).seq)) };
    if seq & 1 != 0
        || word
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    // SAFETY: the slot is this writer's until the sequence word is even again.
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*slot).key), *key);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*slot).entry), *entry);
    }
    word.fetch_add(1, Ordering::Release);
    true
}

/// How often a slot that a writer holds is read again before it is left alone.
#[cfg(not(target_arch = "bpf"))]
const BUSY_RETRIES: usize = 16;

/// A flow table in the controller's memory (mapped from its array), read and written by
/// the rules above: connection sync's installs, the sweep's reads and removals, and the
/// benchmarks' fills all go through it.
#[cfg(not(target_arch = "bpf"))]
#[derive(Clone, Copy, Debug)]
pub struct SharedTable<A> {
    base: *mut FlowBucket<A>,
    buckets: u32,
    seed: u64,
}

#[cfg(not(target_arch = "bpf"))]
impl<A: Copy + PartialEq + Default> SharedTable<A> {
    /// The table of `buckets` buckets (a power of two) at `base`, whose connections hash
    /// with `seed`.
    ///
    /// # Safety
    /// `base` must point at the flow table's array of `buckets` buckets, mapped shared and
    /// writable for as long as the view is used.
    pub const unsafe fn new(base: *mut FlowBucket<A>, buckets: u32, seed: u64) -> Self {
        Self {
            base,
            buckets,
            seed,
        }
    }

    /// The table's buckets.
    pub const fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The seed its connections hash with.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    fn slot(&self, bucket: u32, way: usize) -> *mut FlowSlot<A> {
        debug_assert!(bucket < self.buckets && way < FLOW_BUCKET_WAYS);
        // SAFETY: bucket < buckets and way < ways: inside the array `new` was given.
        unsafe { &raw mut (*self.base.add(bucket as usize)).slots[way] }
    }

    /// Reads a slot whole, waiting out a writer for a little while: `None` when it stays
    /// held.
    fn read(&self, bucket: u32, way: usize) -> Option<SlotRead<A>> {
        let slot = self.slot(bucket, way);
        for _ in 0..BUSY_RETRIES {
            // SAFETY: a slot of the table.
            if let Some(read) = unsafe { read_slot(slot) } {
                return Some(read);
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Shows `each` the connections of the buckets from `from` on, until at least `max` were
    /// shown or the table ends, and returns the bucket to go on from (`None`: the end). Slots
    /// a writer holds throughout are skipped.
    pub fn read_from(
        &self,
        from: u32,
        max: usize,
        mut each: impl FnMut(FlowKey<A>, FlowEntry),
    ) -> Option<u32> {
        let mut shown = 0;
        let mut bucket = from;
        while bucket < self.buckets && shown < max {
            for way in 0..FLOW_BUCKET_WAYS {
                if let Some(read) = self.read(bucket, way)
                    && read.entry.last_seen_ns != 0
                {
                    each(read.key, read.entry);
                    shown += 1;
                }
            }
            bucket += 1;
        }
        (bucket < self.buckets).then_some(bucket)
    }

    /// The two buckets of `key`.
    fn buckets_of(&self, key: &FlowKey<A>) -> [u32; 2] {
        buckets_of(flow_hash(key, self.seed), self.buckets - 1)
    }

    /// Writes `entry` for `key` where the data plane would have put it (`SlotChoice`), as of
    /// `now_ns` and the timeouts of `settings`. False when the slot stayed held by another
    /// writer: the data plane is writing it at that moment, and keeps it.
    pub fn insert(
        &self,
        key: &FlowKey<A>,
        entry: &FlowEntry,
        now_ns: u64,
        settings: &Settings,
    ) -> bool {
        let buckets = self.buckets_of(key);
        for _ in 0..BUSY_RETRIES {
            let mut choice = SlotChoice::new();
            let mut seqs = [None; 2 * FLOW_BUCKET_WAYS];
            for (c, &bucket) in buckets.iter().enumerate() {
                for way in 0..FLOW_BUCKET_WAYS {
                    let Some(read) = self.read(bucket, way) else {
                        // Held throughout: never chosen, as a connection worth the most.
                        choice.consider(c, way, false, Occupant::Live { keep: u64::MAX });
                        continue;
                    };
                    seqs[c * FLOW_BUCKET_WAYS + way] = Some(read.seq);
                    let same_key = read.entry.last_seen_ns != 0 && read.key == *key;
                    choice.consider(c, way, same_key, occupant(&read.entry, now_ns, settings));
                }
            }
            let chosen = choice.chosen() as usize;
            let Some(seq) = seqs[chosen] else {
                return false;
            };
            let slot = self.slot(
                buckets[chosen / FLOW_BUCKET_WAYS],
                chosen % FLOW_BUCKET_WAYS,
            );
            // SAFETY: a slot of the table.
            if unsafe { write_slot(slot, seq, key, entry) } {
                return true;
            }
        }
        false
    }

    /// Empties the slot that holds `key`, if one does and no one wrote it since it was found.
    pub fn remove(&self, key: &FlowKey<A>) -> bool {
        for bucket in self.buckets_of(key) {
            for way in 0..FLOW_BUCKET_WAYS {
                let Some(read) = self.read(bucket, way) else {
                    continue;
                };
                if read.entry.last_seen_ns != 0 && read.key == *key {
                    // SAFETY: a slot of the table.
                    return unsafe {
                        write_slot(
                            self.slot(bucket, way),
                            read.seq,
                            &FlowKey::default(),
                            &FlowEntry::default(),
                        )
                    };
                }
            }
        }
        false
    }
}

const _: () = {
    assert!(size_of::<FlowKey>().is_multiple_of(8) && align_of::<FlowKey>() == 8);
    assert!(size_of::<FlowKey<crate::Ipv6Bytes>>().is_multiple_of(8));
    assert!(size_of::<FlowEntry>() == 24 && align_of::<FlowEntry>() == 8);
    assert!(size_of::<FlowSlot>() == 48);
    assert!(size_of::<FlowSlot<crate::Ipv6Bytes>>() == 72);
    assert!(size_of::<FlowBucket>() == 192);
    assert!(size_of::<FlowBucket6>() == 288);
    assert!(bucket_count(crate::DEFAULT_FLOW_TABLE_SIZE) == 131_072);
};

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::flow::FlowState;

    fn settings() -> Settings {
        Settings::with_timeouts(900, 120, 300, 0)
    }

    fn entry(last_seen_ns: u64, state: FlowState, flags: u8) -> FlowEntry {
        FlowEntry {
            last_seen_ns,
            real_server_id: 1,
            generation: 1,
            state: state as u8,
            flags,
            ..FlowEntry::default()
        }
    }

    const NOW: u64 = 10_000_000_000_000;

    #[test]
    fn a_table_has_two_slots_for_each_connection_in_a_power_of_two_of_buckets() {
        assert_eq!(bucket_count(1024), 512);
        assert_eq!(bucket_count(1000), 512);
        assert_eq!(bucket_count(1 << 26), 1 << 25);
        assert_eq!(bucket_count(0), 1);
    }

    #[test]
    fn empty_and_expired_slots_are_free() {
        let s = settings();
        assert_eq!(occupant(&FlowEntry::default(), NOW, &s), Occupant::Free);
        let old = entry(NOW - 11_000_000_000, FlowState::Close, 0);
        assert_eq!(occupant(&old, NOW, &s), Occupant::Free, "CLOSE lasts 10 s");
        let live = entry(NOW - 1, FlowState::Established, 0);
        assert!(matches!(occupant(&live, NOW, &s), Occupant::Live { .. }));
    }

    const SEEN_TWO: u8 = 1 << crate::flow::FLOW_SEEN_SHIFT;
    const SEEN_MANY: u8 = crate::flow::FLOW_SEEN_MAX << crate::flow::FLOW_SEEN_SHIFT;

    #[test]
    fn a_connection_that_sent_more_packets_is_worth_more() {
        let s = settings();
        let keep = |e: &FlowEntry| match occupant(e, NOW, &s) {
            Occupant::Live { keep } => keep,
            Occupant::Free => panic!("live"),
        };
        let old_busy = entry(NOW - 800_000_000_000, FlowState::Established, SEEN_MANY);
        let fresh_two = entry(NOW, FlowState::Established, SEEN_TWO);
        let fresh_syn = entry(NOW, FlowState::SynRecv, 0);
        let older_syn = entry(NOW - 1, FlowState::SynRecv, 0);
        assert!(keep(&old_busy) > keep(&fresh_two));
        assert!(keep(&fresh_two) > keep(&fresh_syn));
        assert!(keep(&fresh_syn) > keep(&older_syn));
        let persistent = entry(NOW, FlowState::SynRecv, crate::flow::FLOW_PERSISTENT);
        assert_eq!(
            keep(&persistent),
            keep(&fresh_syn),
            "persistence is not a packet"
        );
    }

    fn choose(slots: &[(bool, Occupant); 8]) -> u32 {
        let mut choice = SlotChoice::new();
        for (i, (same, occupant)) in slots.iter().enumerate() {
            choice.consider(i / FLOW_BUCKET_WAYS, i % FLOW_BUCKET_WAYS, *same, *occupant);
        }
        choice.chosen()
    }

    const FREE: (bool, Occupant) = (false, Occupant::Free);
    const fn live(keep: u64) -> (bool, Occupant) {
        (false, Occupant::Live { keep })
    }

    #[test]
    fn a_connection_scheduled_again_keeps_its_slot() {
        let mut slots = [live(5); 8];
        slots[6] = (true, Occupant::Live { keep: 9 });
        slots[1] = FREE;
        assert_eq!(choose(&slots), 6);
    }

    #[test]
    fn a_new_connection_goes_to_the_emptier_bucket() {
        assert_eq!(choose(&[FREE; 8]), 0, "the first bucket on a tie");
        let slots = [live(1), FREE, FREE, FREE, live(1), live(1), FREE, FREE];
        assert_eq!(choose(&slots), 1);
        let slots = [live(1), live(1), FREE, FREE, live(1), FREE, FREE, FREE];
        assert_eq!(choose(&slots), 5);
        let slots = [
            live(1),
            live(1),
            live(1),
            live(1),
            live(1),
            live(1),
            live(1),
            FREE,
        ];
        assert_eq!(
            choose(&slots),
            7,
            "the only free slot, though its bucket is fuller"
        );
    }

    #[test]
    fn with_both_buckets_full_the_least_worth_keeping_goes() {
        let slots = [
            live(8),
            live(7),
            live(6),
            live(9),
            live(10),
            live(3),
            live(4),
            live(5),
        ];
        assert_eq!(choose(&slots), 5);
    }

    #[test]
    fn the_two_buckets_come_from_both_halves_of_the_hash() {
        let key = FlowKey {
            src_addr: [10, 0, 0, 1],
            dst_addr: [10, 0, 0, 100],
            src_port: 40000u16.to_be_bytes(),
            dst_port: 80u16.to_be_bytes(),
            protocol: 6,
            _pad: [0; 3],
        };
        let hash = flow_hash(&key, 7);
        assert_ne!(hash, flow_hash(&key, 8), "the seed matters");
        let [a, b] = buckets_of(hash, 1023);
        assert!(a < 1024 && b < 1024);
        assert_eq!(a, hash as u32 & 1023);
        assert_eq!(b, (hash >> 32) as u32 & 1023);
    }

    #[test]
    fn neighbouring_clients_spread_over_the_buckets() {
        // 4,096 clients of one /20, even ports only, as Linux picks them, over 1,024 buckets:
        // spread as by chance (four a bucket on average; by chance about 19 buckets get none
        // and the fullest gets 11 or 12), not in clusters.
        let mut load = [0u32; 1024];
        for n in 0..4096u32 {
            let key = FlowKey {
                src_addr: [10, 1, (n >> 8) as u8 & 0x0f, n as u8],
                dst_addr: [10, 0, 0, 100],
                src_port: (32768 + 2 * (n as u16 % 64)).to_be_bytes(),
                dst_port: 80u16.to_be_bytes(),
                protocol: 6,
                _pad: [0; 3],
            };
            load[buckets_of(flow_hash(&key, 1), 1023)[0] as usize] += 1;
        }
        let empty = load.iter().filter(|&&l| l == 0).count();
        let fullest = load.iter().max().copied().unwrap_or(0);
        assert!(
            empty <= 40 && fullest <= 14,
            "{empty} empty, fullest {fullest}"
        );
    }

    fn client(n: u16) -> FlowKey {
        FlowKey {
            src_addr: [192, 0, 2, n as u8],
            dst_addr: [10, 0, 0, 100],
            src_port: n.to_be_bytes(),
            dst_port: 80u16.to_be_bytes(),
            protocol: 6,
            _pad: [0; 3],
        }
    }

    fn read_all(table: &SharedTable<crate::Ipv4Bytes>) -> std::vec::Vec<(FlowKey, FlowEntry)> {
        let mut all = std::vec::Vec::new();
        let next = table.read_from(0, usize::MAX, |k, e| all.push((k, e)));
        assert_eq!(next, None, "read to the end");
        all
    }

    #[test]
    fn a_shared_table_places_finds_replaces_and_removes_connections() {
        let mut buckets = [FlowBucket::default(); 8];
        // SAFETY: a local array of eight buckets, alive as long as the view.
        let table = unsafe { SharedTable::new(buckets.as_mut_ptr(), 8, 42) };
        let s = settings();
        for n in 0..20 {
            assert!(table.insert(&client(n), &entry(NOW, FlowState::Established, 0), NOW, &s));
        }
        assert_eq!(read_all(&table).len(), 20, "20 connections in 32 slots");
        // The same connection again takes its own slot, not a second one.
        let again = entry(NOW, FlowState::FinWait, SEEN_TWO);
        assert!(table.insert(&client(3), &again, NOW, &s));
        let all = read_all(&table);
        assert_eq!(all.len(), 20);
        assert_eq!(all.iter().filter(|(k, _)| *k == client(3)).count(), 1);
        assert!(all.contains(&(client(3), again)));
        // Each sits in one of its two buckets.
        for (key, _) in &all {
            let [a, b] = buckets_of(flow_hash(key, 42), 7);
            let holds = |i: u32| {
                buckets[i as usize]
                    .slots
                    .iter()
                    .any(|slot| slot.key == *key)
            };
            assert!(holds(a) || holds(b));
        }
        assert!(table.remove(&client(3)));
        assert!(!table.remove(&client(3)), "gone");
        assert_eq!(read_all(&table).len(), 19);
        let (mut from, mut slices) = (Some(0), 0);
        while let Some(bucket) = from {
            from = table.read_from(bucket, 1, |_, _| {});
            slices += 1;
        }
        assert!(slices >= 2, "read a bucket or more at a time");
    }

    #[test]
    fn a_full_table_gives_up_connections_that_sent_fewer_packets_first() {
        let mut buckets = [FlowBucket::default(); 2];
        // SAFETY: a local array of two buckets, alive as long as the view.
        let table = unsafe { SharedTable::new(buckets.as_mut_ptr(), 2, 1) };
        let s = settings();
        // Two busy connections, then a flood of one-packet ones: the flood turns over its
        // own slots.
        for n in 0..2 {
            let busy = entry(NOW - 100, FlowState::Established, SEEN_MANY);
            assert!(table.insert(&client(n), &busy, NOW, &s));
        }
        for n in 100..140 {
            assert!(table.insert(&client(n), &entry(NOW, FlowState::SynRecv, 0), NOW, &s));
        }
        let all = read_all(&table);
        assert_eq!(all.len(), 8, "a table of eight slots, full");
        let kept = all
            .iter()
            .filter(|(k, _)| u16::from_be_bytes(k.src_port) < 2);
        assert_eq!(kept.count(), 2, "both busy connections stayed: {all:?}");
        let newest = all.iter().any(|(k, _)| *k == client(139));
        assert!(newest, "the last connection has a place");
    }

    #[test]
    fn a_slot_is_read_whole_and_written_under_its_sequence_word() {
        let mut slot = FlowSlot::<crate::Ipv4Bytes>::default();
        // SAFETY: a local slot.
        unsafe {
            let empty = read_slot(&slot).expect("no writer");
            assert_eq!(
                (empty.seq, empty.entry.last_seen_ns),
                (0, 0),
                "an empty slot"
            );
            let key = FlowKey {
                protocol: 17,
                ..FlowKey::default()
            };
            let e = entry(NOW, FlowState::Udp, 0);
            assert!(write_slot(&mut slot, 0, &key, &e));
            assert_eq!(slot.seq, 2);
            assert_eq!(
                read_slot(&slot),
                Some(SlotRead {
                    seq: 2,
                    key,
                    entry: e
                })
            );
            assert!(
                !write_slot(&mut slot, 0, &key, &e),
                "written since it was read"
            );
            slot.seq = 3;
            assert_eq!(read_slot(&slot), None, "a writer is in it");
            assert!(!write_slot(&mut slot, 3, &key, &e), "and keeps it");
            assert_eq!(slot.seq, 3);
        }
    }
}
