//! UDP_CHECK's and DNS_CHECK's own keywords (PING_CHECK has none), checked by the config's
//! rules (`health::datagram`) so that what is written is what `lvs check` takes.

use super::{
    super::output::{Checker, RequireReply},
    Importer, Statement,
};
use crate::logic::config::health::{
    DnsType, HexPattern,
    datagram::{DEFAULT_MAX_REPLY_LENGTH, check_dns_name},
};

impl Importer {
    /// Reads a keyword of `kind`'s own into `checker`; false if it is not one.
    pub(super) fn datagram_key(
        &mut self,
        at: &Statement,
        kind: &str,
        checker: &mut Checker,
    ) -> bool {
        match (kind, at.keyword.as_str()) {
            ("UDP_CHECK", "payload") => checker.payload = self.hex(at, false),
            ("UDP_CHECK", "require_reply") if at.args.is_empty() => {
                checker.require_reply = Some(RequireReply::Any(true));
            }
            ("UDP_CHECK", "require_reply") => {
                checker.require_reply = self.hex(at, true).map(RequireReply::Pattern);
            }
            ("UDP_CHECK", "min_reply_length") => checker.min_reply_length = self.reply_length(at),
            ("UDP_CHECK", "max_reply_length") => checker.max_reply_length = self.reply_length(at),
            ("DNS_CHECK", "type") => {
                checker.query_type = self.value(at).and_then(|text| match DnsType::parse(text) {
                    Ok(query_type) => Some(query_type.name().to_owned()),
                    Err(message) => {
                        self.problem(at, message);
                        None
                    }
                });
            }
            // keepalived keeps the first name and reports the others.
            ("DNS_CHECK", "name") if checker.name.is_some() => {
                self.problem(at, "a second name in DNS_CHECK is not imported");
            }
            ("DNS_CHECK", "name") => {
                checker.name = self.value(at).and_then(|name| match check_dns_name(name) {
                    Ok(()) => Some(name.to_owned()),
                    Err(message) => {
                        self.problem(at, message);
                        None
                    }
                });
            }
            _ => return false,
        }
        true
    }

    /// A HEX_STR, which keepalived reads from all the words after the keyword.
    fn hex(&mut self, at: &Statement, wildcards: bool) -> Option<String> {
        let text = at.args.join(" ");
        match HexPattern::parse(&text, wildcards) {
            Ok(_) => Some(text),
            Err(message) => {
                self.problem(at, format!("{}: {message}", at.keyword));
                None
            }
        }
    }

    /// A reply length, 0 to 65535 as keepalived takes.
    fn reply_length(&mut self, at: &Statement) -> Option<u16> {
        let length = self.number(at)?;
        let fits = u16::try_from(length).ok();
        if fits.is_none() {
            self.problem(
                at,
                format!(
                    "{}: {length} is not a length in bytes (0 to 65535)",
                    at.keyword
                ),
            );
        }
        fits
    }

    /// The reply lengths of the UDP_CHECK `at`, as a whole: keepalived checks them only with
    /// `require_reply` (lvs's config refuses them without it), and reports a minimum above
    /// the maximum, which fails every reply.
    pub(super) fn reply_lengths(&mut self, at: &Statement, checker: &mut Checker) {
        let block = at.block.as_deref().unwrap_or_default();
        let last = |keyword: &str| block.iter().rev().find(|s| s.keyword == keyword);
        let required = block.iter().any(|s| s.keyword == "require_reply");
        if !required {
            for keyword in ["min_reply_length", "max_reply_length"] {
                if let Some(s) = last(keyword) {
                    self.note(
                        s,
                        format!(
                            "{keyword} is left out: keepalived checks reply lengths only with require_reply"
                        ),
                    );
                }
            }
            checker.min_reply_length = None;
            checker.max_reply_length = None;
            return;
        }
        let min = checker.min_reply_length.unwrap_or(0);
        let max = checker.max_reply_length.unwrap_or(DEFAULT_MAX_REPLY_LENGTH);
        if min > max
            && let Some(s) = last("min_reply_length").or_else(|| last("max_reply_length"))
        {
            self.problem(
                s,
                format!(
                    "min_reply_length {min} is more than max_reply_length {max}: every reply would fail"
                ),
            );
        }
    }
}
