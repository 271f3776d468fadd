//! Per-packet cost of the director's XDP program, side by side with an empty XDP program,
//! and with the director's program again behind a deny list of `DENY_PREFIXES` IPv4 and
//! `DENY6_PREFIXES` IPv6 prefixes that none of the frames matches: the deny list's cost on a
//! packet it lets through, for each family.
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

use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use lvs_test_support::{empty_program, fixture};

use empty_program::{EmptyProgram, Run};
use fixture::{RS1_MAC, VIP, VIP6, XDP_PASS, XDP_TX, tcp_ack, tcp_syn, tcp6_ack, tcp6_syn};
use lvs_common::flow::{SETTINGS_DENY_LIST, SETTINGS_DENY_LIST6};
use lvs_userspace::{
    base::values::SourcePrefix,
    io::bpf::{BpfDataPlane, test_run},
    logic::{dataplane::DataPlane, deny::DenyList},
};

/// A destination that is not a virtual service.
const NOT_A_VIP: [u8; 4] = [10, 0, 0, 50];
/// An IPv6 destination that is not a virtual service.
const NOT_A_VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
];

/// Prefixes in the deny list of the second director: /16s, /24s and /32s spread over the
/// whole address space (a multiplicative hash of their number), so that a lookup walks a deep
/// trie; none holds the fixtures' client.
const DENY_PREFIXES: u32 = 10_000;

/// IPv6 prefixes beside them (the two families share the list's capacity): /32s, /48s, /64s
/// and /128s spread likewise; none holds the fixtures' IPv6 client.
const DENY6_PREFIXES: u32 = 6_000;

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
    /// The target: at most this many ns above the empty program.
    target_above: f64,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            // Every repetition after the first follows the flow the first one made.
            name: "TCP SYN to a service",
            frame: to_director(tcp_syn(VIP, 80)),
            verdict: XDP_TX,
            target_above: 80.0,
        },
        Case {
            name: "TCP ACK + 18 B to a service",
            frame: to_director(tcp_ack(80)),
            verdict: XDP_TX,
            target_above: 80.0,
        },
        Case {
            name: "TCP SYN to a non-VIP",
            frame: to_director(tcp_syn(NOT_A_VIP, 80)),
            verdict: XDP_PASS,
            target_above: 25.0,
        },
        // IPv6's rows: the same three frames, with IPv6 headers (the targets are IPv4's).
        Case {
            name: "IPv6 TCP SYN to a service",
            frame: to_director(tcp6_syn(VIP6, 80)),
            verdict: XDP_TX,
            target_above: 80.0,
        },
        Case {
            name: "IPv6 TCP ACK + 18 B",
            frame: to_director(tcp6_ack(80)),
            verdict: XDP_TX,
            target_above: 80.0,
        },
        Case {
            name: "IPv6 TCP SYN to a non-VIP",
            frame: to_director(tcp6_syn(NOT_A_VIP6, 80)),
            verdict: XDP_PASS,
            target_above: 25.0,
        },
    ]
}

/// Loads the director's program and programs its maps through the model, as the daemon does
/// (and the fixture's IPv6 services beside them).
///
/// Repeat mode runs the program again on the frame it rewrote, and the program forwards only
/// frames sent to the director's own MAC: so here the director takes the MAC of the real
/// server the cases are forwarded to (and the cases are sent to it), which makes the
/// rewritten frame one the program forwards again, by the same path.
fn load_director() -> Result<BpfDataPlane> {
    let mut dataplane = BpfDataPlane::load(false).context("loading the XDP object")?;
    fixture::program_ipv6(&mut dataplane);
    dataplane.set_director(RS1_MAC)?;
    Ok(dataplane)
}

