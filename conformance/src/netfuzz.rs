//! `check --fuzz DURATION`: network fuzzing of any broker. The sessions come from the scenario
//! library (the catalog's YAML cases): each is run once under simulation against the reference
//! broker, and each client's bytes to the broker are kept, packet by packet ([`record_sessions`]).
//! Then, until the time is up, a session is picked and mutated from a seed ([`mutate`]: bits
//! flipped, bytes set to edge values, packets cut, lengths changed, packets dropped, repeated,
//! swapped, noise inserted), sent on a fresh connection, whatever comes back is read (and must
//! decode), and the broker's health is checked: a fresh CONNECT gets its CONNACK and a PINGREQ its
//! PINGRESP. An input after which the broker is not healthy, or that it answered with a packet
//! that does not decode, is saved as a reproducible case ([`Breaking::save`]) and the run stops.
//!
//! Every wait is bounded; the same seed and the same broker replay the same inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_client::probe::{Pattern, ProbeError, ProbeOptions};
use mqtt_protocol::{decode, encode, Connect, DecodeContext, Packet, ProtocolVersion, ReasonCode};
use mqtt_scenarios::scenario::version_name;
use mqtt_scenarios::sim::{self, SimOptions};
use mqtt_scenarios::swarm::SplitMix64;
use mqtt_scenarios::wire::Arrow;
use tokio::time::{timeout, Instant};

use crate::catalog::{Body, Case};
use crate::context::Endpoint;

/// How long the broker may stay quiet after an input before the input counts as taken.
const QUIET: Duration = Duration::from_millis(20);
/// The longest the harness reads the answers to one input.
const ANSWER_MAX: Duration = Duration::from_secs(2);
/// How long the health check's CONNACK and PINGRESP may take.
const HEALTH_WAIT: Duration = Duration::from_secs(5);
/// Sessions recorded at most (the catalog holds more; the first ones in order, both versions).
const SESSIONS_MAX: usize = 400;
/// A packet kept in a trace whole is shorter than this (the trace cuts longer ones).
const RAW_KEPT_MAX: usize = 256;

/// One client's bytes to the broker in a recorded run, packet by packet, starting with CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The scenario and client it was recorded from.
    pub origin: String,
    pub version: ProtocolVersion,
    pub packets: Vec<Bytes>,
}

/// Runs every YAML case of `catalog` once under simulation (seed 1), in each of its versions, and
/// keeps each client's packets to the broker. Packets the trace cut short are left out, and so is
/// a session with no CONNECT first.
pub fn record_sessions(catalog: &[Case]) -> Vec<Session> {
    let mut sessions = Vec::new();
    let options = SimOptions {
        seed: 1,
        ..SimOptions::default()
    };
    for case in catalog {
        let Body::Scenario(scenario) = &case.body else { continue };
        for version in &case.versions {
            if sessions.len() >= SESSIONS_MAX {
                return sessions;
            }
            let run = sim::run(scenario, *version, &options);
            let mut by_client: Vec<(String, Vec<Bytes>)> = Vec::new();
            for line in run.trace.lines() {
                let (Arrow::Sent, Some(raw)) = (line.arrow, line.raw) else {
                    continue;
                };
                if raw.len() >= RAW_KEPT_MAX {
                    continue;
                }
                match by_client.iter_mut().find(|(who, _)| *who == line.who) {
                    Some((_, packets)) => packets.push(raw),
                    None => by_client.push((line.who.clone(), vec![raw])),
                }
            }
            for (who, packets) in by_client {
                if packets.first().is_some_and(|first| first.first() == Some(&0x10)) {
                    sessions.push(Session {
                        origin: format!("{} {} {who}", scenario.id, version_name(*version)),
                        version: *version,
                        packets,
                    });
                }
            }
        }
    }
    sessions
}

