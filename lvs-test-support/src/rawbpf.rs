//! Small XDP programs written as raw BPF instructions and loaded with bpf(2): the live-frames
//! traffic generator (of `cargo xtask bench live` and the flood test), the bench's floor (a
//! MAC swap) and receiver (a drop); and the few bpf(2) calls around them (attach, a live-frames
//! run, reading and filling another process's maps). They are measuring instruments, so they
//! stay out of the production object; each is a few instructions, which is less to trust than
//! a second eBPF build.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context as _, Result, bail, ensure};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native (driver) mode, or fail.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (kernel 5.18+): frames the program returns XDP_TX for are
/// really sent, out of the interface named in the context.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_TX: i32 = 3;

/// Helper numbers from `enum bpf_func_id`.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_MAP_UPDATE_ELEM: i32 = 2;
const HELPER_GET_PRANDOM_U32: i32 = 7;

/// `struct bpf_insn`; destination register in the low nibble of `regs`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// Registers by number, as the BPF calling convention names them.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// The few instruction forms the programs use (opcode values from include/uapi/linux/bpf.h).
fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
fn mov(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}
fn add(dst: u8, src: u8) -> Insn {
    insn(0x0f, dst, src, 0, 0)
}
fn xor_imm(dst: u8, imm: i32) -> Insn {
    insn(0xa7, dst, 0, 0, imm)
}
fn and_imm(dst: u8, imm: i32) -> Insn {
    insn(0x57, dst, 0, 0, imm)
}
fn rsh_imm(dst: u8, imm: i32) -> Insn {
    insn(0x77, dst, 0, 0, imm)
}
/// 32-bit multiply: the product's low 32 bits, zero-extended.
fn mul32_imm(dst: u8, imm: i32) -> Insn {
    insn(0x24, dst, 0, 0, imm)
}
/// To big endian (network order), of the low `bits` bits.
fn to_be(dst: u8, bits: i32) -> Insn {
    insn(0xdc, dst, 0, 0, bits)
}
fn load32(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
fn load16(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x69, dst, src, off, 0)
}
fn load64(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x79, dst, src, off, 0)
}
fn store16(dst: u8, off: i16, src: u8) -> Insn {
    insn(0x6b, dst, src, off, 0)
}
fn load8(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x71, dst, src, off, 0)
}
fn store32(dst: u8, off: i16, src: u8) -> Insn {
    insn(0x63, dst, src, off, 0)
}
fn store64(dst: u8, off: i16, src: u8) -> Insn {
    insn(0x7b, dst, src, off, 0)
}
fn store16_imm(dst: u8, off: i16, imm: i32) -> Insn {
    insn(0x6a, dst, 0, off, imm)
}
fn store32_imm(dst: u8, off: i16, imm: i32) -> Insn {
    insn(0x62, dst, 0, off, imm)
}
/// `if dst > src goto +off`.
fn jgt(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x2d, dst, src, off, 0)
}
/// `if dst != imm goto +off`.
fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}
/// `if dst == imm goto +off`.
fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm)
}
/// `if dst < imm goto +off` (unsigned).
fn jlt_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0xa5, dst, 0, off, imm)
}
fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}
/// `dst = map` (two instructions: a 64-bit immediate naming a map by its fd).
fn load_map(dst: u8, map: &OwnedFd) -> [Insn; 2] {
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    [
        insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()),
        insn(0, 0, 0, 0, 0),
    ]
}

/// bpf(2) with `attr`, which must be the attribute struct of `command`.
///
/// # Safety
/// Every pointer in `attr` must be valid for the kernel to read (and, where the command
/// writes, to write) for the length given with it.
unsafe fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; the kernel reads at most `size_of::<T>()` bytes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            size_of::<T>() as libc::c_uint,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// # Safety
/// `fd` must be a new file descriptor that nothing else owns.
unsafe fn owned(fd: libc::c_long) -> Result<OwnedFd> {
    let fd = i32::try_from(fd)?;
    // SAFETY: as the caller vouches.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// A per-CPU array of one u64, zeroed: the generator's packet counter.
pub fn per_cpu_counter() -> Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
    };
    // SAFETY: BPF_MAP_CREATE's attribute, no pointers.
    let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.context("creating the counter map")?;
    // SAFETY: a new map fd.
    unsafe { owned(fd) }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Loads an XDP program; on refusal the error carries the verifier's log.
