//! keepalived's connection sync daemon as lvs's `[sync]` section.
//!
//! keepalived 2 writes it in `global_defs`:
//!
//! ```text
//! lvs_sync_daemon <INTERFACE> <VRRP_INSTANCE> [id <SYNC_ID>] [maxlen <LEN>] [port <PORT>]
//!                 [ttl <TTL>] [group <IP ADDR>]
//! ```
//!
//! (also `inst <VRRP_INSTANCE>`, and the older `... <VRRP_INSTANCE> <SYNC_ID>`); keepalived 1
//! wrote `lvs_sync_daemon_interface <INTERFACE>` in a `vrrp_instance`. Without `id`, the sync
//! id is the instance's `virtual_router_id`, as keepalived takes it.
//!
//! keepalived runs one IPVS sync daemon at a time and switches it with the instance's VRRP
//! state (master when MASTER, backup when BACKUP). lvs runs both at once, so that each
//! director sends its own connections and keeps its peer's, and a failback keeps connections
//! as a failover does. The key that signs lvs's sync messages is new: the import names a key
//! file and says how to make it.

use super::{import::Problem, output, syntax::Statement};
use crate::{
    base::values::{MulticastGroup, MulticastTtl, Port, SyncId, SyncMaxLen},
    logic::config::is_interface_name,
};

/// The key file the import names; the operator creates it (the notes say how).
pub const KEY_FILE: &str = "/etc/lvs/sync.key";

/// Whether a statement configures keepalived's sync daemon: such statements are imported
/// here and cut from the `--vrrp-out` file.
pub fn is_sync_daemon(keyword: &str) -> bool {
    matches!(keyword, "lvs_sync_daemon" | "lvs_sync_daemon_interface")
}

/// What the file's sync daemon statements import to.
#[derive(Default)]
pub(super) struct SyncImport {
    pub section: Option<output::Sync>,
    pub problems: Vec<Problem>,
    pub notes: Vec<Problem>,
}

/// Imports the first sync daemon statement of the file, wherever it is; reports the others,
/// which keepalived ignores too.
pub(super) fn import(statements: &[Statement]) -> SyncImport {
    let mut found = Vec::new();
    collect(statements, None, &mut found);
    let mut result = SyncImport::default();
    let Some(&(first, enclosing)) = found.first() else {
        return result;
    };
    for (other, _) in &found[1..] {
        result.problems.push(Problem {
            line: other.line,
            message: format!(
                "{} is given again (first on line {}); keepalived ignores this one, and so \
                 does the import",
                other.keyword, first.line
            ),
        });
    }
    let mut reader = Reader {
        at: first,
        problems: Vec::new(),
    };
    let wanted = match first.keyword.as_str() {
        "lvs_sync_daemon" => reader.sync_daemon(),
        _ => reader.sync_daemon_interface(enclosing),
    };
    let section = wanted.and_then(|wanted| reader.section(wanted, statements, &mut result.notes));
    result.problems.extend(reader.problems);
    if let Some(section) = &section {
        let line = first.line;
        let note = |message: String| Problem { line, message };
        result.notes.push(note(format!(
            "{} imports to [sync] with both daemons: keepalived runs one, master or backup by \
             the VRRP state; lvs runs both at once, so each director keeps its peer's \
             connections and a failback keeps them too.",
            first.keyword
        )));
        result.notes.push(note(format!(
            "{} is cut from the --vrrp-out file: keepalived would start the kernel's IPVS \
             sync daemon beside lvs's.",
            first.keyword
        )));
        result.notes.push(note(format!(
            "sync.key_file {} signs the sync messages: create it once (head -c 32 \
             /dev/urandom > {}; chmod 600 {}) and copy the same file to the other director.",
            section.key_file, section.key_file, section.key_file
        )));
    }
    result.section = section;
    result
}

/// The sync daemon statements in file order, each with the `vrrp_instance` it is in.
fn collect<'a>(
    statements: &'a [Statement],
    instance: Option<&'a Statement>,
    found: &mut Vec<(&'a Statement, Option<&'a Statement>)>,
) {
    for statement in statements {
        if is_sync_daemon(&statement.keyword) {
            found.push((statement, instance));
        }
        if let Some(block) = &statement.block {
            let inner = if statement.keyword == "vrrp_instance" {
                Some(statement)
            } else {
                instance
            };
            collect(block, inner, found);
        }
    }
}

/// What the statement asks for, before the defaults.
#[derive(Default)]
struct Wanted {
    interface: String,
    instance: Option<String>,
    sync_id: Option<SyncId>,
    max_len: Option<SyncMaxLen>,
    port: Option<Port>,
    ttl: Option<MulticastTtl>,
    group: Option<MulticastGroup>,
}

