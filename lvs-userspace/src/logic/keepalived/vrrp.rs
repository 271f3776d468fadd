//! `import-keepalived --vrrp-out`: the keepalived.conf that keepalived keeps running beside
//! lvs. It is the original text with the `virtual_server` and `virtual_server_group` blocks
//! cut out (lvs balances and checks those now) and everything else left as it was written:
//! `global_defs`, `vrrp_instance`, `vrrp_sync_group`, `vrrp_script`, `track_*`, notify
//! scripts, comments and quoting. Cutting lines of the text, rather than writing the parsed
//! statements back, is what keeps it faithful: keepalived reads the same words it read before.
//!
//! The sync daemon statements (`lvs_sync_daemon`, `lvs_sync_daemon_interface`) are cut too,
//! each line turned into a comment that says why: lvs's `[sync]` section syncs the
//! connections now, and keepalived would start the kernel's IPVS sync daemon beside it.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    import::Problem,
    sync::is_sync_daemon,
    syntax::{self, Statement, SyntaxError},
};

/// The top-level blocks that lvs takes over from keepalived.
const TAKEN_BY_LVS: [&str; 2] = ["virtual_server", "virtual_server_group"];

/// Why the VRRP part could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("{0}")]
    Syntax(SyntaxError),
    /// A block lvs takes shares a line with one keepalived keeps, so no cut of whole lines
    /// separates them.
    #[error("{0}")]
    SharedLine(Problem),
}

/// keepalived.conf `text` without its `virtual_server` and `virtual_server_group` blocks,
/// with a first comment line saying where it came from (`source`).
pub fn vrrp_only(text: &str, source: &str) -> Result<String, SplitError> {
    let statements = syntax::parse(text).map_err(SplitError::Syntax)?;
    let (taken, kept): (Vec<&Statement>, Vec<&Statement>) = statements
        .iter()
        .partition(|s| TAKEN_BY_LVS.contains(&s.keyword.as_str()));
    let cut: BTreeSet<usize> = taken.iter().flat_map(|s| s.line..=s.end_line).collect();
    if let Some(shared) = kept
        .iter()
        .find(|s| (s.line..=s.end_line).any(|line| cut.contains(&line)))
    {
        return Err(SplitError::SharedLine(Problem {
            line: shared.line,
            message: format!(
                "{} shares a line with a virtual_server block; put each on lines of its own",
                shared.keyword
            ),
        }));
    }
    let commented = sync_daemon_lines(text, &statements)?;
    let mut out = format!(
        "! Written by `lvs import-keepalived` from {source}: keepalived's part. The \
         virtual_server blocks are in lvs's config now.\n"
    );
    // A cut block leaves the blank lines around it; one blank line is kept of each run.
    let mut blank_before = true;
    for (index, line) in text.lines().enumerate() {
        if cut.contains(&(index + 1)) {
            continue;
        }
        if let Some(keyword) = commented.get(&(index + 1)) {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}! {}  <- cut by `lvs import-keepalived`: lvs's [sync] section \
                 ({keyword}) syncs the connections now\n",
                line.trim()
            ));
            blank_before = false;
            continue;
        }
        let blank = line.trim().is_empty();
        if !(blank && blank_before) {
            out.push_str(line);
            out.push('\n');
        }
        blank_before = blank;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok(out)
}

/// The lines of the sync daemon statements, wherever they are, with their keyword. Each must
/// be a line of its own (no brace of an enclosing block on it), so that turning the line into
/// a comment leaves the blocks as they were.
fn sync_daemon_lines(
    text: &str,
    statements: &[Statement],
) -> Result<BTreeMap<usize, String>, SplitError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = BTreeMap::new();
    let mut pending: Vec<&Statement> = statements.iter().collect();
    while let Some(statement) = pending.pop() {
        if is_sync_daemon(&statement.keyword) {
            let code = lines
                .get(statement.line - 1)
                .map(|line| line.split(['#', '!']).next().unwrap_or_default())
                .unwrap_or_default();
            if statement.line != statement.end_line
                || code.contains(['{', '}'])
                || !code.trim_start().starts_with(statement.keyword.as_str())
            {
                return Err(SplitError::SharedLine(Problem {
                    line: statement.line,
                    message: format!(
                        "{} shares a line with other statements; put it on a line of its own",
                        statement.keyword
                    ),
                }));
            }
            found.insert(statement.line, statement.keyword.clone());
        }
        pending.extend(statement.block.iter().flatten());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_blocks_lvs_takes_are_cut() {
        let text = "global_defs {\n router_id A\n}\n\nvirtual_server 192.0.2.10 80\n{\n \
                    lb_algo rr\n}\n\nvirtual_server_group G { 192.0.2.11 80 }\n\n\
                    vrrp_instance VI_1 { # keep me\n state MASTER\n}\n\n";
        assert_eq!(
            vrrp_only(text, "in.conf").unwrap(),
            "! Written by `lvs import-keepalived` from in.conf: keepalived's part. The \
             virtual_server blocks are in lvs's config now.\n\
             global_defs {\n router_id A\n}\n\nvrrp_instance VI_1 { # keep me\n state MASTER\n}\n"
        );
    }

    #[test]
    fn sync_daemon_lines_become_comments() {
        let text = "global_defs {\n   router_id A\n   lvs_sync_daemon eth0 VI_1 id 51 # sync\n}\n\
                    vrrp_instance VI_1 {\n lvs_sync_daemon_interface eth0\n}\n";
        assert_eq!(
            vrrp_only(text, "in.conf").unwrap(),
            "! Written by `lvs import-keepalived` from in.conf: keepalived's part. The \
             virtual_server blocks are in lvs's config now.\n\
             global_defs {\n   router_id A\n   ! lvs_sync_daemon eth0 VI_1 id 51 # sync  <- cut \
             by `lvs import-keepalived`: lvs's [sync] section (lvs_sync_daemon) syncs the \
             connections now\n}\n\
             vrrp_instance VI_1 {\n ! lvs_sync_daemon_interface eth0  <- cut by `lvs \
             import-keepalived`: lvs's [sync] section (lvs_sync_daemon_interface) syncs the \
             connections now\n}\n"
        );
        let shared = "global_defs { lvs_sync_daemon eth0 VI_1 }\n";
        assert_eq!(
            vrrp_only(shared, "in.conf").unwrap_err().to_string(),
            "line 1: lvs_sync_daemon shares a line with other statements; put it on a line of \
             its own"
        );
    }

    #[test]
    fn a_shared_line_or_bad_syntax_writes_nothing() {
        let shared = "virtual_server 192.0.2.10 80 {\n lb_algo rr\n} vrrp_script s {\n}\n";
        assert_eq!(
            vrrp_only(shared, "in.conf").unwrap_err().to_string(),
            "line 3: vrrp_script shares a line with a virtual_server block; put each on lines \
             of its own"
        );
        assert_eq!(
            vrrp_only("vrrp_instance VI_1 {\n", "in.conf")
                .unwrap_err()
                .to_string(),
            "line 1: `{` is never closed"
        );
    }
}
