//! A URL's `regex`: the body of the answer must match it (or, with `regex_no_match`, must
//! not), as keepalived's HTTP_GET and SSL_GET do with PCRE2.
//!
//! lvs matches with the `regex` crate, which runs in time linear in the body whatever the
//! pattern, so an answer cannot make a check spin. Its syntax is PCRE's without
//! look-around and backreferences; a pattern that uses them is a config error. As in PCRE2
//! by default, matching is on bytes with ASCII classes (`\w`, `\d`, case folding); the
//! `utf` or `ucp` option makes them Unicode-aware. keepalived's `regex_options` that have a
//! counterpart here are accepted (`caseless`, `multiline`, `dotall`, `extended`, `ungreedy`,
//! `utf`, `ucp`, `never_utf`, `never_ucp`); others are refused rather than ignored.
//! `regex_min_offset` and `regex_max_offset` bound where in the body a match may start.
//! `regex_stack` tunes PCRE2's JIT stack and has no meaning here.

use std::{cmp::Ordering, fmt, hash::Hash};

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use toml::Spanned;

use super::validate::Sink;
use crate::base::health::Failure;

/// How much of a body is kept for matching. Health pages are small; a larger body is
/// matched on its first MiB (its digest still covers all of it).
pub const MAX_BODY_MATCHED: usize = 1 << 20;

/// What a `regex_options` word does to the pattern.
type ApplyOption = fn(&mut RegexBuilder);

/// The `regex_options` accepted, and what each does to the pattern.
const OPTIONS: [(&str, ApplyOption); 9] = [
    ("caseless", |b| {
        b.case_insensitive(true);
    }),
    ("multiline", |b| {
        b.multi_line(true);
    }),
    ("dotall", |b| {
        b.dot_matches_new_line(true);
    }),
    ("extended", |b| {
        b.ignore_whitespace(true);
    }),
    ("ungreedy", |b| {
        b.swap_greed(true);
    }),
    ("utf", |b| {
        b.unicode(true);
    }),
    ("ucp", |b| {
        b.unicode(true);
    }),
    // PCRE2's default already: bytes and ASCII classes.
    ("never_utf", |_| {}),
    ("never_ucp", |_| {}),
];

/// A compiled URL regex with its settings. Two are equal when their settings are, so that
/// equal checks are still shared.
#[derive(Clone)]
pub struct BodyRegex {
    pattern: String,
    /// Sorted and without repeats, so that the order they were written in does not matter.
    options: Vec<String>,
    no_match: bool,
    min_offset: usize,
    /// The last position where a match may start.
    max_offset: Option<usize>,
    compiled: Regex,
}

impl BodyRegex {
    /// Compiles `pattern` with keepalived's options; the error says what is wrong, in one line.
    pub fn new(
        pattern: &str,
        options: &[String],
        no_match: bool,
        min_offset: usize,
        max_offset: Option<usize>,
    ) -> Result<Self, String> {
        let mut options = options.to_vec();
        options.sort();
        options.dedup();
        let mut builder = RegexBuilder::new(pattern);
        builder.unicode(false);
        for option in &options {
            let Some((_, apply)) = OPTIONS.iter().find(|(name, _)| name == option) else {
                let known: Vec<&str> = OPTIONS.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "{option:?} is not a regex option lvs supports ({})",
                    known.join(", ")
                ));
            };
            apply(&mut builder);
        }
        if let Some(max) = max_offset.filter(|&max| max < min_offset) {
            return Err(format!(
                "regex_min_offset {min_offset} is past regex_max_offset {max}"
            ));
        }
        let compiled = builder
            .build()
            .map_err(|error| format!("invalid regex {pattern:?}: {}", error_line(&error)))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            options,
            no_match,
            min_offset,
            max_offset,
            compiled,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether a match starts within the offsets.
    pub fn finds(&self, body: &[u8]) -> bool {
        if self.min_offset > body.len() {
            return false;
        }
        // The leftmost match from min_offset starts before any other, so it alone decides
        // whether one starts by max_offset. Searching from the offset (not from a slice)
        // lets anchors and word boundaries see the bytes before it, as PCRE2 does.
        self.compiled
            .find_at(body, self.min_offset)
            .is_some_and(|found| self.max_offset.is_none_or(|max| found.start() <= max))
    }

    /// The verdict on a body: it must match, or with `regex_no_match` it must not.
    pub fn judge(&self, body: &[u8]) -> Result<(), Failure> {
        let matched = self.finds(body);
        if matched == self.no_match {
            return Err(Failure::Regex {
                pattern: self.pattern.clone(),
                matched,
            });
        }
        Ok(())
    }

    fn key(&self) -> (&str, &[String], bool, usize, Option<usize>) {
        (
            &self.pattern,
            &self.options,
            self.no_match,
            self.min_offset,
            self.max_offset,
        )
    }
}

