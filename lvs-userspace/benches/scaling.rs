//! How the data plane's cost per packet grows with the number of real servers and of live
//! flows, side by side with an empty XDP program, and how long a Maglev table takes to build.
//!
//! Run as root: `cargo bench -p lvs-userspace --bench scaling` (or `cargo xtask bench`).
//!
//! - Established flow: a packet of a tracked connection, repeated in one BPF_PROG_TEST_RUN
//!   call (the kernel's average per repetition).
//! - New flow: distinct first packets (each a new client), one per call, since repeating a
//!   frame makes every repetition after the first an established flow. A single run's time
//!   includes the kernel's clock reads around it, so the empty program is timed the same way
//!   on the same frames, and the ratio compares like with like.
//!
//! The flow table is filled beforehand with the given number of live connections. Under
//! `cargo test --benches` a small smoke matrix runs instead (and is skipped without root).

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use lvs_test_support::{empty_program, fixture};

use empty_program::EmptyProgram;
use fixture::{DIRECTOR_MAC, TcpKind, VIP, XDP_PASS, XDP_TX, default_settings, tcp_from};
use lvs_common::{
    LOOKUP_TABLE_SIZE,
    flow::{FlowEntry, FlowKey, FlowState},
};
use lvs_userspace::{
    base::mac::MacAddr,
    io::bpf::{BpfDataPlane, LoadOptions, test_run},
    logic::{
        config,
        conntrack::monotonic_ns,
        dataplane::DataPlane,
        maglev::{Backend, build_table},
        model::{Model, Neighbour},
    },
};

struct Matrix {
    servers: &'static [usize],
    flows: &'static [usize],
    new_flow_frames: u16,
    repeat: u32,
    maglev: &'static [u32],
    bench: bool,
}

impl Matrix {
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--bench") {
            Self {
                servers: &[1, 16, 256, 4096],
                flows: &[1_000, 100_000, 1_000_000],
                new_flow_frames: 2_000,
                repeat: 1_000_000,
                maglev: &[10, 100, 1000],
                bench: true,
            }
        } else {
            Self {
                servers: &[1, 16],
                flows: &[1_000],
                new_flow_frames: 50,
                repeat: 1_000,
                maglev: &[10],
                bench: false,
            }
        }
    }
}

fn main() -> ExitCode {
    let matrix = Matrix::from_args();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if matrix.bench {
            eprintln!("the scaling bench needs root: it loads BPF programs");
            return ExitCode::FAILURE;
        }
        println!("scaling bench: skipped, it needs root to load BPF programs");
        return ExitCode::SUCCESS;
    }
    match run(&matrix) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scaling bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(matrix: &Matrix) -> Result<()> {
    let empty = EmptyProgram::load(XDP_PASS)?;
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
        "servers", "live flows", "new ns", "empty ns", "ratio", "estab ns", "empty ns", "ratio"
    );
    for &servers in matrix.servers {
        for &flows in matrix.flows {
            let row = measure(matrix, &empty, servers, flows)?;
            println!(
                "{:>8} {:>10} {:>12.1} {:>12.1} {:>7.2} {:>12.1} {:>12.1} {:>7.2}",
                servers,
                flows,
                row.new_flow,
                row.new_flow_empty,
                row.new_flow / row.new_flow_empty,
                row.established,
                row.established_empty,
                row.established / row.established_empty
            );
        }
    }
    println!(
        "new: median of {} first packets, one per BPF_PROG_TEST_RUN call; estab: one packet \
         repeated {} times; empty = an XDP program returning XDP_PASS, timed the same way",
        matrix.new_flow_frames, matrix.repeat
    );
    println!();
    println!("{:>8} {:>14}", "servers", "Maglev build");
    for &servers in matrix.maglev {
        println!(
            "{servers:>8} {:>11.1} ms",
            maglev_build(servers).as_secs_f64() * 1e3
        );
    }
    println!("Maglev: a table of {LOOKUP_TABLE_SIZE} slots, median of 5 builds");
    Ok(())
}

struct Row {
    new_flow: f64,
    new_flow_empty: f64,
    established: f64,
    established_empty: f64,
}

