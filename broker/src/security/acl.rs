//! The ACL file: which topics a client may publish to (`write`) and receive from (`read`: its
//! subscriptions, and each message delivered), in mosquitto's acl_file format with one addition
//! (`client`):
//!
//! ```text
//! # before any `user` line: rules for clients without a user name
//! topic read public/#
//! # rules for the user alice
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! # rules for the client id sensor-7 (whatever its user)
//! client sensor-7
//! topic write sensors/7/#
//! # every client: %u is its user name, %c its client id
//! pattern write devices/%u/%c/#
//! ```
//!
//! Comments are whole lines starting with `#` (in a rule, `#` is the wildcard).
//!
//! Access is `read`, `write`, `readwrite` (the default when left out) or `deny`. A client's rules
//! are those of its user (or the anonymous ones), of its client id, and every `pattern`. A topic
//! is refused when a `deny` rule matches it, else allowed when a rule of the right access matches
//! it, else refused: with an ACL file, nothing is allowed unless a rule says so. A `pattern` does
//! not apply to a client whose user name or client id holds `+`, `#` or `/` (it could widen the
//! pattern). The rule topics are topic filters (`+`, `#`).
//!
//! A SUBSCRIBE is granted when some `read` rule could match a topic its filter matches (so `#` is
//! granted to a client that may read `a/#`); what each message delivered may carry is then checked
//! against its topic, retained messages included.

use std::collections::BTreeMap;

use mqtt_protocol::topic::{matches, validate_topic_filter};

use super::password::FileError;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish to a topic (its will too).
    Publish,
    /// Receive a message on a topic.
    Receive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    topic: String,
}

impl Rule {
    fn grants(&self, action: Action) -> bool {
        matches!(
            (self.access, action),
            (Access::ReadWrite, _) | (Access::Read, Action::Receive) | (Access::Write, Action::Publish)
        )
    }
}

/// The parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: BTreeMap<String, Vec<Rule>>,
    clients: BTreeMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// Whose rules the `topic` lines that follow are.
enum Section {
    Anonymous,
    User(String),
    Client(String),
}