struct Reader<'a> {
    at: &'a Statement,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn problem(&mut self, message: String) {
        self.problems.push(Problem {
            line: self.at.line,
            message,
        });
    }

    /// keepalived 2's `lvs_sync_daemon`, option by option as keepalived reads it: the
    /// keywords first, then the older positional instance and sync id.
    fn sync_daemon(&mut self) -> Option<Wanted> {
        let args = &self.at.args;
        let Some(interface) = args.first() else {
            self.problem("lvs_sync_daemon needs an interface".to_owned());
            return None;
        };
        let mut wanted = Wanted {
            interface: self.interface(interface)?,
            ..Wanted::default()
        };
        let before = self.problems.len();
        let mut index = 1;
        while index < args.len() {
            let word = args[index].as_str();
            let value = args.get(index + 1).map(String::as_str);
            match (word, value) {
                ("inst" | "id" | "maxlen" | "port" | "ttl" | "group", None) => {
                    self.problem(format!("lvs_sync_daemon {word} needs a value"));
                }
                ("inst", Some(name)) => wanted.instance = Some(name.to_owned()),
                ("id", Some(text)) => {
                    wanted.sync_id = self.number(word, text, SyncId::new);
                }
                ("maxlen", Some(text)) => {
                    wanted.max_len = self.number(word, text, SyncMaxLen::new);
                }
                ("port", Some(text)) => wanted.port = self.number(word, text, Port::new),
                ("ttl", Some(text)) => wanted.ttl = self.number(word, text, MulticastTtl::new),
                ("group", Some(text)) => wanted.group = self.group(text),
                _ if index == 1 => {
                    wanted.instance = Some(word.to_owned());
                    index += 1;
                    continue;
                }
                _ if index == 2 && word.starts_with(|c: char| c.is_ascii_digit()) => {
                    wanted.sync_id = self.number("id", word, SyncId::new);
                    index += 1;
                    continue;
                }
                _ => {
                    self.problem(format!("unknown option {word} of lvs_sync_daemon"));
                    index += 1;
                    continue;
                }
            }
            index += 2;
        }
        (self.problems.len() == before).then_some(wanted)
    }

    /// keepalived 1's `lvs_sync_daemon_interface IF` in a `vrrp_instance`.
    fn sync_daemon_interface(&mut self, enclosing: Option<&Statement>) -> Option<Wanted> {
        let [interface] = self.at.args.as_slice() else {
            self.problem("lvs_sync_daemon_interface takes one value".to_owned());
            return None;
        };
        Some(Wanted {
            interface: self.interface(interface)?,
            instance: enclosing.and_then(|instance| instance.args.first().cloned()),
            ..Wanted::default()
        })
    }

    fn interface(&mut self, name: &str) -> Option<String> {
        if is_interface_name(name) {
            Some(name.to_owned())
        } else {
            self.problem(format!(
                "{}: {name:?} is not an interface name",
                self.at.keyword
            ));
            None
        }
    }

    fn number<T, E: std::fmt::Display>(
        &mut self,
        option: &str,
        text: &str,
        rule: impl Fn(i64) -> Result<T, E>,
    ) -> Option<T> {
        let Ok(number) = text.parse::<i64>() else {
            self.problem(format!(
                "lvs_sync_daemon {option}: {text:?} is not a whole number"
            ));
            return None;
        };
        rule(number)
            .map_err(|error| self.problem(format!("lvs_sync_daemon {option}: {error}")))
            .ok()
    }

    fn group(&mut self, text: &str) -> Option<MulticastGroup> {
        MulticastGroup::parse(text)
            .map_err(|error| self.problem(format!("lvs_sync_daemon group: {error}")))
            .ok()
    }

    /// The section, with the sync id taken from the VRRP instance when not given, as
    /// keepalived takes it.
    fn section(
        &mut self,
        wanted: Wanted,
        statements: &[Statement],
        notes: &mut Vec<Problem>,
    ) -> Option<output::Sync> {
        let instance = match &wanted.instance {
            None => None,
            Some(name) => {
                let found = statements.iter().find(|s| {
                    s.keyword == "vrrp_instance" && s.args.first().is_some_and(|n| n == name)
                });
                if found.is_none() {
                    self.problem(format!(
                        "{} names VRRP instance {name}, which the file does not have \
                         (keepalived then ignores it)",
                        self.at.keyword
                    ));
                    return None;
                }
                found
            }
        };
        let sync_id = match wanted.sync_id {
            Some(id) => id,
            None => {
                let vrid = instance
                    .and_then(|instance| instance.block.as_deref())
                    .and_then(|block| block.iter().find(|s| s.keyword == "virtual_router_id"))
                    .and_then(|s| s.args.first())
                    .and_then(|text| text.parse::<i64>().ok())
                    .and_then(|vrid| SyncId::new(vrid).ok());
                let Some(vrid) = vrid else {
                    self.problem(format!(
                        "{} needs a sync id: give `id N`, or name a VRRP instance with a \
                         virtual_router_id",
                        self.at.keyword
                    ));
                    return None;
                };
                notes.push(Problem {
                    line: self.at.line,
                    message: format!(
                        "sync.syncid {vrid} is VRRP instance {}'s virtual_router_id, \
                         keepalived's default.",
                        wanted.instance.as_deref().unwrap_or_default()
                    ),
                });
                vrid
            }
        };
        Some(output::Sync {
            daemons: vec!["master".to_owned(), "backup".to_owned()],
            interface: wanted.interface,
            syncid: sync_id.get(),
            group: wanted.group.map(|group| group.to_string()),
            port: wanted.port.map(Port::get),
            ttl: wanted.ttl.map(MulticastTtl::get),
            sync_maxlen: wanted.max_len.map(SyncMaxLen::get),
            key_file: KEY_FILE.to_owned(),
        })
    }
}