/// The session with its CONNECT rewritten to carry `client_id` and the credentials given (so
/// that fuzzing a shared broker takes no other client's id and passes its authentication).
pub fn personalize(session: &Session, client_id: &str, username: Option<&str>, password: Option<&str>) -> Session {
    let mut session = session.clone();
    let Some(first) = session.packets.first() else {
        return session;
    };
    let mut buffer = BytesMut::from(&first[..]);
    if let Ok(Some(Packet::Connect(mut connect))) = decode(&mut buffer, &DecodeContext::server()) {
        connect.client_id = client_id.to_owned();
        connect.user_name = username.map(str::to_owned);
        connect.password = password.map(|password| Bytes::copy_from_slice(password.as_bytes()));
        let version = connect.protocol;
        let mut encoded = BytesMut::new();
        if encode(&Packet::Connect(connect), version, &mut encoded).is_ok() {
            session.packets[0] = encoded.freeze();
        }
    }
    session
}

/// What one mutation did, for the saved case.
fn describe_mutation(kind: u64, packet: usize) -> String {
    let what = match kind {
        0 => "a bit flipped",
        1 => "a byte set to an edge value",
        2 => "cut short",
        3 => "its remaining length changed",
        4 => "dropped",
        5 => "repeated",
        6 => "swapped with the next",
        7 => "noise inserted",
        _ => "repeated 100 times",
    };
    format!("packet {packet}: {what}")
}

/// `session` changed by one to four mutations drawn from `rng`; the bytes to send, and what was
/// done. The CONNECT is touched less often than the rest, so most inputs reach a session.
pub fn mutate(session: &Session, rng: &mut SplitMix64) -> (Vec<u8>, Vec<String>) {
    let mut packets: Vec<Vec<u8>> = session.packets.iter().map(|packet| packet.to_vec()).collect();
    let mut done = Vec::new();
    for _ in 0..rng.between(1, 4) {
        if packets.is_empty() {
            break;
        }
        let last = packets.len() - 1;
        // One time in eight the CONNECT, else any packet after it.
        let index = if last == 0 || rng.between(0, 7) == 0 {
            0
        } else {
            rng.between(1, last as u64) as usize
        };
        let kind = rng.between(0, 8);
        done.push(describe_mutation(kind, index));
        let packet = &mut packets[index];
        let position = rng.between(0, packet.len().saturating_sub(1) as u64) as usize;
        match kind {
            0 if !packet.is_empty() => packet[position] ^= 1 << rng.between(0, 7),
            1 if !packet.is_empty() => {
                packet[position] = [0x00, 0x01, 0x7F, 0x80, 0xFF][rng.between(0, 4) as usize];
            }
            2 => packet.truncate(position.max(1)),
            3 if packet.len() > 1 => {
                // A new remaining length, shorter, longer or absurd, in place of the old one.
                let old_len = packet[1..]
                    .iter()
                    .take(4)
                    .position(|byte| byte & 0x80 == 0)
                    .map_or(1, |n| n + 1);
                let new_length = match rng.between(0, 3) {
                    0 => rng.between(0, 4),
                    1 => (packet.len() as u64).saturating_sub(1 + old_len as u64) + rng.between(1, 64),
                    2 => rng.between(128, 16_383),
                    _ => 268_435_455,
                };
                let mut length = BytesMut::new();
                mqtt_protocol::wire::put_variable_byte_integer(&mut length, new_length as u32);
                packet.splice(1..1 + old_len.min(packet.len() - 1), length.iter().copied());
            }
            4 if index > 0 => {
                packets.remove(index);
            }
            5 => {
                let copy = packet.clone();
                packets.insert(index, copy);
            }
            6 if index < last => packets.swap(index, index + 1),
            7 => {
                let noise: Vec<u8> = (0..rng.between(1, 16)).map(|_| rng.between(0, 255) as u8).collect();
                packet.splice(position..position, noise);
            }
            8 if index > 0 => {
                let copy = packet.clone();
                for _ in 0..100 {
                    packets.insert(index, copy.clone());
                }
            }
            _ => {}
        }
    }
    (packets.concat(), done)
}

/// How an input went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker took it and is healthy.
    Survived,
    /// The broker answered with bytes that do not decode.
    MalformedAnswer(String),
    /// The broker is not healthy after it.
    Unhealthy(String),
}

