//! `cargo xtask run --ha`: the two-director demo. The lab with two directors running
//! keepalived's VRRP and lvs with connection sync (`lvs_test_support::pair`, the pair the
//! two-director test runs), the load of the tests (`lvs_test_support::load`), and midway the
//! master's cable pulled: how long the VIP took to move, and what the clients noticed.
//!
//! Everything is torn down on every way out: a failure or a panic through the pair's drop,
//! and Ctrl-C too, since it only raises a flag here (the children, in the same process group,
//! get the signal themselves and end, which ends the demo's current step).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use lvs_test_support::{
    lab::VIP,
    load::{LONG_LIVED, Load},
    pair::{Director, Pair},
};

use crate::say;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT in this process, so that Ctrl-C unwinds through the drops. A handler (not
/// SIG_IGN, which children would inherit across exec) leaves the children's default alone.
fn catch_interrupt() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// How long the clients run; the master's cable is pulled `PULL_AT` into it.
const LOAD: Duration = Duration::from_secs(16);
const PULL_AT: Duration = Duration::from_secs(4);

pub fn run(repo: &Path, lvs: &Path, real_servers: u8) -> Result<()> {
    ensure!(
        (1..=8).contains(&real_servers),
        "--real-servers must be between 1 and 8"
    );
    catch_interrupt();
    let result = demo(repo, lvs, real_servers);
    // Whatever step Ctrl-C broke, it is the reason to give.
    check_interrupt().context("the lab is torn down")?;
    result
}

fn demo(repo: &Path, lvs: &Path, real_servers: u8) -> Result<()> {
    say(&format!(
        "building the two-director lab: a client, a MASTER and a BACKUP director, \
         {real_servers} real servers; keepalived (VRRP) and lvs (with connection sync) on both"
    ));
    let pair = Pair::up(repo, lvs, "lvsdemoha", real_servers).map_err(anyhow::Error::msg)?;
    check_interrupt()?;
    say(&format!(
        "the MASTER ({}) holds the VIP {VIP}; lvs also runs on the BACKUP ({}), its XDP program \
         attached, installing the master's connections as sync sends them",
        Director::Master.address(),
        Director::Backup.address()
    ));
    say(&format!(
        "starting the clients: {LONG_LIVED} long-lived connections (a line every 100 ms) and a \
         loop of new HTTP connections, for {} s",
        LOAD.as_secs()
    ));
    let load =
        Load::start(pair.lab(), LOAD, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    sleep(PULL_AT);
    check_interrupt()?;
    say("pulling the MASTER's cable (its eth0 goes down)");
    pair.pull_cable(Director::Master)
        .map_err(anyhow::Error::msg)?;
    let takeover = pair
        .wait_for_vip(Director::Backup, Duration::from_secs(15))
        .map_err(anyhow::Error::msg)?;
    say(&format!(
        "the BACKUP holds the VIP {:.2} s after the cable was pulled",
        takeover.as_secs_f64()
    ));
    let seen = load.finish().map_err(anyhow::Error::msg)?;
    check_interrupt()?;
    let backup = pair.status(Director::Backup).map_err(anyhow::Error::msg)?;
    let installed = backup["sync"]["entries_installed"]
        .as_u64()
        .context("the backup's status has no sync counters")?;

    println!("\nFailover, the master's cable pulled under load:");
    println!(
        "  VIP moved to the backup in        {:.2} s (VRRP: 3 x advert_int and a skew of 0.8 s)",
        takeover.as_secs_f64()
    );
    println!(
        "  new connections failed            {} of {}",
        seen.failed_requests(),
        seen.failed_requests() + seen.ok_requests()
    );
    println!(
        "  long-lived connections broken     {} of {LONG_LIVED}, moved to another server {}",
        seen.broken(),
        seen.moved()
    );
    println!(
        "  longest a long-lived one waited   {:.0} ms (TCP resends what was lost in the takeover)",
        seen.longest_gap_ms()
    );
    println!("  connections the backup installed  {installed} (from the master's sync messages)\n");

    say("stopping keepalived and lvs on both directors and removing the lab");
    drop(pair);
    ensure!(
        seen.broken() == 0 && seen.moved() == 0,
        "long-lived connections were broken or moved"
    );
    Ok(())
}
