//! An empty XDP program (it only returns a verdict), loaded with a raw bpf(2) call, that the
//! benchmarks measure the director against. Test programs do not belong in the production
//! object, so it is built here from two instructions.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, bail};

/// What one BPF_PROG_TEST_RUN call gave back.
pub struct Run {
    pub action: u32,
    pub frame: Vec<u8>,
    /// The kernel's average per repetition, in whole nanoseconds.
    pub nanos: u64,
}

// The raw bpf(2) interface for the empty program. Only the fields used are declared; the
// kernel accepts a `union bpf_attr` shorter than its own and zero-fills the rest.

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// `struct bpf_insn` from include/uapi/linux/bpf.h: the register nibbles share one byte,
/// destination in the low nibble.
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// `BPF_ALU64 | BPF_MOV | BPF_K`: a 64-bit move of an immediate.
const BPF_MOV64_IMM: u8 = 0x07 | 0xb0;
/// `BPF_JMP | BPF_EXIT`.
const BPF_EXIT: u8 = 0x05 | 0x90;

/// The BPF_PROG_LOAD part of `union bpf_attr`, up to `prog_name`.
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

/// The BPF_PROG_TEST_RUN part of `union bpf_attr` (its `test` member), up to `batch_size`.
#[repr(C)]
#[derive(Default)]
struct ProgTestRunAttr {
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
    /// Named so that it is zeroed: the kernel rejects an attribute whose bytes past the
    /// command's last field are not zero, and padding bytes would be left unset.
    _pad: u32,
}

// The layouts must match include/uapi/linux/bpf.h; a mistake here would be a silent EINVAL or
// worse, so the offsets the kernel relies on are checked at compile time.
const _: () = {
    use std::mem::offset_of;
    assert!(size_of::<BpfInsn>() == 8);
    assert!(offset_of!(ProgLoadAttr, license) == 16);
    assert!(offset_of!(ProgLoadAttr, prog_name) == 48);
    assert!(size_of::<ProgLoadAttr>() == 64);
    assert!(offset_of!(ProgTestRunAttr, data_in) == 16);
    assert!(offset_of!(ProgTestRunAttr, duration) == 36);
    assert!(offset_of!(ProgTestRunAttr, batch_size) == 72);
    assert!(size_of::<ProgTestRunAttr>() == 80);
};

/// Calls bpf(2) with `attr`, returning its non-negative result or the OS error.
///
/// # Safety
/// `attr` must be the attribute struct of `command`, and every pointer in it must be valid for
/// the kernel to read (and, where the command writes, to write) for the length given with it.
unsafe fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; the kernel reads and writes at most
    // `size_of::<T>()` bytes of it.
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

/// An XDP program of two instructions, `r0 = verdict; exit`: the floor any XDP program
/// pays under BPF_PROG_TEST_RUN. The file descriptor closes when it drops.
pub struct EmptyProgram {
    fd: OwnedFd,
}

impl EmptyProgram {
    pub fn load(verdict: u32) -> Result<Self> {
        let insns = [
            BpfInsn {
                code: BPF_MOV64_IMM,
                regs: 0, // destination r0
                off: 0,
                imm: i32::try_from(verdict)?,
            },
            BpfInsn {
                code: BPF_EXIT,
                regs: 0,
                off: 0,
                imm: 0,
            },
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..11].copy_from_slice(b"bench_empty");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        // SAFETY: `attr` is BPF_PROG_LOAD's struct; `insns` and `license` outlive the call and
        // the lengths match (`insn_cnt`, a NUL-terminated license); no log buffer is given.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
            .with_context(|| format!("loading an empty XDP program returning {verdict}"))?;
        let fd = i32::try_from(fd)?;
        // SAFETY: on success BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<Run> {
        // Room for growth, as the director's runner leaves, so both copy out alike.
        let mut out = vec![0u8; frame.len() + 512];
        let mut attr = ProgTestRunAttr {
            prog_fd: u32::try_from(self.fd.as_raw_fd())?,
            data_size_in: u32::try_from(frame.len())?,
            data_size_out: u32::try_from(out.len())?,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            ..Default::default()
        };
        // SAFETY: `attr` is BPF_PROG_TEST_RUN's struct; `frame` and `out` outlive the call and
        // their lengths are the ones given; the kernel writes only into `out` and `attr`.
        unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }.context("test-running the empty program")?;
        let written = attr.data_size_out as usize;
        if written > out.len() {
            bail!(
                "the kernel reported {written} bytes out of a {} byte buffer",
                out.len()
            );
        }
        out.truncate(written);
        Ok(Run {
            action: attr.retval,
            frame: out,
            nanos: u64::from(attr.duration),
        })
    }
}