/// Sends `input` on a fresh connection, reads whatever comes back until the broker goes quiet or
/// closes, then checks the broker's health. The answers are judged (they must decode) only when
/// the input still begins with a CONNECT of `version`: after a CONNECT mutated into another
/// protocol level, the broker may rightly answer in another version's format.
pub async fn try_input(broker: &Endpoint, version: ProtocolVersion, input: &[u8], health_client_id: &str) -> Outcome {
    let mut first = BytesMut::from(input);
    let judged = matches!(
        decode(&mut first, &DecodeContext::server()),
        Ok(Some(Packet::Connect(connect))) if connect.protocol == version
    );
    let options = ProbeOptions::client()
        .with_version(version)
        .with_send_timeout(ANSWER_MAX);
    if let Ok(Ok(mut probe)) = timeout(HEALTH_WAIT, broker.probe(options)).await {
        if probe.send_raw(input).await.is_ok() {
            let started = Instant::now();
            // Bounded by ANSWER_MAX: each pass waits at most QUIET.
            while started.elapsed() < ANSWER_MAX {
                match probe.receive(QUIET).await {
                    Ok(_) => {}
                    Err(ProbeError::Malformed(error)) if judged => return Outcome::MalformedAnswer(error.to_string()),
                    Err(_) => break,
                }
            }
        }
    }
    match health(broker, version, health_client_id).await {
        Ok(()) => Outcome::Survived,
        Err(first) => {
            // Once more after a pause: a broker busy closing the input's connection is not down.
            tokio::time::sleep(Duration::from_secs(1)).await;
            match health(broker, version, health_client_id).await {
                Ok(()) => Outcome::Survived,
                Err(second) => Outcome::Unhealthy(format!("{first}; a second later: {second}")),
            }
        }
    }
}

/// A fresh connection: CONNECT answered by CONNACK 0x00, PINGREQ by PINGRESP.
pub async fn health(broker: &Endpoint, version: ProtocolVersion, client_id: &str) -> Result<(), String> {
    let options = ProbeOptions::client().with_version(version);
    let mut probe = timeout(HEALTH_WAIT, broker.probe(options))
        .await
        .map_err(|_| format!("no connection within {} s", HEALTH_WAIT.as_secs()))?
        .map_err(|error| format!("no connection: {error}"))?;
    let connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive_s: 30,
        client_id: client_id.to_owned(),
        ..Connect::default()
    };
    probe
        .send(&Packet::Connect(Box::new(connect)))
        .await
        .map_err(|error| format!("CONNECT: {error}"))?;
    probe
        .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), HEALTH_WAIT)
        .await
        .map_err(|error| format!("CONNECT: {error}"))?;
    probe
        .send(&Packet::PingReq)
        .await
        .map_err(|error| format!("PINGREQ: {error}"))?;
    probe
        .expect(&Pattern::pingresp(), HEALTH_WAIT)
        .await
        .map_err(|error| format!("PINGREQ: {error}"))?;
    let _ = probe
        .send(&Packet::Disconnect(mqtt_protocol::Disconnect::default()))
        .await;
    Ok(())
}

/// An input that broke the broker, with how to replay it.
#[derive(Debug, Clone)]
pub struct Breaking {
    pub input: Vec<u8>,
    pub version: ProtocolVersion,
    pub origin: String,
    pub mutations: Vec<String>,
    pub outcome: Outcome,
    pub seed: u64,
    pub iteration: u64,
}

impl Breaking {
    /// Writes `<dir>/<name>.bin` (the bytes as sent) and `<dir>/<name>.txt` (what they are and how
    /// to replay them); the paths written.
    pub fn save(&self, dir: &Path, url: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let name = format!(
            "{}-seed{}-input{}",
            version_name(self.version),
            self.seed,
            self.iteration
        );
        let bin = dir.join(format!("{name}.bin"));
        let txt = dir.join(format!("{name}.txt"));
        std::fs::write(&bin, &self.input)?;
        let hex: Vec<String> = self.input.iter().map(|byte| format!("{byte:02X}")).collect();
        std::fs::write(
            &txt,
            format!(
                "what: {:?}\nversion: {}\nfrom the recorded session: {}\nmutations: {}\nseed {} input {}\nreplay: mqtt-harness check {url} --fuzz-replay {} --protocol {}\nbytes ({}):\n{}\n",
                self.outcome,
                version_name(self.version),
                self.origin,
                self.mutations.join("; "),
                self.seed,
                self.iteration,
                bin.display(),
                version_name(self.version),
                self.input.len(),
                hex.join(" ")
            ),
        )?;
        Ok((bin, txt))
    }
}