/// The director as `load_director` makes it, with a deny list of `DENY_PREFIXES` prefixes in
/// use, written as the daemon writes it.
fn load_director_with_deny_list() -> Result<BpfDataPlane> {
    let mut dataplane = load_director()?;
    let client = u32::from(std::net::Ipv4Addr::from(fixture::CLIENT));
    let prefixes = distinct_prefixes(DENY_PREFIXES, "IPv4", |n| {
        let length = [16, 24, 32][(n % 3) as usize];
        let mask = u32::MAX << (32 - length);
        let network = n.wrapping_mul(2_654_435_761) & mask;
        (client & mask != network)
            .then(|| SourcePrefix::new(std::net::Ipv4Addr::from(network), i64::from(length)).ok())
            .flatten()
    })?;
    let client6 = u128::from_be_bytes(fixture::CLIENT6);
    let prefixes6 = distinct_prefixes(DENY6_PREFIXES, "IPv6", |n| {
        let length = [32, 48, 64, 128][(n % 4) as usize];
        let mask = u128::MAX << (128 - length);
        let spread = u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let network = spread & mask;
        (client6 & mask != network)
            .then(|| SourcePrefix::new(std::net::Ipv6Addr::from(network), i64::from(length)).ok())
            .flatten()
    })?;
    let mut deny = DenyList::default();
    deny.set_config(&[prefixes, prefixes6].concat())?;
    deny.sync(&mut dataplane)?;
    let mut settings = fixture::default_settings();
    settings.flags |= SETTINGS_DENY_LIST | SETTINGS_DENY_LIST6;
    dataplane.set_settings(settings)?;
    Ok(dataplane)
}

/// `count` distinct prefixes of a family (`what`, for the error), from candidates numbered
/// 0 up to twice the count (`candidate` gives `None` for one that would hold the client).
fn distinct_prefixes(
    count: u32,
    what: &str,
    candidate: impl Fn(u32) -> Option<SourcePrefix>,
) -> Result<Vec<SourcePrefix>> {
    let prefixes: Vec<SourcePrefix> = (0..count * 2)
        .filter_map(candidate)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(count as usize)
        .collect();
    ensure!(
        prefixes.len() == count as usize,
        "too few distinct {what} prefixes"
    );
    Ok(prefixes)
}

/// `frame` sent to the MAC address `load_director` gives the director.
fn to_director(mut frame: Vec<u8>) -> Vec<u8> {
    frame[0..6].copy_from_slice(&RS1_MAC);
    frame
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
            first.frame[0..6] == RS1_MAC,
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
        Program::Director(Box::new(load_director_with_deny_list()?)),
        Program::Empty(EmptyProgram::load(XDP_PASS)?),
        Program::Empty(EmptyProgram::load(XDP_TX)?),
    ];
    for case in &cases {
        check_path(&mut programs[0], case)?;
        check_path(&mut programs[1], case)?;
        check_empty(&mut programs[2], XDP_PASS, &case.frame)?;
        check_empty(&mut programs[3], XDP_TX, &case.frame)?;
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
        "{:<28} {:>10} {:>12} {:>11} {:>6} {:>11} {:>8} {:>13} {:>9}",
        "packet",
        "lvs ns/pkt",
        "empty ns/pkt",
        "empty TX ns",
        "ratio",
        "lvs - empty",
        "target",
        "+deny ns/pkt",
        "deny cost"
    );
    for (case, per_program) in cases.iter().zip(samples) {
        let [lvs, with_deny, empty, empty_tx] =
            [0, 1, 2, 3].map(|index| median(&per_program[index]));
        let above = lvs - empty;
        println!(
            "{:<28} {:>10.1} {:>12.1} {:>11.1} {:>6.2} {:>11.1} {:>8} {:>13.1} {:>9.1}{}",
            case.name,
            lvs,
            empty,
            empty_tx,
            lvs / empty,
            above,
            format!("<={}", case.target_above),
            with_deny,
            with_deny - lvs,
            if above <= case.target_above {
                ""
            } else {
                "  (not met)"
            }
        );
    }
    println!(
        "empty = an XDP program returning XDP_PASS; empty TX returns XDP_TX; \
         ratio and difference are against empty; +deny = lvs with a deny list of {DENY_PREFIXES} \
         IPv4 and {DENY6_PREFIXES} IPv6 prefixes none of the frames is in, deny cost = +deny - lvs"
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
