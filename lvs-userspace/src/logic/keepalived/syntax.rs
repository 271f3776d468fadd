//! keepalived.conf's grammar: lines of words, `{ ... }` blocks, `#` and `!` comments,
//! double-quoted strings.
//!
//! A statement is a keyword and the words after it on its line; if a `{` follows (on the
//! same line or the next ones), the statements up to the matching `}` are its block:
//!
//! ```text
//! virtual_server 192.0.2.10 80 {     # keyword "virtual_server", args ["192.0.2.10", "80"]
//!     lb_algo wlc
//!     real_server 192.0.2.21 80 {
//!         TCP_CHECK { connect_timeout 3 }
//!     }
//! }
//! ```
//!
//! As in keepalived, a block may also open and close on one line (`TCP_CHECK { ... }`):
//! the words inside become statements of their own only at a line break or brace, so a
//! one-line block holds one statement.

use std::fmt;

/// One statement, with the line its keyword is on and the line it ends on (its last word,
/// or the `}` that closes its block), so that a statement can be cut out of the text whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub keyword: String,
    pub args: Vec<String>,
    pub line: usize,
    pub end_line: usize,
    pub block: Option<Vec<Statement>>,
}

/// A syntax error and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    LineEnd,
}

/// Parses a whole file into its top-level statements.
pub fn parse(text: &str) -> Result<Vec<Statement>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
    };
    let (statements, _) = parser.statements(None)?;
    Ok(statements)
}

/// Splits text into words, braces and line ends, each with its line number.
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '#' | '!' => break,
                '{' | '}' => {
                    chars.next();
                    tokens.push((if c == '{' { Token::Open } else { Token::Close }, number));
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(SyntaxError {
                                    line: number,
                                    message: "unterminated quoted string".into(),
                                });
                            }
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(escaped) => word.push(escaped),
                                None => word.push('\\'),
                            },
                            Some(other) => word.push(other),
                        }
                    }
                    tokens.push((Token::Word(word), number));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '{' | '}' | '"') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push((Token::Word(word), number));
                }
            }
        }
        tokens.push((Token::LineEnd, number));
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: &'a [(Token, usize)],
    next: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(Token, usize)> {
        self.tokens.get(self.next)
    }

    /// Statements up to the end of the file (`opened_at` is None) or the `}` that closes a
    /// block opened at `opened_at`. The line of that `}` comes back with them.
    fn statements(
        &mut self,
        opened_at: Option<usize>,
    ) -> Result<(Vec<Statement>, usize), SyntaxError> {
        let mut statements = Vec::new();
        while let Some((token, line)) = self.peek().cloned() {
            self.next += 1;
            match token {
                Token::LineEnd => {}
                Token::Close => {
                    return match opened_at {
                        Some(_) => Ok((statements, line)),
                        None => Err(SyntaxError {
                            line,
                            message: "`}` without a matching `{`".into(),
                        }),
                    };
                }
                Token::Open => {
                    return Err(SyntaxError {
                        line,
                        message: "`{` without a keyword before it".into(),
                    });
                }
                Token::Word(keyword) => statements.push(self.statement(keyword, line)?),
            }
        }
        match opened_at {
            None => Ok((statements, self.tokens.last().map_or(0, |(_, line)| *line))),
            Some(line) => Err(SyntaxError {
                line,
                message: "`{` is never closed".into(),
            }),
        }
    }

    fn statement(&mut self, keyword: String, line: usize) -> Result<Statement, SyntaxError> {
        let mut args = Vec::new();
        let mut end_line = line;
        while let Some((Token::Word(word), word_line)) = self.peek() {
            args.push(word.clone());
            end_line = *word_line;
            self.next += 1;
        }
        // A block may open on a later line: skip line ends, but only if a `{` follows them.
        let mut lookahead = self.next;
        while let Some((Token::LineEnd, _)) = self.tokens.get(lookahead) {
            lookahead += 1;
        }
        let block = match self.tokens.get(lookahead) {
            Some((Token::Open, open_line)) => {
                let open_line = *open_line;
                self.next = lookahead + 1;
                let (block, close_line) = self.statements(Some(open_line))?;
                end_line = close_line;
                Some(block)
            }
            _ => None,
        };
        Ok(Statement {
            keyword,
            args,
            line,
            end_line,
            block,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(
        keyword: &str,
        args: &[&str],
        (line, end_line): (usize, usize),
        block: Option<Vec<Statement>>,
    ) -> Statement {
        Statement {
            keyword: keyword.into(),
            args: args.iter().map(|a| (*a).into()).collect(),
            line,
            end_line,
            block,
        }
    }

    #[test]
    fn blocks_comments_and_quotes() {
        let text = r#"
! Configuration File for keepalived
global_defs {
   router_id LVS_1   # trailing comment
}
virtual_server 10.0.0.1 80
{
    MISC_CHECK {
        misc_path "/usr/bin/check \"web\" # not a comment"
    }
    TCP_CHECK { connect_timeout 3 }
}
"#;
        let parsed = parse(text).unwrap();
        assert_eq!(
            parsed,
            vec![
                statement(
                    "global_defs",
                    &[],
                    (3, 5),
                    Some(vec![statement("router_id", &["LVS_1"], (4, 4), None)])
                ),
                statement(
                    "virtual_server",
                    &["10.0.0.1", "80"],
                    (6, 12),
                    Some(vec![
                        statement(
                            "MISC_CHECK",
                            &[],
                            (8, 10),
                            Some(vec![statement(
                                "misc_path",
                                &["/usr/bin/check \"web\" # not a comment"],
                                (9, 9),
                                None
                            )])
                        ),
                        statement(
                            "TCP_CHECK",
                            &[],
                            (11, 11),
                            Some(vec![statement("connect_timeout", &["3"], (11, 11), None)])
                        ),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn unbalanced_input_is_an_error_with_its_line() {
        let cases = [
            ("a {\n b 1\n", "line 1: `{` is never closed"),
            ("a 1\n}\n", "line 2: `}` without a matching `{`"),
            ("{\n", "line 1: `{` without a keyword before it"),
            ("a \"open\n", "line 1: unterminated quoted string"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), expected, "{text:?}");
        }
    }
}
