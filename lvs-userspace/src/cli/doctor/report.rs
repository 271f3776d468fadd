//! The doctor's findings and how they are shown: text for people, JSON for tools. Pure.

use std::fmt::Write as _;

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, but not a fault of this cluster's set-up.
    Warn,
    /// Wrong: traffic is or will be lost or misrouted.
    Fail,
    /// Could not be checked (its precondition failed); the reason is in the detail.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// What a check is, in the JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The director's own settings.
    DirectorArpIgnore,
    /// The real server is on the director interface's segment.
    OnLink,
    /// The real server answers ARP for its own address.
    ArpOwnAddress,
    /// The real server does not answer ARP for a VIP.
    ArpVip,
    /// The real server answers neighbour solicitations for its own IPv6 address.
    NdpOwnAddress,
    /// The real server does not answer neighbour solicitations for an IPv6 VIP.
    NdpVip,
    /// Hosts other than real servers answer ARP or NDP for a VIP.
    VipAnswerers,
    /// The health-check target accepts connections.
    HealthCheck,
}

/// One finding: about what, which check, how it came out, why, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub subject: String,
    pub check: Check,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(subject: impl Into<String>, check: Check, status: Status, detail: String) -> Self {
        Self {
            subject: subject.into(),
            check,
            status,
            detail,
            fix: None,
        }
    }

    pub fn with_fix(mut self, fix: String) -> Self {
        self.fix = Some(fix);
        self
    }
}

/// Everything the doctor found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no finding is a failure.
    pub ok: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(findings: Vec<Finding>) -> Self {
        Self {
            ok: findings.iter().all(|f| f.status != Status::Fail),
            findings,
        }
    }

    pub fn ok(&self) -> bool {
        self.ok
    }

    /// Findings grouped by subject, in the order subjects first appear, each with its fix
    /// under it, and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut subjects: Vec<&str> = Vec::new();
        for finding in &self.findings {
            if !subjects.contains(&finding.subject.as_str()) {
                subjects.push(&finding.subject);
            }
        }
        for subject in &subjects {
            let _ = writeln!(out, "{subject}");
            for finding in self.findings.iter().filter(|f| f.subject == *subject) {
                let _ = writeln!(out, "  {:<5} {}", finding.status.label(), finding.detail);
                if let Some(fix) = &finding.fix {
                    let _ = writeln!(out, "        fix: {fix}");
                }
            }
        }
        let count = |status| self.findings.iter().filter(|f| f.status == status).count();
        let (failures, warnings) = (count(Status::Fail), count(Status::Warn));
        let _ = writeln!(
            out,
            "{}: {failures} problem{}, {warnings} warning{}",
            if self.ok { "OK" } else { "NOT OK" },
            if failures == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new(vec![
            Finding::new(
                "real server 10.77.0.11",
                Check::OnLink,
                Status::Ok,
                "on the segment of eth0 (10.77.0.1/24)".into(),
            ),
            Finding::new(
                "real server 10.77.0.12",
                Check::ArpVip,
                Status::Fail,
                "answers ARP for the VIP 10.77.0.100".into(),
            )
            .with_fix("run `lvs realserver up 10.77.0.100` on 10.77.0.12".into()),
            Finding::new(
                "real server 10.77.0.11",
                Check::HealthCheck,
                Status::Warn,
                "slow".into(),
            ),
        ])
    }

    #[test]
    fn text_groups_by_subject_with_fixes_and_a_summary() {
        assert_eq!(
            sample().render(),
            "real server 10.77.0.11\n\
             \x20 ok    on the segment of eth0 (10.77.0.1/24)\n\
             \x20 warn  slow\n\
             real server 10.77.0.12\n\
             \x20 FAIL  answers ARP for the VIP 10.77.0.100\n\
             \x20       fix: run `lvs realserver up 10.77.0.100` on 10.77.0.12\n\
             NOT OK: 1 problem, 1 warning\n"
        );
        assert_eq!(Report::new(vec![]).render(), "OK: 0 problems, 0 warnings\n");
    }

    #[test]
    fn json_names_checks_and_statuses_in_snake_case() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["findings"][1]["check"], "arp_vip");
        assert_eq!(json["findings"][1]["status"], "fail");
        assert_eq!(json["findings"][0]["fix"], serde_json::Value::Null);
        assert!(json["findings"][0].get("fix").is_none(), "no fix, no field");
    }

    #[test]
    fn warnings_and_skips_do_not_make_a_report_fail() {
        let report = Report::new(vec![
            Finding::new("x", Check::OnLink, Status::Warn, String::new()),
            Finding::new("x", Check::OnLink, Status::Skip, String::new()),
        ]);
        assert!(report.ok());
    }
}
