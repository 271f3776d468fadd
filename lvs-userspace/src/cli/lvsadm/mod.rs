//! The `lvsadm` program's I/O: it carries out a [`Command`] against the daemon, prints what
//! ipvsadm prints, and generates its man page and shell completions. The parsing and the
//! layouts are in `crate::logic::ipvsadm`, which does no I/O.

pub mod client;
pub mod system_names;

use std::{io::Write, path::Path};

use clap::CommandFactory as _;

use crate::logic::ipvsadm::{
    Args, Command, ListTarget,
    list::{self, ListError},
    names::{NumericOnly, Resolver},
    restore, save,
};
use client::ClientError;

/// How a run ended, for the exit status: ipvsadm exits 2 for a bad command line and non-zero
/// for anything else that fails.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The command line or the rules file is wrong; nothing was asked of the daemon.
    Usage,
    /// The daemon could not be reached or refused; nothing changed.
    Failed,
}

/// Carries out `command` against the daemon at `socket`, writing results to `out` and
/// errors (in ipvsadm's words) to `err`. `rules` is read for `-R`.
pub async fn run(
    command: Command,
    socket: &Path,
    names: &dyn Resolver,
    rules: impl FnOnce() -> std::io::Result<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let result = match command {
        Command::Change(change) => client::apply(socket, vec![change]).await.map(|()| None),
        Command::List(list) => {
            let snapshot =
                match client::snapshot(socket, list.target == ListTarget::Connections).await {
                    Ok(snapshot) => snapshot,
                    Err(error) => return report(error, err),
                };
            let names: &dyn Resolver = if list.format.numeric {
                &NumericOnly
            } else {
                names
            };
            match list::render(&snapshot, &list, names) {
                Ok(text) => Ok(Some(text)),
                Err(ListError::NoSuchService) => {
                    writeln!(err, "No such service")?;
                    return Ok(Outcome::Failed);
                }
                Err(error @ ListError::Json(_)) => {
                    writeln!(err, "lvsadm: {error}")?;
                    return Ok(Outcome::Failed);
                }
            }
        }
        Command::Save { numeric } => client::snapshot(socket, false).await.map(|snapshot| {
            let names: &dyn Resolver = if numeric { &NumericOnly } else { names };
            Some(save::render(&snapshot, numeric, names))
        }),
        Command::Restore => return restore_rules(socket, names, &rules()?, err).await,
        Command::Reload => client::reload(socket)
            .await
            .map(|message| Some(format!("{message}\n"))),
        Command::StartDaemon(daemon) => client::start_sync_daemon(socket, daemon)
            .await
            .map(|()| None),
        Command::StopDaemon(role) => client::stop_sync_daemon(socket, role).await.map(|()| None),
        Command::ListDaemons { json } => match client::daemons(socket).await {
            Ok(daemons) => match list::render_daemons(&daemons, json) {
                Ok(text) => Ok(Some(text)),
                Err(error) => {
                    writeln!(err, "lvsadm: {error}")?;
                    return Ok(Outcome::Failed);
                }
            },
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(text) => {
            if let Some(text) = text {
                out.write_all(text.as_bytes())?;
            }
            Ok(Outcome::Done)
        }
        Err(error) => report(error, err),
    }
}

/// `-R`: every line checked first; then all changes in one request, applied all or none.
async fn restore_rules(
    socket: &Path,
    names: &dyn Resolver,
    text: &str,
    err: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let rules = match restore::parse(text, names) {
        Ok(rules) => rules,
        Err(problems) => {
            for problem in &problems {
                writeln!(err, "{problem}")?;
            }
            writeln!(err, "lvsadm: nothing was restored")?;
            return Ok(Outcome::Usage);
        }
    };
    if rules.is_empty() {
        return Ok(Outcome::Done);
    }
    let changes = rules.iter().map(|rule| rule.change).collect();
    match client::apply(socket, changes).await {
        Ok(()) => Ok(Outcome::Done),
        Err(ClientError::Rejected {
            message,
            change: Some(index),
        }) => {
            let line = rules.get(index).map_or(0, |rule| rule.line);
            writeln!(err, "line {line}: {message}")?;
            writeln!(err, "lvsadm: nothing was restored")?;
            Ok(Outcome::Failed)
        }
        Err(error) => report(error, err),
    }
}

/// Prints a failure: the daemon's refusals plainly, as ipvsadm prints the kernel's; the rest
/// prefixed with the program's name.
fn report(error: ClientError, err: &mut dyn Write) -> std::io::Result<Outcome> {
    match error {
        ClientError::Rejected { message, .. } => writeln!(err, "{message}")?,
        other => writeln!(err, "lvsadm: {other}")?,
    }
    Ok(Outcome::Failed)
}

/// The man page, in roff, generated from the command-line definition.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    // Section 8, system administration, where ipvsadm(8) is.
    clap_mangen::Man::new(Args::command())
        .section("8")
        .render(out)
}

/// A completion script for `shell`, generated from the command-line definition.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Args::command(), "lvsadm", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_documents_the_ipvsadm_options() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq \\(aq"),
            "{}",
            &page[..40]
        );
        for option in [
            "add\\-service",
            "tcp\\-service",
            "persistent",
            "sched\\-flags",
            "json",
            "start\\-daemon",
            "mcast\\-interface",
            "sync\\-maxlen",
        ] {
            assert!(page.contains(option), "the man page lacks {option}");
        }
    }

    #[test]
    fn completions_are_generated_for_every_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("add-service"), "{shell}");
        }
    }

    #[tokio::test]
    async fn a_bad_rules_file_asks_nothing_of_the_daemon() {
        // The socket does not exist: reaching the daemon would be a different failure.
        let socket = Path::new("/nonexistent/lvs.sock");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = run(
            Command::Restore,
            socket,
            &NumericOnly,
            || Ok("-A -t 10.0.0.1:80\n-A -f 1\n".to_owned()),
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Usage);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "line 2: firewall-mark services (-f) are not supported by lvs\n\
             lvsadm: nothing was restored\n"
        );
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_reported_with_the_program_name() {
        let socket = Path::new("/nonexistent/lvs.sock");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = run(
            Command::Save { numeric: true },
            socket,
            &NumericOnly,
            unreachable_rules,
            &mut out,
            &mut err,
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Failed);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with("lvsadm: cannot reach the lvs daemon at /nonexistent/lvs.sock: "),
            "{err}"
        );
    }

    fn unreachable_rules() -> std::io::Result<String> {
        Err(std::io::Error::other("only -R reads rules"))
    }
}