impl Acl {
    pub fn parse(text: &str) -> Result<Acl, FileError> {
        let mut acl = Acl::default();
        let mut section = Section::Anonymous;
        for (index, line) in text.lines().enumerate() {
            let error = |message: String| FileError {
                line: index + 1,
                message,
            };
            // Comments are whole lines: a `#` inside a rule is a wildcard.
            if line.trim_start().starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            let rest: Vec<&str> = words.collect();
            match keyword {
                "user" | "client" => {
                    let [name] = rest[..] else {
                        return Err(error(format!("want `{keyword} NAME`")));
                    };
                    section = if keyword == "user" {
                        Section::User(name.to_string())
                    } else {
                        Section::Client(name.to_string())
                    };
                }
                "topic" | "pattern" => {
                    let (access, topic) = match rest[..] {
                        [topic] => (Access::ReadWrite, topic),
                        [access, topic] => (parse_access(access).map_err(error)?, topic),
                        _ => return Err(error(format!("want `{keyword} [read|write|readwrite|deny] TOPIC`"))),
                    };
                    validate_topic_filter(topic).map_err(|e| error(format!("{topic:?} is not a topic filter: {e}")))?;
                    let rule = Rule {
                        access,
                        topic: topic.to_string(),
                    };
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &section {
                            Section::Anonymous => acl.anonymous.push(rule),
                            Section::User(name) => acl.users.entry(name.clone()).or_default().push(rule),
                            Section::Client(name) => acl.clients.entry(name.clone()).or_default().push(rule),
                        }
                    }
                }
                other => {
                    return Err(error(format!(
                        "unknown keyword {other:?} (want user, client, topic or pattern)"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// Whether a client (`username`, `client_id`) may do `action` on `topic` (a topic name).
    pub fn allows(&self, username: Option<&str>, client_id: &str, action: Action, topic: &str) -> bool {
        let mut allowed = false;
        let mut denied = false;
        self.each_rule(username, client_id, |rule_topic, rule| {
            if matches(rule_topic, topic) {
                if rule.access == Access::Deny {
                    denied = true;
                } else if rule.grants(action) {
                    allowed = true;
                }
            }
        });
        allowed && !denied
    }

    /// Whether a SUBSCRIBE to `filter` is granted: some `read` rule could match a topic the
    /// filter matches, and no `deny` rule covers the whole filter.
    pub fn allows_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let mut allowed = false;
        let mut denied = false;
        self.each_rule(username, client_id, |rule_topic, rule| {
            if rule.access == Access::Deny {
                denied |= covers(rule_topic, filter);
            } else if rule.grants(Action::Receive) && overlap(rule_topic, filter) {
                allowed = true;
            }
        });
        allowed && !denied
    }

    /// Calls `visit` with each rule that applies to the client, pattern topics substituted.
    fn each_rule(&self, username: Option<&str>, client_id: &str, mut visit: impl FnMut(&str, &Rule)) {
        let own = match username {
            Some(user) => self.users.get(user).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let by_client = self.clients.get(client_id).map_or(&[][..], Vec::as_slice);
        for rule in own.iter().chain(by_client) {
            visit(&rule.topic, rule);
        }
        let unsafe_name = |name: &str| name.contains(['+', '#', '/']);
        for rule in &self.patterns {
            let needs_user = rule.topic.contains("%u");
            if needs_user && username.is_none_or(unsafe_name) {
                continue;
            }
            if rule.topic.contains("%c") && unsafe_name(client_id) {
                continue;
            }
            let topic = rule
                .topic
                .replace("%u", username.unwrap_or(""))
                .replace("%c", client_id);
            visit(&topic, rule);
        }
    }
}

fn parse_access(word: &str) -> Result<Access, String> {
    Ok(match word {
        "read" => Access::Read,
        "write" => Access::Write,
        "readwrite" => Access::ReadWrite,
        "deny" => Access::Deny,
        other => {
            return Err(format!(
                "unknown access {other:?} (want read, write, readwrite or deny)"
            ))
        }
    })
}

/// Whether some topic name matches both filters.
fn overlap(a: &str, b: &str) -> bool {
    let mut left = a.split('/');
    let mut right = b.split('/');
    loop {
        match (left.next(), right.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

/// Whether every topic name `inner` matches is matched by `outer`.
fn covers(outer: &str, inner: &str) -> bool {
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(x), Some(y)) if x == y && x != "+" && x != "#" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic read #

client sensor-7
topic write sensors/7/#

pattern write devices/%u/%c/#
pattern read inbox/%c
";

    #[test]
    fn rules_apply_per_user_per_client_id_and_by_pattern() {
        let acl = Acl::parse(FILE).unwrap();
        let alice = Some("alice");
        assert!(acl.allows(None, "x", Action::Receive, "public/news"));
        assert!(!acl.allows(None, "x", Action::Publish, "public/news"));
        assert!(!acl.allows(None, "x", Action::Receive, "alice/a"));
        assert!(acl.allows(alice, "x", Action::Publish, "alice/a/b"));
        assert!(!acl.allows(alice, "x", Action::Publish, "alice/secret"));
        assert!(
            !acl.allows(alice, "x", Action::Receive, "alice/secret"),
            "deny wins over read #"
        );
        assert!(acl.allows(alice, "x", Action::Receive, "anything/else"));
        assert!(!acl.allows(alice, "x", Action::Publish, "anything/else"));
        assert!(acl.allows(Some("bob"), "sensor-7", Action::Publish, "sensors/7/t"));
        assert!(!acl.allows(Some("bob"), "sensor-8", Action::Publish, "sensors/7/t"));
        assert!(acl.allows(alice, "c1", Action::Publish, "devices/alice/c1/temp"));
        assert!(!acl.allows(alice, "c1", Action::Publish, "devices/alice/c2/temp"));
        assert!(
            !acl.allows(None, "c1", Action::Publish, "devices//c1/temp"),
            "%u needs a user"
        );
        assert!(acl.allows(None, "c1", Action::Receive, "inbox/c1"));
        assert!(
            !acl.allows(None, "a/#", Action::Receive, "inbox/a/#"),
            "no wildcard names in patterns"
        );
        assert!(!acl.allows(None, "c+", Action::Receive, "inbox/c+"));
    }

    #[test]
    fn subscriptions_are_granted_when_a_read_rule_can_match_and_no_deny_covers_them() {
        let acl = Acl::parse(FILE).unwrap();
        assert!(acl.allows_subscribe(None, "x", "public/+"));
        assert!(
            acl.allows_subscribe(None, "x", "#"),
            "overlaps public/#: delivery filters"
        );
        assert!(!acl.allows_subscribe(None, "x", "alice/#"));
        assert!(acl.allows_subscribe(Some("alice"), "x", "alice/#"));
        assert!(!acl.allows_subscribe(Some("alice"), "x", "alice/secret"));
        assert!(
            !acl.allows_subscribe(Some("bob"), "sensor-7", "sensors/7/#"),
            "write only"
        );
    }

    #[test]
    fn filters_overlap_and_cover_as_topic_sets() {
        for (a, b, expected) in [
            ("a/#", "#", true),
            ("a/+", "a/b", true),
            ("a/+/c", "a/b/+", true),
            ("a/b", "a/c", false),
            ("a", "a/b", false),
            ("a/#", "a", true),
            ("+", "a/b", false),
        ] {
            assert_eq!(overlap(a, b), expected, "{a} {b}");
            assert_eq!(overlap(b, a), expected, "{b} {a}");
        }
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(covers("#", "#"));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (text, line, fragment) in [
            ("user\n", 1, "user NAME"),
            ("user a\ntopic sometimes a/b\n", 2, "unknown access"),
            ("topic read a/#/b\n", 1, "not a topic filter"),
            ("\n\nallow a\n", 3, "unknown keyword"),
            ("topic read a b c\n", 1, "want `topic"),
        ] {
            let error = Acl::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.message.contains(fragment), "{error}");
        }
    }
}
