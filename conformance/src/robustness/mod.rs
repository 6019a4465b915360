//! `check --robustness`: hostile but bounded traffic against a broker, opt-in because some of it
//! is shaped like a denial of service. Each case is a probe case of its own catalog ([`catalog`]),
//! run by the same runner as the conformance cases, one at a time, each inside a [`watch::Watcher`]:
//! a well-behaved side client whose round trips are timed before, during and after the case, and
//! the broker's resident memory when the harness knows its process.
//!
//! Where the input is a protocol error, the offending connection must close as the spec says
//! (statements cited). Where it is legal but abusive, the expectation is survival: the side client
//! keeps its service, memory stays bounded, and a broker that chooses to close a connection says
//! so with a code the spec allows for that packet and version, or (3.1.1) just closes.
//!
//! | module | what lives there |
//! |---|---|
//! | [`cases`] | the cases: truncated packets, stalled and trickled packets, floods, storms |
//! | [`watch`] | the side client and the memory reading around each case |

pub mod cases;
pub mod watch;

use crate::catalog::Case;

/// The section robustness cases are filed under: their ids are `robustness/<name>`.
pub const SECTION: &str = "robustness";

/// The robustness cases, in a fixed order (all serial: one at a time, beside nothing).
pub fn catalog() -> Vec<Case> {
    cases::CASES
        .iter()
        .map(|probe| {
            let mut case = Case::from(probe);
            case.section = SECTION.to_owned();
            case
        })
        .collect()
}
