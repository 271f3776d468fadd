//! The flow hash, shared so that the controller and tests can predict the data plane's choice.
//!
//! Linux picks client source ports of one parity, and addresses in a lab differ in a few low
//! bits, so a weak hash modulo a table size clusters badly. Each word is mixed in the way of
//! murmur3's body and the result goes through murmur3's finaliser (`fmix32`), which spreads a
//! one-bit change of input over the whole output.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Seed of the flow hash. Any constant works; it only has to be the same everywhere.
pub const FLOW_SEED: u32 = 0x1f5a_c0de;

#[inline(always)]
const fn mix_word(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// murmur3's 32-bit finaliser.
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hashes a flow's 5-tuple. Addresses and ports are wire bytes, as in the packet.
#[inline(always)]
pub const fn flow_hash(
    src_addr: [u8; 4],
    dst_addr: [u8; 4],
    src_port: [u8; 2],
    dst_port: [u8; 2],
    protocol: u8,
) -> u32 {
    let ports = u32::from_be_bytes([src_port[0], src_port[1], dst_port[0], dst_port[1]]);
    let mut h = FLOW_SEED;
    h = mix_word(h, u32::from_be_bytes(src_addr));
    h = mix_word(h, u32::from_be_bytes(dst_addr));
    h = mix_word(h, ports);
    h = mix_word(h, protocol as u32);
    fmix32(h ^ 13)
}

/// Hashes arbitrary bytes with a seed (murmur3-32). Used by the controller to derive each real
/// server's Maglev permutation from its address, so every director computes the same table.
pub fn bytes_hash(bytes: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(4);
    for chunk in &mut chunks {
        h = mix_word(
            h,
            u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        let k = u32::from_le_bytes(tail)
            .wrapping_mul(C1)
            .rotate_left(15)
            .wrapping_mul(C2);
        h ^= k;
    }
    fmix32(h ^ bytes.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_reference_values() {
        // Reference outputs of MurmurHash3_x86_32 (the published algorithm).
        assert_eq!(bytes_hash(b"", 0), 0);
        assert_eq!(bytes_hash(b"", 1), 0x514e_28b7);
        assert_eq!(bytes_hash(b"hello", 0), 0x248b_fa47);
        assert_eq!(bytes_hash(b"Hello, world!", 1234), 0xfaf6_cdb3);
    }

    #[test]
    fn flow_hash_depends_on_every_field() {
        let base = flow_hash([10, 0, 0, 1], [10, 0, 0, 100], [0x9c, 0x40], [0, 80], 6);
        assert_ne!(
            base,
            flow_hash([10, 0, 0, 2], [10, 0, 0, 100], [0x9c, 0x40], [0, 80], 6)
        );
        assert_ne!(
            base,
            flow_hash([10, 0, 0, 1], [10, 0, 0, 101], [0x9c, 0x40], [0, 80], 6)
        );
        assert_ne!(
            base,
            flow_hash([10, 0, 0, 1], [10, 0, 0, 100], [0x9c, 0x42], [0, 80], 6)
        );
        assert_ne!(
            base,
            flow_hash([10, 0, 0, 1], [10, 0, 0, 100], [0x9c, 0x40], [0, 81], 6)
        );
        assert_ne!(
            base,
            flow_hash([10, 0, 0, 1], [10, 0, 0, 100], [0x9c, 0x40], [0, 80], 17)
        );
    }

    #[test]
    fn even_source_ports_spread_evenly_over_a_small_table() {
        // Linux hands out source ports of one parity; a table of 4 must still be used evenly.
        let mut buckets = [0u32; 4];
        for port in (32768u16..32768 + 8000).step_by(2) {
            let h = flow_hash(
                [10, 0, 0, 1],
                [10, 0, 0, 100],
                port.to_be_bytes(),
                [0, 80],
                6,
            );
            buckets[(h % 4) as usize] += 1;
        }
        for count in buckets {
            assert!((900..=1100).contains(&count), "uneven buckets: {buckets:?}");
        }
    }
}
