//! Per-packet cost of the director's XDP program, side by side with an empty XDP program.
//!
//! Run as root: `cargo bench -p lvs-userspace --bench dataplane`.
//!
//! Absolute BPF_PROG_TEST_RUN figures drift between runs and machines, so the only claim this
//! bench makes is a comparison measured in one run: the director's program against an empty
//! program on the same frames, rounds alternating between them so that drift hits both alike.
//! The empty program is loaded here with a raw bpf(2) call rather than shipped in the eBPF
//! object, because test programs do not belong in the production object.
//!
//! Repeat mode runs the program again and again on the same buffer without restoring it. That
//! is valid here only because the director's rewrite (two MAC addresses) leaves a frame that
//! takes the same path again; `check_path` verifies this before anything is timed.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a quick smoke pass instead, and
//! skips with success when not root, so a workspace test run does not need root.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::ExitCode,
};

use anyhow::{Context, Result, bail, ensure};
#[path = "../tests/support/fixture.rs"]
#[allow(
    dead_code,
    reason = "shared with the data-plane tests, which use other parts"
)]
mod fixture;

use fixture::{RS1_MAC, RS2_MAC, VIP, XDP_PASS, XDP_TX, tcp_ack, tcp_syn};
use lvs_userspace::dataplane::{BpfDataPlane, test_run};

/// A destination that is not a virtual service.
const NOT_A_VIP: [u8; 4] = [10, 0, 0, 50];

/// How much work one invocation does.
#[derive(Clone, Copy)]
struct Mode {
    /// Repetitions per BPF_PROG_TEST_RUN call; the kernel reports the average per repetition.
    repeat: u32,
    /// Rounds per (packet, program); the table shows the median.
    rounds: usize,
    /// Whether this is a real `cargo bench` run rather than a `cargo test` smoke pass.
    bench: bool,
}

impl Mode {
    /// `cargo bench` passes `--bench` to a harness-less target; `cargo test` does not.
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--bench") {
            Self {
                repeat: 1_000_000,
                rounds: 7,
                bench: true,
            }
        } else {
            Self {
                repeat: 1_000,
                rounds: 1,
                bench: false,
            }
        }
    }
}

fn main() -> ExitCode {
    let mode = Mode::from_args();
    if !is_root() {
        return if mode.bench {
            eprintln!(
                "the dataplane bench needs root: it loads BPF programs. \
                 Run it as root: cargo bench -p lvs-userspace --bench dataplane"
            );
            ExitCode::FAILURE
        } else {
            println!("dataplane bench: skipped, it needs root to load BPF programs");
            ExitCode::SUCCESS
        };
    }
    match bench(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dataplane bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A frame to time, and the verdict the director must give it.
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "TCP SYN to a service",
            frame: tcp_syn(VIP, 80),
            verdict: XDP_TX,
        },
        Case {
            name: "TCP ACK + 18 B to a service",
            frame: tcp_ack(80),
            verdict: XDP_TX,
        },
        Case {
            name: "TCP SYN to a non-VIP",
            frame: tcp_syn(NOT_A_VIP, 80),
            verdict: XDP_PASS,
        },
    ]
}

/// Loads the director's program and programs its maps through the model, as the daemon does.
fn load_director() -> Result<BpfDataPlane> {
    let mut dataplane = BpfDataPlane::load(false).context("loading the XDP object")?;
    fixture::program(&mut dataplane);
    Ok(dataplane)
}

/// What one BPF_PROG_TEST_RUN call gave back.
struct Run {
    action: u32,
    frame: Vec<u8>,
    /// The kernel's average per repetition, in whole nanoseconds.
    nanos: u64,
}

/// The programs compared, in the order of the table's columns.
enum Program {
    Director(Box<BpfDataPlane>),
    Empty(EmptyProgram),
}

impl Program {
    fn run(&mut self, frame: &[u8], repeat: u32) -> Result<Run> {
        match self {
            Program::Director(dataplane) => {
                let outcome = test_run::run(dataplane, frame, repeat)
                    .context("test-running the director's program")?;
                Ok(Run {
                    action: outcome.action,
                    frame: outcome.frame,
                    nanos: u64::try_from(outcome.duration.as_nanos())?,
                })
            }
            Program::Empty(program) => program.run(frame, repeat),
        }
    }
}