pub fn load_xdp(name: &str, insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    let bytes = name.as_bytes();
    prog_name[..bytes.len().min(15)].copy_from_slice(&bytes[..bytes.len().min(15)]);
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len())?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len())?,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        ..Default::default()
    };
    // SAFETY: `insns`, `license` and `log` outlive the call, with the lengths given.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: a new program fd.
        Ok(fd) => unsafe { owned(fd) },
        Err(error) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "loading the XDP program {name}: {error}\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        }
    }
}

/// `r0 = verdict; exit`: an XDP program that only returns its verdict, the floor any XDP
/// program pays (the benchmarks' empty program).
pub fn verdict_only(verdict: i32) -> Vec<Insn> {
    vec![mov_imm(R0, verdict), exit()]
}

/// The floor: swaps the Ethernet addresses and sends the frame back (XDP_TX), which is all a
/// direct-routing director must do at the least. Frames shorter than a header are passed.
pub fn mac_swap() -> Vec<Insn> {
    let mut p = vec![
        load32(R2, R1, 0), // data
        load32(R3, R1, 4), // data_end
        mov(R4, R2),
        add_imm(R4, 14),
        jgt(R4, R3, 14), // -> pass
    ];
    p.extend(swap_macs(R2));
    p.extend([mov_imm(R0, XDP_TX), exit(), mov_imm(R0, XDP_PASS), exit()]);
    p
}

/// Swaps the Ethernet destination and source of the frame that register `data` points at
/// (bounds already checked for 12 bytes), two bytes at a time through R4 and R5.
fn swap_macs(data: u8) -> Vec<Insn> {
    let mut p = Vec::new();
    for word in [0i16, 2, 4] {
        p.extend([
            load16(R4, data, word),
            load16(R5, data, 6 + word),
            store16(data, word, R5),
            store16(data, 6 + word, R4),
        ]);
    }
    p
}

/// The IP version of the frames a flow-table floor reads, and so of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    /// The size of the director's flow key: `FlowKey` (16 bytes) or `FlowKey6` (40 bytes).
    pub fn flow_key_size(self) -> usize {
        match self {
            IpVersion::V4 => 16,
            IpVersion::V6 => 40,
        }
    }
}

/// The value of an entry in a `flow_table`: a `FlowEntry`'s size, zeroed.
pub const FLOW_ENTRY_SIZE: usize = 24;

/// An LRU hash map of the director's connections of one IP version, as its flow table was
/// before it became an array of buckets: keys of the version's `FlowKey`, 24-byte values (a
/// `FlowEntry`), `max_entries` of them.
pub fn flow_table(version: IpVersion, max_entries: u32) -> Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_LRU_HASH,
        key_size: version.flow_key_size() as u32,
        value_size: FLOW_ENTRY_SIZE as u32,
        max_entries,
        map_flags: 0,
    };
    // SAFETY: BPF_MAP_CREATE's attribute, no pointers.
    let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.context("creating the flow table")?;
    // SAFETY: a new map fd.
    unsafe { owned(fd) }
}

