//! Planted bugs ("mutations"): each one breaks one rule of the spec on purpose, so that the
//! scenario library and the conformance suite can prove they catch a real bug. This module exists
//! only with the `mutations` cargo feature, and even then every bug stays off until
//! `Config::mutations` switches it on at run time: cargo's feature unification can never put a
//! bug into an ordinary broker.
//!
//! Each bug sits at its natural call site in [`crate::core`], a few lines behind
//! `#[cfg(feature = "mutations")]`, so `grep -rn 'feature = "mutations"' broker/src` lists them all.
//!
//! ```
//! use mqtt_broker::{Config, Mutation, Mutations};
//!
//! let mutations = Mutations::from_names(["keep-alive-ignored"]).expect("a known name");
//! assert!(mutations.contains(Mutation::KeepAliveIgnored));
//! let config = Config { mutations, ..Config::default() };
//! assert!(!config.mutations.contains(Mutation::NoResendOnResume));
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One planted bug. Its [`name`](Mutation::name) is stable: command lines and test names use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// A resumed session's unacknowledged QoS 1/2 PUBLISH packets are not sent again (5.0 and
    /// 3.1.1 MQTT-4.4.0-1). They stay in flight, holding their place in the window.
    NoResendOnResume,
    /// A silent client is never closed for keep alive (5.0 MQTT-3.1.2-22, 3.1.1 MQTT-3.1.2-24).
    KeepAliveIgnored,
    /// A normal DISCONNECT (0x00; any DISCONNECT in 3.1.1) publishes the will instead of
    /// discarding it (5.0 and 3.1.1 MQTT-3.14.4-3).
    WillOnNormalDisconnect,
    /// A disconnected session is kept after its Session Expiry Interval has passed (5.0
    /// MQTT-4.1.0-2, §3.1.2.11.2): the expiry timer is ignored. A session with interval 0 still
    /// ends with its connection.
    SessionOutlivesExpiry,
    /// A QoS 2 PUBLISH resent before its PUBREL (same packet id) is delivered to subscribers again
    /// (5.0 MQTT-4.3.3-10, 3.1.1 MQTT-4.3.3-2).
    Qos2DeliveredTwice,
    /// A will with Will Retain 1 is routed to subscribers but not stored as the retained message
    /// (5.0 MQTT-3.1.2-15, 3.1.1 MQTT-3.1.2-17): the bug fixed in commit 8d348e3.
    WillNotRetained,
}

impl Mutation {
    /// Every mutation, in declaration order. A new variant goes here too: the name round-trip
    /// test walks this list.
    pub const ALL: &'static [Mutation] = &[
        Mutation::NoResendOnResume,
        Mutation::KeepAliveIgnored,
        Mutation::WillOnNormalDisconnect,
        Mutation::SessionOutlivesExpiry,
        Mutation::Qos2DeliveredTwice,
        Mutation::WillNotRetained,
    ];

    /// The stable kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::NoResendOnResume => "no-resend-on-resume",
            Mutation::KeepAliveIgnored => "keep-alive-ignored",
            Mutation::WillOnNormalDisconnect => "will-on-normal-disconnect",
            Mutation::SessionOutlivesExpiry => "session-outlives-expiry",
            Mutation::Qos2DeliveredTwice => "qos2-delivered-twice",
            Mutation::WillNotRetained => "will-not-retained",
        }
    }

    /// What the bug does, in one line, with the statement it breaks.
    pub fn description(self) -> &'static str {
        match self {
            Mutation::NoResendOnResume => {
                "unacknowledged QoS 1/2 PUBLISH packets are not resent when a session resumes (MQTT-4.4.0-1)"
            }
            Mutation::KeepAliveIgnored => {
                "a silent client is never closed by keep alive (5.0 MQTT-3.1.2-22, 3.1.1 MQTT-3.1.2-24)"
            }
            Mutation::WillOnNormalDisconnect => {
                "the will is published after a normal DISCONNECT instead of discarded (MQTT-3.14.4-3)"
            }
            Mutation::SessionOutlivesExpiry => {
                "a disconnected session is kept after its Session Expiry Interval (5.0 MQTT-4.1.0-2)"
            }
            Mutation::Qos2DeliveredTwice => {
                "a QoS 2 PUBLISH resent before PUBREL is delivered again (5.0 MQTT-4.3.3-10, 3.1.1 MQTT-4.3.3-2)"
            }
            Mutation::WillNotRetained => {
                "a will with Will Retain 1 is routed but not stored as retained (5.0 MQTT-3.1.2-15, 3.1.1 MQTT-3.1.2-17)"
            }
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no mutation's; its message lists the valid names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mutation {name:?}; the mutations are: {}", valid_names())]
pub struct UnknownMutation {
    pub name: String,
}

fn valid_names() -> String {
    let names: Vec<&str> = Mutation::ALL.iter().map(|mutation| mutation.name()).collect();
    names.join(", ")
}

impl FromStr for Mutation {
    type Err = UnknownMutation;

    fn from_str(name: &str) -> Result<Mutation, UnknownMutation> {
        Mutation::ALL
            .iter()
            .copied()
            .find(|mutation| mutation.name() == name)
            .ok_or_else(|| UnknownMutation { name: name.to_owned() })
    }
}

/// The mutations switched on; empty by default (a correct broker).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mutations {
    switched_on: BTreeSet<Mutation>,
}

impl Mutations {
    /// None switched on.
    pub fn new() -> Mutations {
        Mutations::default()
    }

    /// The mutations named, as on a command line; the first unknown name is an error.
    pub fn from_names<I, S>(names: I) -> Result<Mutations, UnknownMutation>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut mutations = Mutations::new();
        for name in names {
            mutations.insert(name.as_ref().parse()?);
        }
        Ok(mutations)
    }

    pub fn contains(&self, mutation: Mutation) -> bool {
        self.switched_on.contains(&mutation)
    }

    /// Switches `mutation` on; `false` if it was on already.
    pub fn insert(&mut self, mutation: Mutation) -> bool {
        self.switched_on.insert(mutation)
    }

    pub fn is_empty(&self) -> bool {
        self.switched_on.is_empty()
    }

    /// The mutations switched on, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Mutation> + '_ {
        self.switched_on.iter().copied()
    }
}

impl From<Mutation> for Mutations {
    fn from(mutation: Mutation) -> Mutations {
        Mutations::from_iter([mutation])
    }
}

impl FromIterator<Mutation> for Mutations {
    fn from_iter<I: IntoIterator<Item = Mutation>>(mutations: I) -> Mutations {
        Mutations {
            switched_on: mutations.into_iter().collect(),
        }
    }
}

impl fmt::Display for Mutations {
    /// The names, comma-separated, as `from_names` takes them after a split on commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, mutation) in self.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            f.write_str(mutation.name())?;
        }
        Ok(())
    }
}
