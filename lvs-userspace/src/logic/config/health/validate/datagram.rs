//! Validation of the datagram checkers' keys (`UDP_CHECK`, `DNS_CHECK`, `PING_CHECK`), by
//! the rules of `health::datagram`.

use serde::Deserialize;
use toml::Spanned;

use super::{Inherited, RawCheck, Sink, address, endpoint};
use crate::logic::config::health::datagram::{
    DEFAULT_MAX_REPLY_LENGTH, DnsProbe, DnsType, HexPattern, PingProbe, ReplyRule, UdpProbe,
    check_dns_name,
};

/// `require_reply = true` (a reply must come) or `require_reply = "HEX_STR"` (and its first
/// bytes must match).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawRequireReply {
    Flag(bool),
    Pattern(String),
}

pub(super) fn validate_udp(
    raw: &RawCheck,
    inherited: &Inherited<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<UdpProbe> {
    let endpoint = endpoint(raw, inherited, field, sink);
    let payload = match raw.payload.as_ref() {
        None => Some(None),
        Some(text) => hex(text, false, &format!("{field}.payload"), sink).map(|p| Some(p.bytes)),
    };
    let reply = reply_rule(raw, field, sink);
    Some(UdpProbe {
        endpoint: endpoint?,
        payload: payload?,
        reply: reply?,
    })
}

/// `require_reply` and the reply lengths, which mean something only with it.
fn reply_rule(raw: &RawCheck, field: &str, sink: &mut Sink<'_, '_>) -> Option<Option<ReplyRule>> {
    let min = length(&raw.min_reply_length, "min_reply_length", field, sink);
    let max = length(&raw.max_reply_length, "max_reply_length", field, sink);
    let (required, pattern) = match raw.require_reply.as_ref().map(|r| (r, r.get_ref())) {
        None | Some((_, RawRequireReply::Flag(false))) => (false, Some(None)),
        Some((_, RawRequireReply::Flag(true))) => (true, Some(None)),
        Some((spanned, RawRequireReply::Pattern(text))) => {
            let at = Spanned::new(spanned.span(), text.clone());
            (
                true,
                hex(&at, true, &format!("{field}.require_reply"), sink).map(Some),
            )
        }
    };
    if !required {
        for (name, value) in [
            ("min_reply_length", &raw.min_reply_length),
            ("max_reply_length", &raw.max_reply_length),
        ] {
            if let Some(value) = value {
                sink.report(
                    &value.span(),
                    &format!("{field}.{name}"),
                    format!("{name} is only used with require_reply"),
                );
            }
        }
        return Some(None);
    }
    let min_length = min?.unwrap_or(0);
    let max_length = max?.unwrap_or(DEFAULT_MAX_REPLY_LENGTH);
    if min_length > max_length {
        let span = raw
            .min_reply_length
            .as_ref()
            .or(raw.max_reply_length.as_ref())
            .map(Spanned::span)
            .unwrap_or_default();
        sink.report(
            &span,
            &format!("{field}.min_reply_length"),
            format!(
                "min_reply_length {min_length} is more than max_reply_length {max_length}: \
                 every reply would fail"
            ),
        );
        return None;
    }
    Some(Some(ReplyRule {
        pattern: pattern?,
        min_length,
        max_length,
    }))
}

/// A reply length: 0 to 65535 bytes, as keepalived takes. `Some(None)` when not set.
fn length(
    raw: &Option<Spanned<i64>>,
    name: &str,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<Option<u16>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    match u16::try_from(*raw.get_ref()) {
        Ok(length) => Some(Some(length)),
        Err(_) => {
            sink.report(
                &raw.span(),
                &format!("{field}.{name}"),
                format!("{} is not a length in bytes (0 to 65535)", raw.get_ref()),
            );
            None
        }
    }
}

fn hex(
    raw: &Spanned<String>,
    wildcards: bool,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<HexPattern> {
    match HexPattern::parse(raw.get_ref(), wildcards) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            sink.report(&raw.span(), field, message);
            None
        }
    }
}

pub(super) fn validate_dns(
    raw: &RawCheck,
    inherited: &Inherited<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<DnsProbe> {
    let endpoint = endpoint(raw, inherited, field, sink);
    let query_type = match raw.query_type.as_ref() {
        None => Some(DnsType::Soa),
        Some(text) => DnsType::parse(text.get_ref())
            .map_err(|message| sink.report(&text.span(), &format!("{field}.type"), message))
            .ok(),
    };
    let name = match raw.name.as_ref() {
        None => Some(".".to_owned()),
        Some(name) => check_dns_name(name.get_ref())
            .map(|()| name.get_ref().clone())
            .map_err(|message| sink.report(&name.span(), &format!("{field}.name"), message))
            .ok(),
    };
    Some(DnsProbe {
        endpoint: endpoint?,
        query_type: query_type?,
        name: name?,
    })
}

pub(super) fn validate_ping(
    raw: &RawCheck,
    inherited: &Inherited<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<PingProbe> {
    let target = match raw.connect_ip.as_ref() {
        Some(ip) => address(ip, &format!("{field}.connect_ip"), sink),
        None => inherited.address,
    };
    let bind = match raw.bindto.as_ref() {
        Some(bind) => Some(address(bind, &format!("{field}.bindto"), sink)?),
        None => None,
    };
    Some(PingProbe {
        address: target?,
        bind,
    })
}
