//! `import-keepalived --vrrp-out`: the keepalived.conf that keepalived keeps running beside
//! lvs. It is the original text with the `virtual_server` and `virtual_server_group` blocks
//! cut out (lvs balances and checks those now) and everything else left as it was written:
//! `global_defs`, `vrrp_instance`, `vrrp_sync_group`, `vrrp_script`, `track_*`, notify
//! scripts, comments and quoting. Cutting lines of the text, rather than writing the parsed
//! statements back, is what keeps it faithful: keepalived reads the same words it read before.

use std::collections::BTreeSet;

use super::{
    import::Problem,
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
