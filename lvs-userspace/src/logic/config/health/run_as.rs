//! MISC_CHECK's `user USERNAME [GROUPNAME]`: the program runs as that user, with that group
//! (the user's own group when none is named) and no supplementary groups, instead of as
//! the director (root). This is what keepalived does before it runs a script (`setgid`,
//! `setgroups` to that one group, `setuid`); keepalived's global `script_user` default and
//! `enable_script_security` have no counterpart here.
//!
//! The names are resolved when the config is validated, through the system's user and
//! group databases (NSS), so an unknown name is a config error, as it is for keepalived.

use nix::unistd::{Group, User};
use toml::Spanned;

use super::validate::Sink;

/// The user and group a program runs as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunAs {
    pub user: String,
    /// The group named, if one was; `gid` is the user's own group otherwise.
    pub group: Option<String>,
    pub uid: u32,
    pub gid: u32,
}

/// Splits `"user"`, `"user group"` or `"user:group"` (keepalived's
/// `username [:][groupname]`) into its names.
pub fn parse_spec(text: &str) -> Result<(&str, Option<&str>), String> {
    let words: Vec<&str> = text
        .split(|c: char| c == ':' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect();
    match words[..] {
        [user] => Ok((user, None)),
        [user, group] => Ok((user, Some(group))),
        _ => Err(format!(
            "{text:?} is not a user name, optionally with a group (\"user\" or \"user:group\")"
        )),
    }
}

impl RunAs {
    /// Looks the names up in the system's databases.
    pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, String> {
        let found = User::from_name(user)
            .map_err(|error| format!("looking up user {user:?}: {error}"))?
            .ok_or_else(|| format!("there is no user {user:?} on this system"))?;
        let gid = match group {
            None => found.gid.as_raw(),
            Some(group) => Group::from_name(group)
                .map_err(|error| format!("looking up group {group:?}: {error}"))?
                .ok_or_else(|| format!("there is no group {group:?} on this system"))?
                .gid
                .as_raw(),
        };
        Ok(RunAs {
            user: user.to_owned(),
            group: group.map(str::to_owned),
            uid: found.uid.as_raw(),
            gid,
        })
    }
}

/// Validates a `user` key: its shape, then the names.
pub(super) fn validate(
    raw: &Spanned<String>,
    field: &str,
    sink: &mut Sink<'_, '_>,
) -> Option<RunAs> {
    let resolved = parse_spec(raw.get_ref()).and_then(|(user, group)| RunAs::resolve(user, group));
    resolved
        .map_err(|message| sink.report(&raw.span(), field, message))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_a_user_and_maybe_a_group() {
        assert_eq!(parse_spec("nobody"), Ok(("nobody", None)));
        assert_eq!(
            parse_spec("nobody nogroup"),
            Ok(("nobody", Some("nogroup")))
        );
        assert_eq!(
            parse_spec("nobody:nogroup"),
            Ok(("nobody", Some("nogroup")))
        );
        assert_eq!(
            parse_spec(" nobody :nogroup "),
            Ok(("nobody", Some("nogroup")))
        );
        for bad in ["", " : ", "a b c", "a:b:c"] {
            assert!(parse_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_resolve_to_ids() {
        assert_eq!(
            RunAs::resolve("root", None),
            Ok(RunAs {
                user: "root".into(),
                group: None,
                uid: 0,
                gid: 0
            })
        );
        let with_group = RunAs::resolve("root", Some("root")).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (0, 0));
        assert_eq!(
            RunAs::resolve("lvs-no-such-user", None),
            Err("there is no user \"lvs-no-such-user\" on this system".into())
        );
        assert_eq!(
            RunAs::resolve("root", Some("lvs-no-such-group")),
            Err("there is no group \"lvs-no-such-group\" on this system".into())
        );
    }
}