/// The one line of a regex error that says what is wrong; the crate's message also draws
/// the pattern with a caret over several lines.
fn error_line(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text.lines().last().unwrap_or("invalid"))
        .to_owned()
}

impl fmt::Debug for BodyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRegex")
            .field("pattern", &self.pattern)
            .field("options", &self.options)
            .field("no_match", &self.no_match)
            .field("min_offset", &self.min_offset)
            .field("max_offset", &self.max_offset)
            .finish()
    }
}

impl PartialEq for BodyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for BodyRegex {}

impl Hash for BodyRegex {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for BodyRegex {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BodyRegex {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// `regex_options = "caseless multiline"` (keepalived's words) or a list.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawWords {
    Line(String),
    List(Vec<String>),
}

impl RawWords {
    fn words(&self) -> Vec<String> {
        match self {
            RawWords::Line(line) => line.split_whitespace().map(str::to_owned).collect(),
            RawWords::List(list) => list.clone(),
        }
    }
}

/// A url block's regex keys, as written.
pub(super) struct RawRegex<'a> {
    pub regex: Option<&'a Spanned<String>>,
    pub no_match: Option<&'a Spanned<bool>>,
    pub options: Option<&'a Spanned<RawWords>>,
    pub min_offset: Option<&'a Spanned<i64>>,
    pub max_offset: Option<&'a Spanned<i64>>,
}

/// Validates a url block's regex keys: `Ok(None)` without a regex, `Err` after reporting.
pub(super) fn validate(
    raw: RawRegex<'_>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Result<Option<BodyRegex>, ()> {
    let Some(pattern) = raw.regex else {
        let stray = [
            ("regex_no_match", raw.no_match.map(Spanned::span)),
            ("regex_options", raw.options.map(Spanned::span)),
            ("regex_min_offset", raw.min_offset.map(Spanned::span)),
            ("regex_max_offset", raw.max_offset.map(Spanned::span)),
        ];
        let mut reported = false;
        for (name, span) in stray {
            if let Some(span) = span {
                sink.report(&span, &format!("{field}.{name}"), "needs regex");
                reported = true;
            }
        }
        return if reported { Err(()) } else { Ok(None) };
    };
    let mut offset = |raw: Option<&Spanned<i64>>, name: &str| -> Result<Option<usize>, ()> {
        let Some(raw) = raw else { return Ok(None) };
        match usize::try_from(*raw.get_ref()) {
            Ok(value) => Ok(Some(value)),
            Err(_) => {
                sink.report(
                    &raw.span(),
                    &format!("{field}.{name}"),
                    format!("{} is not an offset (0 or more)", raw.get_ref()),
                );
                Err(())
            }
        }
    };
    let min_offset = offset(raw.min_offset, "regex_min_offset");
    let max_offset = offset(raw.max_offset, "regex_max_offset");
    let (Ok(min_offset), Ok(max_offset)) = (min_offset, max_offset) else {
        return Err(());
    };
    let options = raw.options.map(|o| o.get_ref().words()).unwrap_or_default();
    let no_match = raw.no_match.is_some_and(|n| *n.get_ref());
    BodyRegex::new(
        pattern.get_ref(),
        &options,
        no_match,
        min_offset.unwrap_or(0),
        max_offset,
    )
    .map(Some)
    .map_err(|message| {
        // Each problem is reported at the key it comes from.
        let (name, span) = if message.starts_with("regex_min_offset") {
            ("regex_min_offset", raw.min_offset.map(Spanned::span))
        } else if message.contains("regex option") {
            ("regex_options", raw.options.map(Spanned::span))
        } else {
            ("regex", Some(pattern.span()))
        };
        sink.report(
            &span.unwrap_or_else(|| pattern.span()),
            &format!("{field}.{name}"),
            message,
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str, options: &[&str]) -> BodyRegex {
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        BodyRegex::new(pattern, &options, false, 0, None).unwrap()
    }

    fn error(pattern: &str, options: &[&str], min: usize, max: Option<usize>) -> String {
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        BodyRegex::new(pattern, &options, false, min, max).unwrap_err()
    }

    #[test]
    fn the_body_must_match_or_with_no_match_must_not() {
        let healthy = regex(r"status: (ok|degraded)\b", &[]);
        assert_eq!(healthy.judge(b"db: up\nstatus: ok\n"), Ok(()));
        assert_eq!(
            healthy.judge(b"status: down"),
            Err(Failure::Regex {
                pattern: r"status: (ok|degraded)\b".into(),
                matched: false
            })
        );
        let no_error = BodyRegex::new("(?i)error", &[], true, 0, None).unwrap();
        assert_eq!(no_error.judge(b"all fine"), Ok(()));
        let failure = no_error.judge(b"an ERROR occurred").unwrap_err();
        assert_eq!(
            failure.to_string(),
            "body matches regex \"(?i)error\" (regex_no_match)"
        );
        assert_eq!(
            healthy.judge(b"").unwrap_err().to_string(),
            "body does not match regex \"status: (ok|degraded)\\\\b\""
        );
    }

    #[test]
    fn offsets_bound_where_a_match_may_start() {
        let at = |min, max| BodyRegex::new("ok", &[], false, min, max).unwrap();
        let body = b"0123ok789ok";
        assert!(at(0, None).finds(body));
        assert!(
            at(4, Some(4)).finds(body),
            "a match starting exactly at both"
        );
        assert!(at(5, None).finds(body), "the second one, at 9");
        assert!(!at(5, Some(8)).finds(body), "none starts within 5..=8");
        assert!(!at(10, None).finds(body));
        assert!(!at(100, None).finds(body), "past the end of the body");
        assert!(at(0, Some(3)).finds(b"abcok"), "starts at 3");
        assert!(!at(0, Some(2)).finds(b"abcok"));
        let anchored = BodyRegex::new(r"\bok", &[], false, 5, None).unwrap();
        assert!(
            !anchored.finds(b"xxxxxok"),
            "a word boundary sees the byte before the offset"
        );
    }

    #[test]
    fn options_are_keepalived_s_names() {
        assert!(!regex("ok", &[]).finds(b"OK"));
        assert!(regex("ok", &["caseless"]).finds(b"OK"));
        assert!(regex("^b$", &["multiline"]).finds(b"a\nb\nc"));
        assert!(!regex("^b$", &[]).finds(b"a\nb\nc"));
        assert!(regex("a.c", &["dotall"]).finds(b"a\nc"));
        assert!(regex("a b c", &["extended"]).finds(b"abc"));
        assert!(regex(r"^\w+$", &[]).finds(b"abc"));
        assert!(
            !regex(r"^\w+$", &[]).finds("caf\u{e9}".as_bytes()),
            "ASCII classes by default, as PCRE2"
        );
        assert!(regex(r"^\w+$", &["utf"]).finds("caf\u{e9}".as_bytes()));
        assert!(
            regex("^.$", &[]).finds(b"\xff"),
            "bytes, valid UTF-8 or not"
        );
        assert_eq!(
            regex("a", &["caseless", "dotall"]),
            regex("a", &["dotall", "caseless", "dotall"]),
            "the same options in any order are the same regex"
        );
        assert_ne!(regex("a", &["caseless"]), regex("a", &[]));
    }

    #[test]
    fn bad_settings_are_explained_in_one_line() {
        assert_eq!(
            error("(unclosed", &[], 0, None),
            "invalid regex \"(unclosed\": unclosed group"
        );
        assert!(
            error(r"(a)\1", &[], 0, None).starts_with("invalid regex \"(a)\\\\1\": "),
            "backreferences are not supported"
        );
        assert!(
            error("a", &["alt_bsux"], 0, None).starts_with("\"alt_bsux\" is not a regex option")
        );
        assert_eq!(
            error("a", &[], 10, Some(9)),
            "regex_min_offset 10 is past regex_max_offset 9"
        );
    }
}
