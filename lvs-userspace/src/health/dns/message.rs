//! DNS messages, as far as `DNS_CHECK` needs them (RFC 1035 section 4): the one query it
//! sends, and the judgement of what comes back. Pure: no socket here.
//!
//! A reply is the answer to the query when it is at least a header long, carries the
//! query's id, is a response (QR) to a standard query, and, if it repeats a question,
//! repeats ours. Anything else (a stray or forged datagram, a truncated one) is not an
//! answer and the check keeps waiting, as keepalived does; an answer passes when its
//! response code is 0 (NOERROR).

use crate::logic::config::health::DnsType;

/// The header's length.
pub const HEADER: usize = 12;
/// The class asked for: IN.
const CLASS_IN: u16 = 1;
/// Flags of the query: a standard query, recursion desired (as keepalived asks).
const RECURSION_DESIRED: u16 = 0x0100;
const RESPONSE: u16 = 0x8000;
const OPCODE: u16 = 0x7800;

/// Builds the query for `name` (already checked by the config's `check_dns_name`; `.` is
/// the root) and `query_type`, with `id`.
pub fn query(id: u16, name: &str, query_type: DnsType) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&RECURSION_DESIRED.to_be_bytes());
    // One question, no answer, authority or additional records.
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    message.extend_from_slice(&question(name, query_type));
    message
}

/// The question section of the query: the name as labels, the type and the class.
fn question(name: &str, query_type: DnsType) -> Vec<u8> {
    let mut question = Vec::with_capacity(name.len() + 6);
    for label in name.split('.').filter(|label| !label.is_empty()) {
        // The config's rule keeps labels within 63 bytes; this keeps a message well formed
        // whatever it is given.
        let label = &label.as_bytes()[..label.len().min(63)];
        question.push(label.len() as u8);
        question.extend_from_slice(label);
    }
    question.push(0);
    question.extend_from_slice(&query_type.code().to_be_bytes());
    question.extend_from_slice(&CLASS_IN.to_be_bytes());
    question
}

/// What a datagram that came back is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The answer, without error: how many answer records it says it has.
    Answer { answers: u16 },
    /// The answer, with this response code (2: SERVFAIL, 3: NXDOMAIN, 5: REFUSED...).
    Error { rcode: u8 },
    /// Not an answer to the query, and why; the check keeps waiting.
    NotOurs(&'static str),
}

/// Judges `reply` against the query that was sent (`sent`, as `query` built it).
pub fn judge(sent: &[u8], reply: &[u8]) -> Reply {
    let (Some(header), Some(sent_header)) = (reply.get(..HEADER), sent.get(..HEADER)) else {
        return Reply::NotOurs("shorter than a DNS header");
    };
    let word = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if header[..2] != sent_header[..2] {
        return Reply::NotOurs("another query's id");
    }
    let flags = word(2);
    if flags & RESPONSE == 0 {
        return Reply::NotOurs("a query, not a response");
    }
    if flags & OPCODE != 0 {
        return Reply::NotOurs("not a standard query's response");
    }
    let questions = word(4);
    if questions > 0 {
        let ours = &sent[HEADER..];
        let Some(theirs) = reply.get(HEADER..HEADER + ours.len()) else {
            return Reply::NotOurs("its question is cut short");
        };
        // Names compare without regard to ASCII case (RFC 4343).
        if !theirs.eq_ignore_ascii_case(ours) {
            return Reply::NotOurs("it answers another question");
        }
    }
    match (flags & 0x000f) as u8 {
        0 => Reply::Answer { answers: word(6) },
        rcode => Reply::Error { rcode },
    }
}

/// The name of a response code, for the operator.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `sent` as a server would write it: the header with `flags`, the question
    /// repeated, `answers` counted (the records themselves are not read).
    fn reply_to(sent: &[u8], flags: u16, answers: u16) -> Vec<u8> {
        let mut reply = sent.to_vec();
        reply[2..4].copy_from_slice(&flags.to_be_bytes());
        reply[6..8].copy_from_slice(&answers.to_be_bytes());
        reply
    }

    #[test]
    fn the_query_is_keepalived_s() {
        let sent = query(0xbeef, "example.com", DnsType::A);
        let mut expected = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(sent, expected);
        assert_eq!(
            query(1, "example.com.", DnsType::A)[HEADER..],
            sent[HEADER..],
            "a final dot changes nothing"
        );
        assert_eq!(
            query(1, ".", DnsType::Soa)[HEADER..],
            [0, 0, 6, 0, 1],
            "the root is one empty label"
        );
    }

    #[test]
    fn an_answer_passes_and_an_error_code_fails() {
        let sent = query(7, "example.com", DnsType::Soa);
        assert_eq!(
            judge(&sent, &reply_to(&sent, 0x8180, 1)),
            Reply::Answer { answers: 1 }
        );
        assert_eq!(
            judge(&sent, &reply_to(&sent, 0x8183, 0)),
            Reply::Error { rcode: 3 }
        );
        assert_eq!(rcode_name(3), "NXDOMAIN");
        let mut shouting = reply_to(&sent, 0x8180, 0);
        shouting[HEADER + 1..HEADER + 8].copy_from_slice(b"EXAMPLE");
        assert_eq!(judge(&sent, &shouting), Reply::Answer { answers: 0 });
    }

    #[test]
    fn an_error_without_a_question_is_still_an_answer() {
        let sent = query(7, "example.com", DnsType::Soa);
        let mut formerr = reply_to(&sent, 0x8181, 0);
        formerr.truncate(HEADER);
        formerr[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(judge(&sent, &formerr), Reply::Error { rcode: 1 });
    }

    #[test]
    fn truncated_stray_and_lying_replies_are_not_answers() {
        let sent = query(7, "example.com", DnsType::A);
        let good = reply_to(&sent, 0x8180, 1);
        for cut in 0..good.len() {
            let judged = judge(&sent, &good[..cut]);
            assert!(
                matches!(judged, Reply::NotOurs(_)),
                "cut at {cut}: {judged:?}"
            );
        }
        let mut other_id = good.clone();
        other_id[1] ^= 1;
        assert_eq!(
            judge(&sent, &other_id),
            Reply::NotOurs("another query's id")
        );
        assert_eq!(
            judge(&sent, &reply_to(&sent, 0x0100, 0)),
            Reply::NotOurs("a query, not a response")
        );
        assert_eq!(
            judge(&sent, &reply_to(&sent, 0x8980, 0)),
            Reply::NotOurs("not a standard query's response")
        );
        let other_type = reply_to(&query(7, "example.com", DnsType::Aaaa), 0x8180, 1);
        assert_eq!(
            judge(&sent, &other_type),
            Reply::NotOurs("it answers another question")
        );
        let other_name = reply_to(&query(7, "example.org", DnsType::A), 0x8180, 1);
        assert_eq!(
            judge(&sent, &other_name),
            Reply::NotOurs("it answers another question")
        );
    }

    #[test]
    fn any_bytes_are_judged_without_panic() {
        let sent = query(7, "a.b", DnsType::Mx);
        let mut state = 0x2545_f491_u32;
        for length in 0..64 {
            let noise: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = judge(&sent, &noise);
            let mut prefixed = sent[..2].to_vec();
            prefixed.extend_from_slice(&noise);
            let _ = judge(&sent, &prefixed);
        }
    }
}