fn measure(matrix: &Matrix, empty: &EmptyProgram, servers: usize, flows: usize) -> Result<Row> {
    let (mut dataplane, model) = director(servers, flows)?;
    fill_flow_table(&mut dataplane, &model, flows)?;

    let established = tcp_from([192, 0, 2, 7], 40000, VIP, 80, TcpKind::Ack);
    let first = test_run::run(&mut dataplane, &established, 1)?;
    ensure!(
        first.action == XDP_TX,
        "the established packet was not forwarded"
    );
    let again = test_run::run(&mut dataplane, &first.frame, 1)?;
    ensure!(
        again.frame == first.frame,
        "the forwarded frame takes another path when run again"
    );
    let established_ns = test_run::run(&mut dataplane, &established, matrix.repeat)?
        .duration
        .as_nanos() as f64;
    let established_empty = empty.run(&established, matrix.repeat)?.nanos as f64;

    let frames: Vec<Vec<u8>> = (0..matrix.new_flow_frames)
        .map(|i| {
            tcp_from(
                [198, 18, (i >> 8) as u8, i as u8],
                1000,
                VIP,
                80,
                TcpKind::Syn,
            )
        })
        .collect();
    let mut new_ns = Vec::with_capacity(frames.len());
    let mut empty_ns = Vec::with_capacity(frames.len());
    for frame in &frames {
        let outcome = test_run::run(&mut dataplane, frame, 1)?;
        ensure!(outcome.action == XDP_TX, "a new flow was not forwarded");
        new_ns.push(outcome.duration.as_nanos() as u64);
        empty_ns.push(empty.run(frame, 1)?.nanos);
    }
    Ok(Row {
        new_flow: median(&mut new_ns),
        new_flow_empty: median(&mut empty_ns),
        established: established_ns,
        established_empty,
    })
}

/// A director with one `wlc` service and `servers` resolved real servers, with a flow table
/// big enough for `flows` live connections and the measured ones.
fn director(servers: usize, flows: usize) -> Result<(BpfDataPlane, Model)> {
    let mut text = String::from(
        "[director]\ninterface = \"bench0\"\n\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
         port = 80\n",
    );
    for i in 0..servers {
        text.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{}\"\n",
            server_address(i)
        ));
    }
    let config = config::parse(&text, "bench.toml").context("the bench config")?;
    let table = u32::try_from(flows * 2 + 65_536)?;
    let mut dataplane = BpfDataPlane::load_with(LoadOptions {
        trace_packets: false,
        flow_table_size: table,
        pin_dir: None,
    })
    .context("loading the XDP object")?;
    let mut model = Model::new(&config.services)?;
    for i in 0..servers {
        let [_, _, hi, lo] = server_address(i).octets();
        model.set_neighbour(
            server_address(i),
            Neighbour::Resolved {
                mac: MacAddr([0x02, 0x01, 0, 0, hi, lo]),
            },
        );
    }
    dataplane.set_director(DIRECTOR_MAC)?;
    dataplane.set_settings(default_settings())?;
    model.sync(&mut dataplane)?;
    Ok((dataplane, model))
}

fn server_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)
}

/// Fills the flow table with `count` established connections spread over the real servers.
fn fill_flow_table(dataplane: &mut BpfDataPlane, model: &Model, count: usize) -> Result<()> {
    let generations: HashMap<u32, u32> = model.generations();
    let ids: Vec<(u32, u32)> = generations.into_iter().collect();
    let now = monotonic_ns();
    let flows: Vec<(FlowKey, FlowEntry)> = (0..count)
        .map(|i| {
            let (id, generation) = ids[i % ids.len()];
            let key = FlowKey {
                src_addr: [
                    100,
                    64 + (i >> 24) as u8 % 64,
                    (i >> 16) as u8,
                    (i >> 8) as u8,
                ],
                dst_addr: VIP,
                src_port: (i as u16).to_be_bytes(),
                dst_port: 80u16.to_be_bytes(),
                protocol: 6,
                _pad: [0; 3],
            };
            let entry = FlowEntry {
                last_seen_ns: now,
                real_server_id: id,
                generation,
                state: FlowState::Established as u8,
                ..FlowEntry::default()
            };
            (key, entry)
        })
        .collect();
    dataplane.insert_flows(&flows)?;
    Ok(())
}

fn median(values: &mut [u64]) -> f64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0) as f64
}

fn maglev_build(servers: u32) -> Duration {
    let backends: Vec<Backend> = (0..servers)
        .map(|id| Backend {
            id,
            identity: Ipv4Addr::from(0x0a01_0000 + id).octets().to_vec(),
            weight: 1 + id % 3,
        })
        .collect();
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let table = build_table(&backends, LOOKUP_TABLE_SIZE);
            let elapsed = start.elapsed();
            assert_eq!(table.len(), LOOKUP_TABLE_SIZE as usize);
            elapsed
        })
        .collect();
    times.sort();
    times[2]
}
