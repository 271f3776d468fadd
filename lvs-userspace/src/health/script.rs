//! Running a configured program (a `MISC_CHECK`, a notifier) without a shell, bounded in time.
//!
//! The program runs in its own process group, so that on a timeout the whole group (the
//! program and anything it started) is killed, not just the first process.

use std::{process::Stdio, time::Duration};

use tokio::process::Command;

use crate::logic::config::health::{RunAs, Script};

/// How a program run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptEnd {
    Exited(i32),
    Signalled(i32),
    /// Still running at the deadline; its process group was killed.
    TimedOut,
    /// It could not be started (no such file, not executable...).
    NotStarted(String),
}

/// Runs `script` with extra environment variables, and waits at most `timeout`.
pub async fn run(script: &Script, env: &[(&str, String)], timeout: Duration) -> ScriptEnd {
    run_as(script, env, timeout, None).await
}

/// Runs `script` as `run` does, and as the given user and group when there is one. The
/// child sets its group, drops every supplementary group (std does, when it is privileged
/// to) and then sets its user, before it runs the program.
pub async fn run_as(
    script: &Script,
    env: &[(&str, String)],
    timeout: Duration,
    who: Option<&RunAs>,
) -> ScriptEnd {
    let Some((program, args)) = script.argv.split_first() else {
        return ScriptEnd::NotStarted("no program given".into());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        // If the supervisor drops the run (shutdown, reload), the program does not outlive it.
        .kill_on_drop(true);
    if let Some(who) = who {
        command.uid(who.uid).gid(who.gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return ScriptEnd::NotStarted(format!("{program}: {error}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            match (status.code(), status.signal()) {
                (Some(code), _) => ScriptEnd::Exited(code),
                (None, Some(signal)) => ScriptEnd::Signalled(signal),
                (None, None) => ScriptEnd::NotStarted("no exit status".into()),
            }
        }
        Ok(Err(error)) => ScriptEnd::NotStarted(format!("waiting for {program}: {error}")),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                // SAFETY: kill(2) with a negative pid signals the process group the child
                // leads (it was started with process_group(0)); it touches no memory.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            ScriptEnd::TimedOut
        }
    }
}