/// Fails unless the director gives `case` its expected verdict, and gives its own output
/// the same verdict and output again: only then does repeat mode time one path throughout.
fn check_path(director: &mut Program, case: &Case) -> Result<()> {
    let first = director.run(&case.frame, 1)?;
    ensure!(
        first.action == case.verdict,
        "{}: the director returned action {} (want {}); refusing to time a broken path",
        case.name,
        first.action,
        case.verdict
    );
    if case.verdict == XDP_TX {
        ensure!(
            [RS1_MAC, RS2_MAC].contains(&first.frame[0..6].try_into()?),
            "{}: forwarded to {:02x?}, not to a real server",
            case.name,
            &first.frame[0..6]
        );
    }
    let again = director.run(&first.frame, 1)?;
    ensure!(
        again.action == first.action && again.frame == first.frame,
        "{}: the output frame takes a different path when run again, so repeat mode \
         would not time the path of the original frame",
        case.name
    );
    Ok(())
}

/// Fails unless an empty program returns its verdict and leaves the frame as it was.
fn check_empty(program: &mut Program, verdict: u32, frame: &[u8]) -> Result<()> {
    let run = program.run(frame, 1)?;
    ensure!(
        run.action == verdict && run.frame == frame,
        "the empty program returned {} (want {verdict}) or changed the frame",
        run.action
    );
    Ok(())
}

fn bench(mode: Mode) -> Result<()> {
    let cases = cases();
    let mut programs = [
        Program::Director(Box::new(load_director()?)),
        Program::Empty(EmptyProgram::load(XDP_PASS)?),
        Program::Empty(EmptyProgram::load(XDP_TX)?),
    ];
    for case in &cases {
        check_path(&mut programs[0], case)?;
        check_empty(&mut programs[1], XDP_PASS, &case.frame)?;
        check_empty(&mut programs[2], XDP_TX, &case.frame)?;
    }
    let samples = measure(&mut programs, &cases, mode)?;
    print_table(&cases, &samples, mode);
    Ok(())
}

/// Nanoseconds per packet: `[case][program][round]`.
type Samples = Vec<Vec<Vec<u64>>>;

/// Times every program on every case, `mode.rounds` times. Each round reverses the order of
/// the programs of the round before, so slow drift (frequency, a noisy neighbour) lands on
/// all of them alike rather than on whichever always runs last.
fn measure(programs: &mut [Program], cases: &[Case], mode: Mode) -> Result<Samples> {
    let mut samples = vec![vec![Vec::with_capacity(mode.rounds); programs.len()]; cases.len()];
    // One untimed call per program and case warms caches and the kernel's paths.
    for case in cases {
        for program in programs.iter_mut() {
            program.run(&case.frame, mode.repeat.min(10_000))?;
        }
    }
    for round in 0..mode.rounds {
        for (case_index, case) in cases.iter().enumerate() {
            let mut order: Vec<usize> = (0..programs.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let run = programs[index].run(&case.frame, mode.repeat)?;
                samples[case_index][index].push(run.nanos);
            }
        }
    }
    Ok(samples)
}

fn median(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle] as f64
    } else {
        (sorted[middle - 1] + sorted[middle]) as f64 / 2.0
    }
}

fn print_table(cases: &[Case], samples: &Samples, mode: Mode) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "BPF_PROG_TEST_RUN, repeat {}, median of {} rounds, kernel {}",
        mode.repeat,
        mode.rounds,
        kernel.trim()
    );
    println!(
        "{:<28} {:>12} {:>15} {:>13} {:>7} {:>13}",
        "packet", "lvs ns/pkt", "empty ns/pkt", "empty TX ns", "ratio", "lvs - empty"
    );
    for (case, per_program) in cases.iter().zip(samples) {
        let [lvs, empty, empty_tx] = [0, 1, 2].map(|index| median(&per_program[index]));
        println!(
            "{:<28} {:>12.1} {:>15.1} {:>13.1} {:>7.2} {:>13.1}",
            case.name,
            lvs,
            empty,
            empty_tx,
            lvs / empty,
            lvs - empty
        );
    }
    println!(
        "empty = an XDP program returning XDP_PASS; empty TX returns XDP_TX; \
         ratio and difference are against empty"
    );
    println!(
        "lvs samples per round (ns): {}",
        cases
            .iter()
            .zip(samples)
            .map(|(case, per_program)| format!("{}: {:?}", case.name, per_program[0]))
            .collect::<Vec<_>>()
            .join("; ")
    );
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
struct EmptyProgram {
    fd: OwnedFd,
}

impl EmptyProgram {
    fn load(verdict: u32) -> Result<Self> {
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

    fn run(&self, frame: &[u8], repeat: u32) -> Result<Run> {
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
