//! The data plane's side of the flow table: finding a frame's connection in its two buckets,
//! and placing a new one. `lvs_common::flow_table` has the rules both sides keep.
//!
//! Slots are read and compared a word at a time with volatile loads: in this order the loads
//! reach memory as written (x86 keeps loads in order, so the sequence word read before and
//! after a copy brackets it), and LLVM cannot merge them into calls to byte-wise memcpy or
//! memcmp subprograms.

use core::ptr::{addr_of, addr_of_mut, read_volatile};

use lvs_common::{
    flow::{FlowEntry, FlowKey, Settings},
    flow_table::{FLOW_BUCKET_WAYS, FlowSlot, SlotChoice, buckets_of, flow_hash, occupant},
};

use crate::family::Family;

/// A connection found in the table: its slot, for the in-place updates of its stamp and
/// state, and its entry as it was read whole.
pub struct Found<A> {
    pub slot: *mut FlowSlot<A>,
    pub entry: FlowEntry,
}

/// The two buckets of a frame's connection.
#[inline(always)]
pub fn buckets<A>(key: &FlowKey<A>, settings: &Settings) -> [u32; 2] {
    buckets_of(
        flow_hash(key, settings.flow_hash_seed),
        settings.flow_table_mask,
    )
}

/// The connection of `key`, if one of its buckets holds it whole.
///
/// Both buckets are looked at way by way, the first way of each before the second of
/// either: a bucket's first way starts its first cache line, most connections sit in the
/// first way of one of their buckets (a bucket holds one or two live connections on average
/// while the table is within its size), and the two first lines are independent loads the
/// CPU fetches together, where a whole first bucket (three lines) would come before the
/// second.
#[inline(always)]
pub fn find<A: Family>(key: &FlowKey<A>, buckets: [u32; 2]) -> Option<Found<A>> {
    let first = A::flows().get_ptr_mut(buckets[0])?;
    let second = A::flows().get_ptr_mut(buckets[1])?;
    for way in 0..FLOW_BUCKET_WAYS {
        for choice in 0..2 {
            let bucket = if choice == 0 { first } else { second };
            // SAFETY: the bucket is an element of the array, and way < its ways.
            let slot = unsafe { addr_of_mut!((*bucket).slots[way]) };
            // SAFETY: as above.
            let before = unsafe { read_volatile(addr_of!((*slot).seq)) };
            if !holds(slot, key) {
                continue;
            }
            let entry = read_entry(slot);
            // SAFETY: as above.
            let after = unsafe { read_volatile(addr_of!((*slot).seq)) };
            if before & 1 == 0 && before == after {
                return Some(Found { slot, entry });
            }
            // A writer was in the slot: what it leaves there is not known yet, and the frame
            // is scheduled as a new connection's.
            return None;
        }
    }
    None
}

/// Records a new connection (or one scheduled anew) in the slot `SlotChoice` names among its
/// two buckets. When another CPU is writing that slot at the same moment, the connection is
/// not recorded: the frame is still forwarded, and the next one is scheduled again.
#[inline(always)]
pub fn record<A: Family>(
    key: &FlowKey<A>,
    entry: &FlowEntry,
    buckets: [u32; 2],
    now: u64,
    settings: &Settings,
) {
    let (Some(first), Some(second)) = (
        A::flows().get_ptr_mut(buckets[0]),
        A::flows().get_ptr_mut(buckets[1]),
    ) else {
        return;
    };
    let mut choice = SlotChoice::new();
    for c in 0..2 {
        let bucket = if c == 0 { first } else { second };
        for way in 0..FLOW_BUCKET_WAYS {
            // SAFETY: as in `find`.
            let slot = unsafe { addr_of_mut!((*bucket).slots[way]) };
            // Not checked against the sequence word: a torn entry only makes a worse choice.
            let occupant = occupant(&read_entry(slot), now, settings);
            choice.consider(c, way, holds(slot, key), occupant);
        }
    }
    let chosen = choice.chosen() as usize;
    let bucket = if chosen < FLOW_BUCKET_WAYS {
        first
    } else {
        second
    };
    // SAFETY: the bucket is an element of the array, and the way is masked below its ways.
    let slot = unsafe { addr_of_mut!((*bucket).slots[chosen & (FLOW_BUCKET_WAYS - 1)]) };
    write_slot(slot, key, entry);
}

/// Writes a slot whole under its sequence word (`lvs_common::flow_table`'s rule): from even
/// to odd with a compare-and-swap, the key and the entry, then on to even. When the word is
/// odd, or moves under the swap, another writer holds the slot and keeps it.
#[inline(always)]
fn write_slot<A>(slot: *mut FlowSlot<A>, key: &FlowKey<A>, entry: &FlowEntry) {
    use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg, atomic_xadd};
    // SAFETY: the slot is an element of the flow table, its sequence word aligned to 8; the
    // key and the entry are whole words (asserted in lvs-common), written while the word is
    // odd, which keeps every other writer out and tells readers to throw their copy away.
    unsafe {
        let seq = addr_of_mut!((*slot).seq);
        let before = read_volatile(seq);
        if before & 1 != 0 {
            return;
        }
        let (_, swapped) = atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(seq, before, before + 1);
        if !swapped {
            return;
        }
        let words = size_of::<FlowKey<A>>() / 8;
        let theirs = addr_of_mut!((*slot).key).cast::<u64>();
        let ours = core::ptr::from_ref(key).cast::<u64>();
        for i in 0..words {
            core::ptr::write_volatile(theirs.add(i), *ours.add(i));
        }
        let at = addr_of_mut!((*slot).entry).cast::<u64>();
        let value = core::ptr::from_ref(entry).cast::<u64>();
        for i in 0..3 {
            core::ptr::write_volatile(at.add(i), *value.add(i));
        }
        atomic_xadd::<u64, u64, { SeqCst }>(seq, 1);
    }
}

/// Whether `slot` holds `key`, compared a word at a time.
#[inline(always)]
fn holds<A>(slot: *const FlowSlot<A>, key: &FlowKey<A>) -> bool {
    let words = size_of::<FlowKey<A>>() / 8;
    // SAFETY: both keys are aligned to 8 and a whole number of words (asserted in
    // lvs-common), the slot's in the map's memory and the other on the stack.
    unsafe {
        let theirs = addr_of!((*slot).key).cast::<u64>();
        let ours = core::ptr::from_ref(key).cast::<u64>();
        for i in 0..words {
            if read_volatile(theirs.add(i)) != *ours.add(i) {
                return false;
            }
        }
    }
    true
}

/// A slot's entry, read as its three words.
#[inline(always)]
fn read_entry<A>(slot: *const FlowSlot<A>) -> FlowEntry {
    // SAFETY: the entry is 8-byte aligned and three words long (asserted in lvs-common), and
    // any three words are a valid `FlowEntry`.
    unsafe {
        let at = addr_of!((*slot).entry).cast::<u64>();
        core::mem::transmute::<[u64; 3], FlowEntry>([
            read_volatile(at),
            read_volatile(at.add(1)),
            read_volatile(at.add(2)),
        ])
    }
}
