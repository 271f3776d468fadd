//! `-R`: rules in the form `ipvsadm -S [-n]` and `ipvsadm-save` write (and anything else
//! `ipvsadm -R` accepts: any ipvsadm command line that changes the table, one per line).
//!
//! Unlike ipvsadm, which applies each line as it reads it and stops at the first bad one,
//! every line is checked first and every problem is reported with its line number; only a
//! file without problems yields changes, which the daemon then applies all or none.

use std::fmt;

use clap::{CommandFactory as _, FromArgMatches as _};

use super::{Args, Command, names::Resolver};
use crate::logic::api::Change;

/// A change and the line it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based.
    pub line: usize,
    pub change: Change,
}

/// A line that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a rules file: the changes in order, or every line's problem.
pub fn parse(text: &str, names: &dyn Resolver) -> Result<Vec<Rule>, Vec<LineError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    // Building clap's command (some sixty flags with their help) costs as much as parsing a
    // line with it, so one is built for the whole file: it halved the time 2000 rules took.
    let mut command = Args::command();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let words = words(line);
        if words.is_empty() {
            continue;
        }
        match parse_line(&mut command, &words, names) {
            Ok(change) => rules.push(Rule {
                line: line_number,
                change,
            }),
            Err(message) => errors.push(LineError {
                line: line_number,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// The words of a line as ipvsadm's restore splits it: on blanks, up to a `#`, without the
/// word `ipvsadm` (so lines copied from a shell script restore too) or a leading `lvsadm`.
fn words(line: &str) -> Vec<&str> {
    let line = line.split_once('#').map_or(line, |(code, _)| code);
    line.split_whitespace()
        .enumerate()
        .filter(|(index, word)| *word != "ipvsadm" && !(*index == 0 && *word == "lvsadm"))
        .map(|(_, word)| word)
        .collect()
}

fn parse_line(
    command: &mut clap::Command,
    words: &[&str],
    names: &dyn Resolver,
) -> Result<Change, String> {
    let args = command
        .try_get_matches_from_mut(std::iter::once("lvsadm").chain(words.iter().copied()))
        .and_then(|matches| Args::from_arg_matches(&matches))
        .map_err(|error| clap_message(&error))?;
    if args.generate_man
        || args.generate_completions.is_some()
        || args.socket.as_os_str() != crate::logic::config::DEFAULT_CONTROL_SOCKET
    {
        return Err("lvsadm's own options (--socket, --generate-*) cannot be restored".into());
    }
    match Command::from_args(&args, names).map_err(|error| error.to_string())? {
        Command::Change(change) => Ok(change),
        Command::List(_) | Command::Save { .. } | Command::Restore | Command::Reload => Err(
            "only commands that change the table (-A -E -D -C -a -e -d -Z --set) can be restored"
                .into(),
        ),
        // A restore is one batch of table changes, all or none; a sync daemon is not part of
        // the table, so it is started by its own command or the config's [sync] section.
        Command::StartDaemon(_) | Command::StopDaemon(_) | Command::ListDaemons { .. } => Err(
            "the sync daemon commands cannot be restored: run them on their own, or use the \
             config's [sync] section"
                .into(),
        ),
    }
}

/// The one line of a clap error that says what is wrong, without clap's "error: " prefix,
/// usage and tips.
fn clap_message(error: &clap::Error) -> String {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            "-h and -v cannot be restored".to_owned()
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid command line");
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    }
}

#[cfg(test)]
mod tests;
