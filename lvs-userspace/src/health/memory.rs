//! What health checking last decided, kept in a file so that a director that adopts a running
//! data plane (after a restart, a crash or an upgrade) starts every checked real server as it
//! was: one that was down stays out of the pool until its check passes again, and one that was
//! up stays in it, even with `alpha` (keepalived re-adds everything on start; a restart of
//! lvs changes nothing a client sees).
//!
//! One line per real server of a service: `up|down PROTOCOL VIP:PORT ADDRESS`. The file is
//! rewritten (atomically) on every change and removed at a stop for good.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use lvs_common::keys::ServiceMapKey;

/// A real server of a service, as health checking names it.
pub type MemberKey = (ServiceMapKey, Ipv4Addr);

/// The file's name beside the director's other state (`/run/lvs/director`).
pub fn path(state_dir: &Path, state_name: &str) -> PathBuf {
    state_dir.join(format!("{state_name}.health"))
}

/// The file's text for these states, sorted so that equal states give equal files.
pub fn format(states: &HashMap<MemberKey, bool>) -> String {
    let mut lines: Vec<String> = states
        .iter()
        .map(|((service, address), up)| {
            let protocol = match service.protocol() {
                6 => "tcp",
                17 => "udp",
                _ => "other",
            };
            format!(
                "{} {protocol} {} {address}\n",
                if *up { "up" } else { "down" },
                service.socket(),
            )
        })
        .collect();
    lines.sort();
    lines.concat()
}

/// The states in a file's text; lines it does not understand are left out (the server then
/// starts as its check's configuration says, as without a memory).
pub fn parse(text: &str) -> HashMap<MemberKey, bool> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<(MemberKey, bool)> {
    let mut fields = line.split_whitespace();
    let up = match fields.next()? {
        "up" => true,
        "down" => false,
        _ => return None,
    };
    let protocol = match fields.next()? {
        "tcp" => 6,
        "udp" => 17,
        _ => return None,
    };
    let vip: SocketAddr = fields.next()?.parse().ok()?;
    let address: Ipv4Addr = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    let service = ServiceMapKey::new(vip.ip(), vip.port(), protocol);
    Some(((service, address), up))
}

/// Reads the file; a missing or unreadable one remembers nothing.
pub fn read(path: &Path) -> HashMap<MemberKey, bool> {
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Writes the file atomically (a crash leaves the old one or the new one).
pub fn write(path: &Path, states: &HashMap<MemberKey, bool>) -> std::io::Result<()> {
    let partial = path.with_extension("health.partial");
    std::fs::write(&partial, format(states))?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> ServiceMapKey {
        ServiceMapKey::new(Ipv4Addr::new(10, 0, 0, 100).into(), port, 6)
    }

    #[test]
    fn states_round_trip_through_the_file_text() {
        let states = HashMap::from([
            ((key(80), Ipv4Addr::new(10, 0, 0, 11)), true),
            ((key(80), Ipv4Addr::new(10, 0, 0, 12)), false),
            ((key(443), Ipv4Addr::new(10, 0, 0, 12)), true),
        ]);
        let text = format(&states);
        assert_eq!(
            text,
            "down tcp 10.0.0.100:80 10.0.0.12\nup tcp 10.0.0.100:443 10.0.0.12\n\
             up tcp 10.0.0.100:80 10.0.0.11\n"
        );
        assert_eq!(parse(&text), states);
    }

    #[test]
    fn lines_it_does_not_understand_are_left_out() {
        let text = "up tcp 10.0.0.100:80 10.0.0.11\nmaybe tcp 10.0.0.100:80 10.0.0.12\n\
                    up sctp 10.0.0.100:80 10.0.0.13\nup tcp 10.0.0.100 10.0.0.14\n\
                    down tcp 10.0.0.100:80 10.0.0.15 extra\n";
        assert_eq!(
            parse(text),
            HashMap::from([((key(80), Ipv4Addr::new(10, 0, 0, 11)), true)])
        );
    }

    #[test]
    fn a_missing_file_remembers_nothing() {
        assert!(read(Path::new("/nonexistent/lvs.health")).is_empty());
    }
}
