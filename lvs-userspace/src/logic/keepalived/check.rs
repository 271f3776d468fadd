//! The import's last word: every imported service is checked by the config's own rules, as
//! `lvs check` will check the TOML, and what they refuse is reported at the keepalived
//! statement it came from.
//!
//! The import spells out the rules it knows (a port's range, a url's path) with keepalived's
//! words. This check catches every rule it does not spell out (a regex that does not compile,
//! a digest that is not MD5, a user this system does not have), so that an import that
//! reports nothing always writes a config `lvs check` accepts: the promise that every value
//! is imported or reported with its line does not depend on the import repeating each rule.

use super::{
    import::Problem,
    output::{Checker, Config, Director, RealServer, VirtualServer},
    syntax::Statement,
};
use crate::logic::config::{self, ConfigError};

/// What the config refuses in `service`, imported from the `virtual_server` statement `at`;
/// empty when `lvs check` would take it.
pub fn service(service: &VirtualServer, at: &Statement, interface: &str) -> Vec<Problem> {
    let alone = Config {
        director: Director {
            interface: interface.to_owned(),
            manage_vips: None,
        },
        sync: None,
        virtual_server: vec![service.clone()],
    };
    let text = match toml::to_string_pretty(&alone) {
        Ok(text) => text,
        Err(error) => {
            return vec![Problem {
                line: at.line,
                message: format!("this service cannot be written as TOML: {error}"),
            }];
        }
    };
    match config::parse(&text, "imported.toml") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems }) => problems
            .into_iter()
            .map(|problem| {
                let (line, keyword) = statement_of(service, at, &problem.field);
                let message = match keyword {
                    Some(keyword) => format!("{keyword}: {}", problem.message),
                    None => problem.message,
                };
                Problem { line, message }
            })
            .collect(),
        Err(other) => vec![Problem {
            line: at.line,
            message: other.to_string(),
        }],
    }
}

/// The line of the keepalived statement a config field names (`virtual_server[0].
/// real_server[1].HTTP_GET.url[0].digest`), found by walking the service's statements as the
/// field's path walks the TOML; the deepest block found when the path goes further than the
/// statements do. With it, the keyword of the statement when the path ends on one.
fn statement_of(service: &VirtualServer, at: &Statement, field: &str) -> (usize, Option<String>) {
    let mut statement = at;
    let mut server: Option<&RealServer> = None;
    let mut checker: Option<&Checker> = None;
    // The first segment is the service itself.
    for segment in field.split('.').skip(1) {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let next = match name {
            "real_server" => {
                server = index.and_then(|i| service.real_server.get(i));
                server.and_then(|s| child_at(statement, name, s.line))
            }
            "url" => {
                let url = checker.zip(index).and_then(|(c, i)| c.url.get(i));
                url.and_then(|u| child_at(statement, name, u.line))
            }
            "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" => {
                checker = server.and_then(|s| match name {
                    "HTTP_GET" => s.http_get.as_ref(),
                    "SSL_GET" => s.ssl_get.as_ref(),
                    "TCP_CHECK" => s.tcp_check.as_ref(),
                    _ => s.misc_check.as_ref(),
                });
                child(statement, name)
            }
            key => {
                return match child(statement, key) {
                    Some(found) => (found.line, Some(found.keyword.clone())),
                    None => (statement.line, None),
                };
            }
        };
        match next {
            Some(found) => statement = found,
            None => return (statement.line, None),
        }
    }
    (statement.line, None)
}

fn children(statement: &Statement) -> &[Statement] {
    statement.block.as_deref().unwrap_or_default()
}

fn child<'a>(statement: &'a Statement, keyword: &str) -> Option<&'a Statement> {
    children(statement).iter().find(|s| s.keyword == keyword)
}

fn child_at<'a>(statement: &'a Statement, keyword: &str, line: usize) -> Option<&'a Statement> {
    children(statement)
        .iter()
        .find(|s| s.keyword == keyword && s.line == line)
}
