//! What the status listener answers, as a pure function of the request line and the status
//! document: `/metrics` (Prometheus), `/status.json` (what `lvs status --json` prints) and
//! `/` (the status page, one self-contained HTML document that polls `/status.json`). The
//! listener itself (`io::web`) only carries bytes.

use crate::logic::{metrics, status::Status};

/// The status page: inline CSS and JavaScript, no external assets.
pub const PAGE: &str = include_str!("web/page.html");

/// The page may run its own inline script and style and fetch from its own origin, nothing
/// else: no external asset could load even if one crept in.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// An answer, before it becomes HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub content_type: &'static str,
    /// Headers beyond the content type and length.
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: String,
    /// A HEAD request gets the headers of a GET without the body.
    pub head: bool,
}

impl Reply {
    fn new(code: u16, content_type: &'static str, body: String) -> Self {
        Self {
            code,
            content_type,
            headers: vec![
                ("cache-control", "no-store"),
                ("x-content-type-options", "nosniff"),
            ],
            body,
            head: false,
        }
    }

    fn text(code: u16, body: &str) -> Self {
        Self::new(code, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

/// The answer to `method path` (the path may carry a query, which is ignored).
pub fn respond(method: &str, path: &str, status: &Status) -> Reply {
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut reply = Reply::text(405, "method not allowed: only GET and HEAD");
            reply.headers.push(("allow", "GET, HEAD"));
            return reply;
        }
    };
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let mut reply = match path {
        "/" | "/index.html" => {
            let mut reply = Reply::new(200, "text/html; charset=utf-8", PAGE.to_owned());
            reply.headers.push(("content-security-policy", PAGE_POLICY));
            reply
        }
        "/metrics" => match metrics::render(status) {
            Ok(text) => Reply::new(200, metrics::CONTENT_TYPE, text),
            Err(_) => Reply::text(500, "the metrics could not be rendered"),
        },
        "/status.json" => match serde_json::to_string_pretty(status) {
            Ok(json) => Reply::new(200, "application/json", json + "\n"),
            Err(_) => Reply::text(500, "the status could not be rendered"),
        },
        _ => Reply::text(404, "not found: try /, /metrics or /status.json"),
    };
    reply.head = head;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::{config::Timeouts, status::FlowTable};

    fn status() -> Status {
        Status {
            interface: "eth0".into(),
            xdp_mode: "generic".into(),
            timeouts: Timeouts::default(),
            counters: Vec::new(),
            flow_table: FlowTable::default(),
            services: Vec::new(),
            sync: Box::default(),
            bgp: None,
            deny: Vec::new(),
            service_lookup: Vec::new(),
        }
    }

    /// One line per case: method, path, expected code and content type.
    #[test]
    fn routes() {
        let check = |method: &str, path: &str, code: u16, content_type: &str| {
            let reply = respond(method, path, &status());
            assert_eq!(
                (reply.code, reply.content_type),
                (code, content_type),
                "{method} {path}"
            );
        };
        check("GET", "/", 200, "text/html; charset=utf-8");
        check("GET", "/?refresh=1", 200, "text/html; charset=utf-8");
        check("GET", "/metrics", 200, metrics::CONTENT_TYPE);
        check("GET", "/status.json", 200, "application/json");
        check("HEAD", "/metrics", 200, metrics::CONTENT_TYPE);
        check("GET", "/metrics/", 404, "text/plain; charset=utf-8");
        check("GET", "/../etc/passwd", 404, "text/plain; charset=utf-8");
        check("GET", "", 404, "text/plain; charset=utf-8");
        check("POST", "/metrics", 405, "text/plain; charset=utf-8");
        check("DELETE", "/", 405, "text/plain; charset=utf-8");
    }

    #[test]
    fn status_json_is_the_status_document() {
        let reply = respond("GET", "/status.json", &status());
        let back: Status = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(back, status());
    }

    #[test]
    fn a_head_request_is_marked_and_a_refusal_names_what_is_allowed() {
        assert!(respond("HEAD", "/", &status()).head);
        assert!(!respond("GET", "/", &status()).head);
        let refused = respond("PUT", "/", &status());
        assert!(refused.headers.contains(&("allow", "GET, HEAD")));
    }

    /// The page loads nothing from elsewhere: no URL with a scheme or a protocol-relative
    /// one in a src, href or fetch, and it reads the status from its own origin.
    #[test]
    fn the_page_is_self_contained() {
        for needle in [
            "src=",
            "href=\"http",
            "href=\"//",
            "url(",
            "@import",
            "http://",
            "https://",
        ] {
            assert!(!PAGE.contains(needle), "the page contains {needle:?}");
        }
        assert!(PAGE.contains("fetch('status.json'"));
        assert!(PAGE.contains("name=\"viewport\""), "readable on a phone");
        let reply = respond("GET", "/", &status());
        assert!(
            reply
                .headers
                .contains(&("content-security-policy", PAGE_POLICY))
        );
    }
}
