//! `MISC_CHECK`: a program decides. Exit 0 is up; any other exit, a signal or a timeout is
//! down. With `misc_dynamic`, exit codes 2-255 are up with weight `code - 2`, as in
//! keepalived; exit 0 then means the configured weight.

use crate::health::{
    Failure, Outcome,
    script::{self, ScriptEnd},
};
use crate::logic::config::health::MiscProbe;

/// Runs the check program once.
pub async fn probe(misc: &MiscProbe) -> Outcome {
    let env = [("LVS_REAL_SERVER", misc.real_server.to_string())];
    outcome(
        script::run_as(&misc.command, &env, misc.timeout, misc.run_as.as_ref()).await,
        misc.dynamic,
        misc.timeout,
    )
}

/// What an exit means (pure).
fn outcome(end: ScriptEnd, dynamic: bool, timeout: std::time::Duration) -> Outcome {
    match end {
        ScriptEnd::Exited(0) => Outcome::pass("exit code 0"),
        ScriptEnd::Exited(code @ 2..=255) if dynamic => {
            let weight = code as u32 - 2;
            Outcome::Pass {
                detail: format!("exit code {code} (weight {weight})"),
                weight: Some(weight),
            }
        }
        ScriptEnd::Exited(code) => Outcome::Fail(Failure::Exit(code)),
        ScriptEnd::Signalled(signal) => Outcome::Fail(Failure::Signal(signal)),
        ScriptEnd::TimedOut => Outcome::Fail(Failure::Timeout(timeout)),
        ScriptEnd::NotStarted(error) => Outcome::Fail(Failure::Spawn(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use std::{
        os::unix::fs::PermissionsExt as _,
        path::{Path, PathBuf},
        time::{Duration, Instant},
    };

    use super::*;
    use crate::logic::config::health::Script;

    /// Writes an executable script into `dir`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn misc(argv: Vec<String>, dynamic: bool, timeout: Duration) -> MiscProbe {
        MiscProbe {
            command: Script { argv },
            timeout,
            dynamic,
            real_server: Ipv4Addr::new(127, 0, 0, 1).into(),
            run_as: None,
        }
    }

    async fn exit_with(dir: &Path, code: u8, dynamic: bool) -> Outcome {
        let path = script(dir, &format!("exit{code}"), &format!("exit {code}"));
        probe(&misc(
            vec![path.display().to_string()],
            dynamic,
            Duration::from_secs(10),
        ))
        .await
    }

    #[tokio::test]
    async fn exit_codes_decide() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(exit_with(d, 0, false).await, Outcome::pass("exit code 0"));
        assert_eq!(
            exit_with(d, 1, false).await,
            Outcome::Fail(Failure::Exit(1))
        );
        assert_eq!(
            exit_with(d, 7, false).await,
            Outcome::Fail(Failure::Exit(7))
        );
        assert_eq!(
            exit_with(d, 7, true).await,
            Outcome::Pass {
                detail: "exit code 7 (weight 5)".into(),
                weight: Some(5)
            }
        );
        assert_eq!(
            exit_with(d, 1, true).await,
            Outcome::Fail(Failure::Exit(1)),
            "1 is a failure even with misc_dynamic"
        );
        assert_eq!(
            exit_with(d, 2, true).await.to_string(),
            "exit code 2 (weight 0)"
        );
    }

    #[tokio::test]
    async fn arguments_reach_the_program_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let path = script(
            dir.path(),
            "record",
            &format!(
                "printf '%s|' \"$@\" \"$LVS_REAL_SERVER\" > {}",
                out.display()
            ),
        );
        let argv = vec![
            path.display().to_string(),
            "$HOME".into(),
            "a b".into(),
            "; exit 1".into(),
        ];
        assert!(
            probe(&misc(argv, false, Duration::from_secs(10)))
                .await
                .passed()
        );
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "$HOME|a b|; exit 1|127.0.0.1|"
        );
    }

    #[tokio::test]
    async fn a_slow_program_times_out_and_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let path = script(
            dir.path(),
            "slow",
            &format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
        );
        let started = Instant::now();
        let outcome = probe(&misc(
            vec![path.display().to_string()],
            false,
            Duration::from_millis(300),
        ))
        .await;
        assert_eq!(
            outcome,
            Outcome::Fail(Failure::Timeout(Duration::from_millis(300)))
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not waited out"
        );
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the killed process group; give the kernel a moment to reap.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty() || state.contains(") Z ")
        });
        assert!(gone, "the program's child {pid} survived the timeout");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_with_a_reason() {
        let outcome = probe(&misc(
            vec!["/nonexistent/check".into()],
            false,
            Duration::from_secs(1),
        ))
        .await;
        let Outcome::Fail(Failure::Spawn(reason)) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("/nonexistent/check"), "{reason}");
    }

    /// The program runs as the configured user and group. As root (the director's case)
    /// that is `nobody`, with its own group and then another one, and no supplementary
    /// groups; unprivileged, only the test's own user can be taken, which still checks
    /// that the ids reach the program.
    #[tokio::test]
    async fn user_runs_the_program_as_that_user_and_group() {
        use crate::logic::config::health::RunAs;
        use nix::unistd::{User, geteuid};

        let dir = tempfile::tempdir().unwrap();
        // The program must be reachable by the user it runs as.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = script(
            dir.path(),
            "whoami",
            "[ \"$(id -u)\" = \"$1\" ] && [ \"$(id -g)\" = \"$2\" ] || exit 1\n\
             [ -z \"$3\" ] || [ \"$(id -G)\" = \"$3\" ] || exit 3",
        );
        let privileged = geteuid().is_root();
        let targets = if privileged {
            let nobody = RunAs::resolve("nobody", None).unwrap();
            let with_group = RunAs::resolve("nobody", Some("daemon")).unwrap();
            assert_ne!(nobody.uid, 0);
            assert_ne!(nobody.gid, with_group.gid);
            vec![nobody, with_group]
        } else {
            let me = User::from_uid(geteuid()).unwrap().unwrap();
            vec![RunAs::resolve(&me.name, None).unwrap()]
        };
        for who in targets {
            let groups = if privileged {
                who.gid.to_string()
            } else {
                String::new()
            };
            let argv = vec![
                path.display().to_string(),
                who.uid.to_string(),
                who.gid.to_string(),
                groups,
            ];
            let mut probe_config = misc(argv, false, Duration::from_secs(10));
            probe_config.run_as = Some(who.clone());
            assert_eq!(
                probe(&probe_config).await,
                Outcome::pass("exit code 0"),
                "as {who:?}"
            );
        }
    }

    #[tokio::test]
    async fn signals_are_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "term", "kill -TERM $$");
        let outcome = probe(&misc(
            vec![path.display().to_string()],
            false,
            Duration::from_secs(10),
        ))
        .await;
        assert_eq!(outcome, Outcome::Fail(Failure::Signal(libc::SIGTERM)));
    }
}