/// The flow-table floor: `mac_swap` after looking the frame's 5-tuple up in `flows` (a
/// `flow_table` of the same version), inserting a zeroed entry when it is not there. This is
/// the least any DR director that keeps its connections in the kernel's LRU hash map does
/// per frame: it tells what the flow table alone costs, apart from everything else lvs does.
/// IPv4 without options or IPv6 without extension headers, then UDP or TCP, as the
/// generator and the benches send; the key is laid out as `FlowKey` or `FlowKey6` (source
/// and destination address, source and destination port, protocol, zero padding).
pub fn mac_swap_with_flow_lookup(flows: &OwnedFd, version: IpVersion) -> Vec<Insn> {
    // The frame's offsets: the addresses (source then destination, as in the key), the ports
    // just after the IP header (source then destination, as in the key), the protocol.
    let (addresses, ports, protocol) = match version {
        IpVersion::V4 => (
            IP as i16 + 12..IP as i16 + 20,
            IP as i16 + 20,
            IP as i16 + 9,
        ),
        IpVersion::V6 => (IP as i16 + 8..IP as i16 + 40, IP as i16 + 40, IP as i16 + 6),
    };
    let key = -(version.flow_key_size() as i16);
    let value = key - FLOW_ENTRY_SIZE as i16;
    let lookup_or_insert = {
        // The key, from the frame's addresses, ports and protocol, a word at a time.
        let mut p = Vec::new();
        for (at, from) in addresses.clone().step_by(4).enumerate() {
            p.extend([load32(R4, R6, from), store32(R10, key + 4 * at as i16, R4)]);
        }
        let after_addresses = key + (addresses.end - addresses.start);
        p.extend([
            load32(R4, R6, ports),
            store32(R10, after_addresses, R4),
            load8(R4, R6, protocol),
            store32(R10, after_addresses + 4, R4),
        ]);
        p.extend(load_map(R1, flows));
        p.extend([
            mov(R2, R10),
            add_imm(R2, i32::from(key)),
            call(HELPER_MAP_LOOKUP_ELEM),
        ]);
        let mut insert = vec![
            mov_imm(R4, 0),
            store64(R10, value, R4),
            store64(R10, value + 8, R4),
            store64(R10, value + 16, R4),
        ];
        insert.extend(load_map(R1, flows));
        insert.extend([
            mov(R2, R10),
            add_imm(R2, i32::from(key)),
            mov(R3, R10),
            add_imm(R3, i32::from(value)),
            mov_imm(R4, 0),
            call(HELPER_MAP_UPDATE_ELEM),
        ]);
        p.push(jne_imm(R0, 0, insert.len() as i16));
        p.extend(insert);
        p
    };
    let mut swap = swap_macs(R6);
    swap.extend([mov_imm(R0, XDP_TX), exit()]);
    // The frame's start in R6, which helper calls leave alone.
    let mut p = vec![
        load32(R6, R1, 0), // data
        load32(R3, R1, 4), // data_end
        mov(R4, R6),
        // Up to the end of the ports, and the rest of a UDP header.
        add_imm(R4, i32::from(ports) + 8),
        jgt(R4, R3, (lookup_or_insert.len() + swap.len()) as i16), // -> pass
    ];
    p.extend(lookup_or_insert);
    p.extend(swap);
    p.extend([mov_imm(R0, XDP_PASS), exit()]);
    p
}

/// The receiver: drops every frame (the veth counts it as an XDP packet and nothing more),
/// except ARP, which it passes so that the generator's side answers the director's requests.
pub fn receiver() -> Vec<Insn> {
    const ETH_P_ARP_ON_THE_WIRE: i32 = u16::from_ne_bytes(0x0806u16.to_be_bytes()) as i32;
    vec![
        load32(R2, R1, 0), // data
        load32(R3, R1, 4), // data_end
        mov(R4, R2),
        add_imm(R4, 14),
        jgt(R4, R3, 4), // -> the second drop
        load16(R4, R2, 12),
        jeq_imm(R4, ETH_P_ARP_ON_THE_WIRE, 4), // -> pass
        mov_imm(R0, XDP_DROP),
        exit(),
        // A frame shorter than an Ethernet header lands here and is dropped too.
        mov_imm(R0, XDP_DROP),
        exit(),
        mov_imm(R0, XDP_PASS),
        exit(),
    ]
}