/// The result of a fuzzing run.
#[derive(Debug, Clone)]
pub struct FuzzRun {
    pub sessions: usize,
    pub inputs: u64,
    pub elapsed: Duration,
    /// The input that broke the broker, if one did (the run stops there).
    pub breaking: Option<Breaking>,
}

/// Fuzzes `broker` for `duration` with sessions of `versions`, mutations from `seed`. `progress`
/// is told of each input.
pub async fn fuzz(
    broker: &Endpoint,
    sessions: &[Session],
    duration: Duration,
    seed: u64,
    health_client_id: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> FuzzRun {
    let started = Instant::now();
    let mut rng = SplitMix64::new(seed);
    let mut inputs = 0u64;
    let mut breaking = None;
    // Bounded by the duration (each input by its own waits).
    while !sessions.is_empty() && started.elapsed() < duration {
        let session = &sessions[rng.between(0, sessions.len() as u64 - 1) as usize];
        let (input, mutations) = mutate(session, &mut rng);
        inputs += 1;
        let outcome = try_input(broker, session.version, &input, health_client_id).await;
        progress(inputs);
        if outcome != Outcome::Survived {
            breaking = Some(Breaking {
                input,
                version: session.version,
                origin: session.origin.clone(),
                mutations,
                outcome,
                seed,
                iteration: inputs,
            });
            break;
        }
    }
    FuzzRun {
        sessions: sessions.len(),
        inputs,
        elapsed: started.elapsed(),
        breaking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            origin: "test".into(),
            version: ProtocolVersion::V5,
            packets: vec![
                Bytes::from_static(&[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0]),
                Bytes::from_static(&[0x30, 0x06, 0, 1, b't', 0, b'h', b'i']),
                Bytes::from_static(&[0xC0, 0x00]),
            ],
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_they_differ_from_the_session() {
        let original: Vec<u8> = session().packets.concat();
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..200).map(|_| mutate(&session(), &mut rng)).collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        assert_ne!(first, run(8));
        let changed = first.iter().filter(|(input, _)| *input != original).count();
        assert!(changed > 150, "only {changed} of 200 inputs differ from the session");
        assert!(first.iter().all(|(_, done)| !done.is_empty()));
    }

    #[test]
    fn the_scenario_library_gives_sessions_in_both_versions_each_beginning_with_a_connect() {
        let catalog = crate::catalog::catalog().expect("the catalog loads");
        let sessions = record_sessions(&catalog);
        assert!(sessions.len() >= 100, "only {} sessions", sessions.len());
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            assert!(sessions.iter().any(|session| session.version == version));
        }
        for session in &sessions {
            let mut first = BytesMut::from(&session.packets[0][..]);
            let decoded = decode(&mut first, &DecodeContext::server());
            assert!(
                matches!(&decoded, Ok(Some(Packet::Connect(connect))) if connect.protocol == session.version),
                "{}: {decoded:?}",
                session.origin
            );
        }
        assert!(sessions.iter().any(|session| session.packets.len() > 3));
    }

    #[test]
    fn personalize_rewrites_the_connects_client_id_and_credentials_only() {
        let personal = personalize(&session(), "mh-fuzz", Some("u"), Some("p"));
        assert_eq!(personal.packets[1..], session().packets[1..]);
        let mut buffer = BytesMut::from(&personal.packets[0][..]);
        let Ok(Some(Packet::Connect(connect))) = decode(&mut buffer, &DecodeContext::server()) else {
            panic!("a CONNECT");
        };
        assert_eq!(connect.client_id, "mh-fuzz");
        assert_eq!(connect.user_name.as_deref(), Some("u"));
        assert_eq!(connect.password.as_deref(), Some(&b"p"[..]));
        assert_eq!(connect.keep_alive_s, 60);
    }
}
