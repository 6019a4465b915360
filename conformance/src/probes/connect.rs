//! Probe cases of §3.1 (CONNECT).

use mqtt_client::probe::Pattern;
use mqtt_protocol::Packet;
use mqtt_scenarios::scenario::{CaseLevel, Phase};

use crate::catalog::ProbeCase;
use crate::context::{Context, Failure, Finding};

/// The probe cases of this module, in order.
pub static CASES: &[ProbeCase] = &[ProbeCase {
    name: "connack-is-the-first-packet",
    about: "The first packet the broker sends on a connection is the CONNACK.",
    versions: &["5.0", "3.1.1"],
    statements: &["MQTT-3.2.0-1"],
    level: CaseLevel::Must,
    needs: &[],
    phase: Phase::Concurrent,
    kills: &[],
    run: |context| Box::pin(connack_is_the_first_packet(context)),
}];

/// CONNECT, then the first packet back must be a CONNACK.
async fn connack_is_the_first_packet(context: Context) -> Result<Finding, Failure> {
    let mut probe = context.open("first").await?;
    probe
        .send(&Packet::Connect(Box::new(context.connect_packet("first"))))
        .await?;
    let first = probe.receive(context.wait()).await?;
    Pattern::connack().matches(&first).map_err(|differences| {
        Failure::expected(
            "the first packet is not a CONNACK",
            "CONNACK",
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    Ok(Finding::Pass)
}