/// Which source each generated frame gets.
#[derive(Clone, Copy, Debug)]
pub enum Sources {
    /// Flow `n % count` of a fixed set: established flows once each has been seen.
    Cycle { count: u32 },
    /// A random source address and port per frame: a flood of new flows.
    Random,
    /// Each source twice in a row, then a new one (scattered over the 2^32 sources by a
    /// multiplication): a flood of new flows that send two packets each.
    Pairs,
}

/// The client address and port of generated flow `n` (network byte order), as the generator
/// writes them: 198.18.0.0 + (n & 0xffff), port 1024 + (n >> 16).
pub fn flow_source(n: u32) -> ([u8; 4], [u8; 2]) {
    let address = SOURCE_BASE.wrapping_add(n & 0xffff).to_be_bytes();
    let port = (1024u32 + (n >> 16)) as u16;
    (address, port.to_be_bytes())
}

/// Offsets in the generator's frame: Ethernet (14), then IPv4 without options (20), then the
/// TCP or UDP header, whose source port comes first in both.
const IP: usize = 14;
const SRC_ADDR: i16 = IP as i16 + 12;
const IP_CHECKSUM: i16 = IP as i16 + 10;
const SRC_PORT: i16 = IP as i16 + 20;
const TCP_CHECKSUM: i16 = SRC_PORT + 16;
/// Flow n comes from 198.18.(n & 0xffff) port 1024 + (n >> 16): up to 4M distinct flows.
const SOURCE_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);

/// One's complement sum of big-endian 16-bit words, folded to 16 bits.
fn ones_sum(bytes: &[u8]) -> u32 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The checksums of `frame` (Ethernet, IPv4 without options, TCP or UDP) with the generator's
/// source fields zeroed: the sums the generator adds the source address's low word (and, for
/// TCP, the source port) to, so that every frame it sends carries right checksums.
struct ChecksumBases {
    ip: u32,
    /// TCP's, over the pseudo-header and the segment; UDP frames go without a checksum.
    tcp: Option<u32>,
}

fn checksum_bases(frame: &[u8]) -> Result<ChecksumBases> {
    ensure!(
        frame.len() >= IP + 20 && frame[12..14] == [0x08, 0x00] && frame[IP] == 0x45,
        "the generator's frame is Ethernet and IPv4 without options"
    );
    let ip_len = usize::from(u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]));
    ensure!(
        (IP + 28..=frame.len()).contains(&(IP + ip_len)),
        "the generator's frame holds its IP packet"
    );
    let mut packet = frame[IP..IP + ip_len].to_vec();
    packet[10..12].fill(0);
    packet[12..16].copy_from_slice(&SOURCE_BASE.to_be_bytes());
    packet[20..22].fill(0);
    let ip = ones_sum(&packet[..20]);
    let tcp = match packet[9] {
        6 => {
            ensure!(
                ip_len >= 40,
                "the generator's TCP frame holds a whole header"
            );
            packet[36..38].fill(0);
            let mut pseudo = packet[12..20].to_vec();
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&u16::try_from(ip_len - 20)?.to_be_bytes());
            pseudo.extend_from_slice(&packet[20..]);
            Some(ones_sum(&pseudo))
        }
        17 => {
            ensure!(
                packet[26..28] == [0, 0],
                "the generator's UDP frame goes without a checksum (0)"
            );
            None
        }
        other => bail!("the generator sends TCP or UDP, not protocol {other}"),
    };
    Ok(ChecksumBases { ip, tcp })
}

/// Folds the sum in `dst` (at most 17 bits) to 16, with `scratch` as a scratch register.
fn fold(dst: u8, scratch: u8) -> [Insn; 4] {
    [
        mov(scratch, dst),
        rsh_imm(scratch, 16),
        and_imm(dst, 0xffff),
        add(dst, scratch),
    ]
}

