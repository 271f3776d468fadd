//! `cargo xtask fuzz`: the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer, the nightly
//! toolchain), each for a bounded time, seeded with the project's own examples; a summary of
//! what each run did, and a failure naming the input that crashed.
//!
//! Each target keeps its corpus in `fuzz/corpus/TARGET` (not committed), so long runs build on
//! one another; seeds come from the test data the unit tests already use, so that the fuzzer
//! starts from files operators write rather than from nothing.

use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, say};

/// Every target, with the directories its seeds come from (relative to the repository).
pub const TARGETS: &[(&str, &[&str])] = &[
    (
        "config",
        &[
            "lvs-userspace/src/logic/keepalived/testdata",
            "fuzz/seeds/config",
        ],
    ),
    (
        "keepalived",
        &["lvs-userspace/src/logic/keepalived/testdata"],
    ),
    ("lvsadm_args", &["fuzz/seeds/lvsadm_args"]),
    ("restore", &["lvs-userspace/src/logic/ipvsadm/golden"]),
    ("control_request", &["fuzz/seeds/control_request"]),
    ("sync_message", &["fuzz/seeds/sync_message"]),
];

/// Mutated frames through the real XDP object (`tests/packet_mutation.rs`), run only when
/// named: it needs root, and CI runs ten million of them with the root tests already.
pub const PACKETS: &str = "packets";

/// Builds every target once, then runs the chosen ones (all when `chosen` is empty) for
/// `seconds` each.
pub fn run(repo: &Path, chosen: &[String], seconds: u32) -> Result<()> {
    if chosen.iter().any(|name| name == PACKETS) {
        packets(seconds)?;
        let rest: Vec<String> = chosen
            .iter()
            .filter(|name| *name != PACKETS)
            .cloned()
            .collect();
        if rest.is_empty() {
            return Ok(());
        }
        return run(repo, &rest, seconds);
    }
    for name in chosen {
        if !TARGETS.iter().any(|(target, _)| target == name) {
            let names: Vec<&str> = TARGETS.iter().map(|(target, _)| *target).collect();
            bail!(
                "no fuzz target '{name}'; the targets are {}",
                names.join(", ")
            );
        }
    }
    let fuzz_dir = repo.join("fuzz");
    say("building the fuzz targets (nightly, libFuzzer, address sanitizer)");
    crate::run(fuzz_command(&fuzz_dir).args(["build", "-O"]))?;

    let mut summary = Vec::new();
    let mut crashed = Vec::new();
    for (target, seeds) in TARGETS {
        if !chosen.is_empty() && !chosen.iter().any(|name| name == target) {
            continue;
        }
        say(&format!("fuzzing {target} for {seconds} s"));
        let corpus = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let log_path = fuzz_dir.join("artifacts").join(format!("{target}.log"));
        fs::create_dir_all(log_path.parent().expect("a log has a folder"))?;
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let started = Instant::now();
        let status = fuzz_command(&fuzz_dir)
            .args(["run", "-O", target])
            .arg(&corpus)
            .args(seeds.iter().map(|seed| repo.join(seed)))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A parser that takes seconds or gigabytes on one input is a finding too.
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running the fuzz target {target}"))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let stats = Stats::read(&text);
        summary.push((target, stats, started.elapsed().as_secs(), status.success()));
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            crashed.push(format!("{target} (log {})", log_path.display()));
        }
    }

    println!();
    println!(
        "{:<16} {:>12} {:>10} {:>8} {:>8}  result",
        "target", "inputs run", "per second", "edges", "seconds"
    );
    for (target, stats, elapsed, ok) in &summary {
        println!(
            "{:<16} {:>12} {:>10} {:>8} {:>8}  {}",
            target,
            stats.runs,
            stats.per_second,
            stats.edges,
            elapsed,
            if *ok { "no crash" } else { "CRASH" }
        );
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found crashes in {}: each input is in fuzz/artifacts/TARGET/; reproduce it \
             with `cargo +nightly fuzz run -O TARGET FILE` in fuzz/, fix it, and add it as a \
             unit test of the parser",
            crashed.join(", ")
        );
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`.
fn fuzz_command(fuzz_dir: &Path) -> Command {
    let mut command = cargo();
    command.current_dir(fuzz_dir).args(["+nightly", "fuzz"]);
    // `cargo xtask` runs under the stable toolchain, which rustup names in RUSTUP_TOOLCHAIN
    // and cargo in CARGO; left set, they would send cargo-fuzz's own cargo back to stable.
    command.env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    command
}

/// What libFuzzer's final statistics say about a run.
#[derive(Default)]
struct Stats {
    runs: String,
    per_second: String,
    edges: String,
}

impl Stats {
    fn read(log: &str) -> Self {
        let value = |name: &str| {
            log.lines()
                .rev()
                .find_map(|line| line.strip_prefix(name))
                .map(|rest| rest.trim().to_owned())
                .unwrap_or_else(|| "?".to_owned())
        };
        let edges = log
            .lines()
            .rev()
            .find_map(|line| line.split_once(" cov: "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        Stats {
            runs: value("stat::number_of_executed_units:"),
            per_second: value("stat::average_exec_per_sec:"),
            edges,
        }
    }
}

/// As many mutated frames as `seconds` allow, in a release build, as root.
fn packets(seconds: u32) -> Result<()> {
    say(&format!(
        "mutated frames through the XDP object for {seconds} s (root, BPF_PROG_TEST_RUN)"
    ));
    // Through `env`, so that the settings survive the sudo that `as_root` may add.
    let mut test = Command::new("env");
    crate::strip_cargo_variables(&mut test);
    test.arg(format!("LVS_PACKET_MUTATIONS={}", u64::MAX))
        .arg(format!("LVS_PACKET_SECONDS={seconds}"))
        .arg(format!("LVS_PACKET_SEED={}", std::process::id()))
        .args(["cargo", "test", "--release", "-p", "lvs-userspace"])
        .args([
            "--test",
            "packet_mutation",
            "--",
            "--ignored",
            "--nocapture",
        ]);
    crate::as_root(&mut test)
}
