//! Where a problem in a configuration file is, and what it is. The main config and the health
//! config report through these, so every problem reads `file:line: field: message`.

use std::{fmt, ops::Range};

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// Turns byte offsets in a file's text into line numbers for problems.
#[derive(Clone, Copy, Debug)]
pub struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, which problems name as `file`.
    pub fn new(text: &'a str, file: &'a str) -> Self {
        Self { text, file }
    }

    /// The line (from 1) that the span starts on; a span past the end is on the last line.
    pub fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    /// A problem with `field` at the start of `span`.
    pub fn problem(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.to_owned(),
            line: self.line(span),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_file_line_and_field() {
        let text = "a = 1\nb = 2\n\nc = 3";
        let at = Locator::new(text, "lvs.toml");
        let check = |span: Range<usize>, expected: &str| {
            assert_eq!(
                at.problem(&span, "field", "message").to_string(),
                expected,
                "{span:?}"
            );
        };
        check(0..1, "lvs.toml:1: field: message");
        check(6..7, "lvs.toml:2: field: message");
        check(12..13, "lvs.toml:3: field: message");
        check(13..14, "lvs.toml:4: field: message");
        // toml reports some errors at the end of the text, or past it.
        check(1000..1001, "lvs.toml:4: field: message");
    }
}