/// The generator's flow number from `counter` (a per-CPU u64) into R8, and the next one into
/// R9, for the caller to store through R0 (the counter's value). The lookup's null check is a
/// jump whose offset `generator` patches to its end.
fn next_flow_number(counter: &OwnedFd) -> Vec<Insn> {
    let mut insns = vec![store32_imm(R10, -4, 0), mov(R2, R10), add_imm(R2, -4)];
    insns.extend(load_map(R1, counter));
    insns.extend([
        call(HELPER_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, 0), // patched by `generator` -> its end
        load64(R8, R0, 0),
        mov(R9, R8),
        add_imm(R9, 1),
    ]);
    insns
}

/// The generator: run in live-frames mode, it writes the headers of `frame` (Ethernet, IPv4
/// without options, a TCP or UDP header: a SYN or a datagram) with a new source address and
/// port and the checksums they are part of, and sends it (XDP_TX). `counter` is a per-CPU u64
/// holding the next flow number.
///
/// Every header byte is written every time: pages are recycled without being restored, and a
/// page comes back as whatever the far side left in it (a director rewrites the MACs, so a
/// recycled frame would otherwise go to the real server's MAC, which a director refuses).
pub fn generator(sources: Sources, counter: &OwnedFd, frame: &[u8]) -> Result<Vec<Insn>> {
    let bases = checksum_bases(frame)?;
    let frame_min = if bases.tcp.is_some() {
        IP as i32 + 40
    } else {
        IP as i32 + 28
    };
    let mut p = vec![
        load32(R7, R1, 0), // data
        load32(R3, R1, 4), // data_end
        mov(R4, R7),
        add_imm(R4, frame_min),
    ];
    let mut body = Vec::new();
    match sources {
        Sources::Cycle { count } => {
            let count = i32::try_from(count).context("flow counts fit an i32")?;
            body.extend(next_flow_number(counter));
            body.extend([jlt_imm(R9, count, 1), mov_imm(R9, 0), store64(R0, 0, R9)]);
        }
        Sources::Random => body.extend([call(HELPER_GET_PRANDOM_U32), mov(R8, R0)]),
        Sources::Pairs => {
            body.extend(next_flow_number(counter));
            body.extend([
                store64(R0, 0, R9),
                // Frames 2k and 2k + 1 get source k times an odd constant (a bijection of
                // the 32-bit sources, so no two pairs share one).
                rsh_imm(R8, 1),
                mul32_imm(R8, 0x9e37_79b1_u32 as i32),
            ]);
        }
    }
    // The template's headers, two bytes at a time (the frame is only 2-byte aligned), as
    // immediates in the byte order of the machine that stores them.
    for at in (0..frame_min as usize).step_by(2) {
        let pair = i32::from(u16::from_ne_bytes([frame[at], frame[at + 1]]));
        body.push(store16_imm(R7, i16::try_from(at)?, pair));
    }
    body.extend([
        // Source address: 198.18.0.0 + (n & 0xffff), in network order, as two 16-bit stores
        // (the frame is only 2-byte aligned at the address).
        mov(R1, R8),
        and_imm(R1, 0xffff),
        add_imm(R1, SOURCE_BASE as i32),
        to_be(R1, 32),
        store16(R7, SRC_ADDR, R1),
        rsh_imm(R1, 16),
        store16(R7, SRC_ADDR + 2, R1),
        // Source port: 1024 + (n >> 16).
        mov(R1, R8),
        rsh_imm(R1, 16),
        add_imm(R1, 1024),
        to_be(R1, 16),
        store16(R7, SRC_PORT, R1),
        // The IPv4 checksum: the base plus the address's low word (n & 0xffff), folded and
        // complemented. The high word (198.18) is in the base.
        mov(R2, R8),
        and_imm(R2, 0xffff),
        mov(R4, R2),
        add_imm(R4, i32::try_from(bases.ip)?),
    ]);
    body.extend(fold(R4, R5));
    body.extend([
        xor_imm(R4, 0xffff),
        to_be(R4, 16),
        store16(R7, IP_CHECKSUM, R4),
    ]);
    if let Some(tcp) = bases.tcp {
        // TCP's covers the address (pseudo-header) and the port too.
        body.extend([
            mov(R3, R8),
            rsh_imm(R3, 16),
            add_imm(R3, 1024),
            and_imm(R3, 0xffff),
            mov(R4, R2),
            add(R4, R3),
            add_imm(R4, i32::try_from(tcp)?),
        ]);
        body.extend(fold(R4, R5));
        body.extend(fold(R4, R5));
        body.extend([
            xor_imm(R4, 0xffff),
            to_be(R4, 16),
            store16(R7, TCP_CHECKSUM, R4),
        ]);
    }
    body.extend([mov_imm(R0, XDP_TX), exit()]);
    let out = i16::try_from(body.len()).context("a short program")?;
    // Patch the map lookup's null check to jump to `out`, just past the body.
    if let Sources::Cycle { .. } | Sources::Pairs = sources {
        let check = body
            .iter()
            .position(|i| i.code == 0x15)
            .context("the null check")?;
        body[check].off = out - i16::try_from(check)? - 1;
    }
    p.push(jgt(R4, R3, out));
    p.extend(body);
    p.extend([mov_imm(R0, XDP_DROP), exit()]);
    Ok(p)
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md`, the context given to a live-frames run.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const _: () = {
    assert!(size_of::<Insn>() == 8);
    assert!(size_of::<ProgLoadAttr>() == 64);
    assert!(size_of::<TestRunAttr>() == 80);
    assert!(size_of::<XdpMd>() == 24);
};

/// Runs `program` `repeat` times in live-frames mode on `frame`, as if received on
/// `if_index` (in the calling thread's network namespace); frames it returns XDP_TX for leave
/// through that interface.
pub fn send_live(program: &OwnedFd, frame: &[u8], repeat: u32, if_index: u32) -> Result<()> {
    let ctx = XdpMd {
        data_end: u32::try_from(frame.len())?,
        ingress_ifindex: if_index,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(program.as_raw_fd())?,
        data_size_in: u32::try_from(frame.len())?,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: u32::try_from(size_of::<XdpMd>())?,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // SAFETY: `frame` and `ctx` outlive the call with the sizes given; nothing is written out.
    match unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) } {
        // EINTR: a signal cut the run short (the kernel checks for them between batches);
        // what was sent is sent, and the caller's loop goes on.
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(error) => Err(error).context("BPF_PROG_RUN in live-frames mode (kernel 5.18 or later)"),
    }
}

/// What one BPF_PROG_TEST_RUN call gave back.
pub struct TestRun {
    /// The program's verdict.
    pub retval: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's average per repetition, in whole nanoseconds.
    pub duration_ns: u32,
}

/// Runs `program` `repeat` times on a copy of `frame` (BPF_PROG_TEST_RUN, not live), and
/// returns its verdict, the frame it left and the time per repetition.
pub fn test_run(program: &OwnedFd, frame: &[u8], repeat: u32) -> Result<TestRun> {
    // Room for growth, as aya's runner of the director leaves, so both copy out alike.
    let mut out = vec![0u8; frame.len() + 512];
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(program.as_raw_fd())?,
        data_size_in: u32::try_from(frame.len())?,
        data_size_out: u32::try_from(out.len())?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: `frame` and `out` outlive the call with the lengths given; the kernel writes
    // only into `out` and `attr`.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }.context("BPF_PROG_TEST_RUN")?;
    let written = attr.data_size_out as usize;
    ensure!(
        written <= out.len(),
        "the kernel reported {written} bytes out of a {} byte buffer",
        out.len()
    );
    out.truncate(written);
    Ok(TestRun {
        retval: attr.retval,
        frame: out,
        duration_ns: attr.duration,
    })
}

/// The element-command part of `union bpf_attr` (lookup, next key).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

/// The `batch` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A map by its id (another process's, such as the daemon's flow table).
pub fn map_by_id(id: u32) -> Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct GetFdAttr {
        map_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = GetFdAttr {
        map_id: id,
        ..Default::default()
    };
    // SAFETY: BPF_MAP_GET_FD_BY_ID's attribute, no pointers.
    let fd = unsafe { bpf(BPF_MAP_GET_FD_BY_ID, &mut attr) }
        .with_context(|| format!("opening map {id}"))?;
    // SAFETY: a new map fd.
    unsafe { owned(fd) }
}

/// Some entry of a map (the first in its iteration order: slot 0 of an array), or `None` when
/// it is empty.
/// `K` and `V` must be the map's key and value types, plain bytes.
pub fn first_entry<K: Copy + Default, V: Copy + Default>(map: &OwnedFd) -> Result<Option<(K, V)>> {
    let mut key = K::default();
    let mut attr = ElemAttr {
        map_fd: u32::try_from(map.as_raw_fd())?,
        key: 0,
        value_or_next_key: &mut key as *mut K as u64,
        ..Default::default()
    };
    // SAFETY: `key` is as large as the map's key; a null key asks for the first one.
    match unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } {
        Ok(_) => {}
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error).context("reading the first key of a map"),
    }
    let mut value = V::default();
    let mut attr = ElemAttr {
        map_fd: u32::try_from(map.as_raw_fd())?,
        key: &key as *const K as u64,
        value_or_next_key: &mut value as *mut V as u64,
        ..Default::default()
    };
    // SAFETY: `key` and `value` are the map's key and value sizes.
    unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }.context("reading a map entry")?;
    Ok(Some((key, value)))
}

/// Whether `map` holds `key`. `K` must be the map's key type, plain bytes; the map's values
/// must be at most 64 bytes.
pub fn contains<K>(map: &OwnedFd, key: &K) -> Result<bool> {
    let mut value = [0u8; 64];
    let mut attr = ElemAttr {
        map_fd: u32::try_from(map.as_raw_fd())?,
        key: key as *const K as u64,
        value_or_next_key: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `key` is the map's key size and `value` at least its value size.
    match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(error) => Err(error).context("looking a key up"),
    }
}

/// Writes `keys[i] = values[i]`, thousands per syscall. `K` and `V` must be the map's key and
/// value types, plain bytes.
pub fn update_batch<K, V>(map: &OwnedFd, keys: &[K], values: &[V]) -> Result<()> {
    ensure!(keys.len() == values.len(), "one value per key");
    const CHUNK: usize = 8192;
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: u32::try_from(keys.len())?,
            map_fd: u32::try_from(map.as_raw_fd())?,
            ..Default::default()
        };
        // SAFETY: `keys` and `values` hold `count` elements of the map's sizes.
        unsafe { bpf(BPF_MAP_UPDATE_BATCH, &mut attr) }.context("writing a map in batches")?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `program` in native XDP mode to `if_index` (in the calling thread's network
/// namespace). It stays attached until the returned link is closed.
pub fn attach_native(program: &OwnedFd, if_index: u32) -> Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: u32::try_from(program.as_raw_fd())?,
        target_ifindex: if_index,
        attach_type: BPF_XDP,
        flags: XDP_FLAGS_DRV_MODE,
    };
    // SAFETY: BPF_LINK_CREATE's attribute, no pointers.
    let fd = unsafe { bpf(BPF_LINK_CREATE, &mut attr) }
        .with_context(|| format!("attaching an XDP program natively to interface {if_index}"))?;
    // SAFETY: a new link fd.
    unsafe { owned(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump of `program` lands on one of its instructions, and it ends with an exit.
    fn check_jumps(name: &str, program: &[Insn]) {
        for (at, i) in program.iter().enumerate() {
            let is_jump = i.code & 0x07 == 0x05 && !matches!(i.code, 0x85 | 0x95);
            if is_jump {
                let target = at as i64 + 1 + i64::from(i.off);
                assert!(
                    (0..program.len() as i64).contains(&target),
                    "{name}: jump at {at} to {target}"
                );
                assert!(target > at as i64, "{name}: jump at {at} goes backwards");
            }
        }
        assert_eq!(
            program.last().map(|i| i.code),
            Some(0x95),
            "{name} ends with exit"
        );
    }

    #[test]
    fn every_jump_lands_inside_its_program() {
        let map = per_cpu_counter_stand_in();
        let udp = crate::live::udp_frame([2; 6], [4; 6], [10, 0, 0, 1], 9);
        let tcp = crate::live::tcp_syn_frame([2; 6], [4; 6], [10, 0, 0, 1], 80);
        for (name, frame) in [("udp", &udp), ("tcp", &tcp)] {
            let cycle = generator(Sources::Cycle { count: 1000 }, &map, frame).unwrap();
            check_jumps(&format!("cycle {name}"), &cycle);
            let random = generator(Sources::Random, &map, frame).unwrap();
            check_jumps(&format!("random {name}"), &random);
        }
        check_jumps("mac_swap", &mac_swap());
        for version in [IpVersion::V4, IpVersion::V6] {
            check_jumps(
                &format!("mac_swap_with_flow_lookup {version:?}"),
                &mac_swap_with_flow_lookup(&map, version),
            );
        }
        check_jumps("receiver", &receiver());
    }

    #[test]
    fn the_receiver_passes_arp_and_drops_the_rest() {
        let program = receiver();
        // The ARP test's target is an exit with XDP_PASS in r0 just before it.
        let arp_test = program
            .iter()
            .position(|i| i.code == 0x15)
            .expect("the ARP test");
        let target = arp_test + 1 + program[arp_test].off as usize;
        assert_eq!(program[target].imm, XDP_PASS);
        let short = program
            .iter()
            .position(|i| i.code == 0x2d)
            .expect("the length test");
        let target = short + 1 + program[short].off as usize;
        assert_eq!(program[target].imm, XDP_DROP);
        assert_eq!(
            program[arp_test + 1].imm,
            XDP_DROP,
            "anything else is dropped"
        );
    }

    /// The bases plus a source's words give the checksums a whole computation gives.
    #[test]
    fn the_checksum_bases_complete_to_the_checksums_of_each_source() {
        let frame = crate::live::tcp_syn_frame([2; 6], [4; 6], [10, 0, 0, 1], 80);
        let bases = checksum_bases(&frame).unwrap();
        for n in [0u32, 1, 0xffff, 0x1_0000, 0x12_3456, u32::MAX] {
            let (address, port) = flow_source(n);
            let mut sent = frame.clone();
            sent[26..30].copy_from_slice(&address);
            sent[34..36].copy_from_slice(&port);
            let word = n & 0xffff;
            let port = u32::from(u16::from_be_bytes(port));
            let fold = |mut s: u32| {
                while s >> 16 != 0 {
                    s = (s & 0xffff) + (s >> 16);
                }
                s
            };
            let ip = !fold(bases.ip + word) as u16;
            let tcp = !fold(bases.tcp.unwrap() + word + port) as u16;
            sent[24..26].copy_from_slice(&ip.to_be_bytes());
            sent[50..52].copy_from_slice(&tcp.to_be_bytes());
            assert_eq!(ones_sum(&sent[14..34]), 0xffff, "IPv4 checksum of flow {n}");
            let mut pseudo = sent[26..34].to_vec();
            pseudo.extend_from_slice(&[0, 6, 0, 20]);
            pseudo.extend_from_slice(&sent[34..54]);
            assert_eq!(ones_sum(&pseudo), 0xffff, "TCP checksum of flow {n}");
        }
    }

    /// Any open fd will do to build (not load) the program.
    fn per_cpu_counter_stand_in() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"))
    }
}
