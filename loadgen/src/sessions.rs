//! Session workloads: what a broker does with sessions rather than with a steady stream.
//!
//! - **Resume storm**: subscribers with persistent sessions subscribe and go offline; a backlog of
//!   messages is published to each of them while they are away; then they all reconnect at once
//!   and take their backlog. Measured: reconnect latency (CONNACK), whether each session was
//!   there (Session Present), the time until every backlog was delivered, and the accounting of
//!   every message (lost, duplicated) against what the QoS promises.
//! - **Subscribe churn**: clients subscribe and unsubscribe, again and again, at a rate.
//!   Measured: SUBACK and UNSUBACK latency, and refusals by reason code.
//!
//! Neither is about the cost of each message to the generator, so both use the project's async
//! [`Client`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_client::{Client, ConnectOptions, Event, Message};
use mqtt_protocol::{ProtocolVersion, QoS, SubscriptionOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::figures::{buckets, Percentiles};
use crate::measure;
use crate::payload::{PayloadWriter, Stamp};
use crate::system::Machine;
use crate::track::{Arrival, Tracker};

/// How long one connect, subscribe or publish may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A resumed subscriber stops waiting for its backlog when nothing arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// Acknowledgements awaited at once while the backlog is published.
const PUBLISH_WINDOW: usize = 1000;

/// Who connects, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Clients {
    pub address: SocketAddr,
    pub version: ProtocolVersion,
    pub client_id_prefix: String,
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Connects in progress at once.
    pub concurrency: usize,
}

impl Clients {
    fn options(&self, client_id: String) -> ConnectOptions {
        let mut options = ConnectOptions::new(client_id);
        options.version = self.version;
        options.keep_alive_s = 60;
        options.connect_timeout = REQUEST_TIMEOUT;
        options.request_timeout = REQUEST_TIMEOUT;
        options.user_name = self.username.clone();
        options.password = self.password.clone().map(|password| password.into_bytes().into());
        options
    }

    /// Options that keep the session when the connection ends: Clean Start 0 with a Session
    /// Expiry Interval (5.0), Clean Session 0 (3.1.1).
    fn persistent(&self, client_id: String, clean_start: bool) -> ConnectOptions {
        let mut options = self.options(client_id);
        if self.version.is_v5() {
            options.clean_start = clean_start;
            options.session_expiry_interval_s = Some(3600);
        } else {
            options.clean_start = false;
        }
        options
    }

    async fn connect(&self, options: ConnectOptions) -> Result<(Client, mqtt_client::Events), String> {
        let what = options.client_id.clone();
        let dialer = Arc::new(mqtt_client::transport::TcpDialer::from_socket_address(self.address));
        match timeout(REQUEST_TIMEOUT * 2, Client::connect_with(dialer, options)).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(error)) => Err(format!("{what}: {error}")),
            Err(_) => Err(format!(
                "{what}: no CONNACK within {} s",
                (REQUEST_TIMEOUT * 2).as_secs()
            )),
        }
    }
}

/// The resume storm's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeWorkload {
    pub clients: Clients,
    pub subscribers: usize,
    /// Messages published to each offline subscriber.
    pub backlog: usize,
    pub qos: QoS,
    pub payload_bytes: usize,
}

/// What the resume storm measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResumeFigures {
    pub subscribers: u64,
    pub backlog_per_subscriber: u64,
    /// Messages published while the subscribers were offline (acknowledged by the broker).
    pub published: u64,
    pub publish_s: f64,
    /// Reconnects that found their session (Session Present 1).
    pub sessions_present: u64,
    pub resume_latency_us: Percentiles,
    pub resume_latency_histogram: Vec<(u64, u64)>,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// From the start of the storm to the last backlog message delivered.
    pub drain_s: f64,
    pub delivered_per_s: f64,
    pub errors: Vec<String>,
    pub machine: Machine,
}

/// Runs the resume storm.
pub async fn resume_storm(workload: &ResumeWorkload) -> Result<ResumeFigures, String> {
    if workload.qos == QoS::AtMostOnce {
        return Err("a resume storm needs QoS 1 or 2: QoS 0 messages are not kept for offline sessions".into());
    }
    let clients = &workload.clients;
    let (run, run_tag) = crate::run::run_id();
    let client_id = |index: usize| format!("{}-{run}-r{index}", clients.client_id_prefix);
    let topic = |index: usize| format!("{}/{run}/r{index}", clients.topic_prefix);

    // Sessions, subscribed, then offline.
    let semaphore = Arc::new(Semaphore::new(clients.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for index in 0..workload.subscribers {
        let (clients, semaphore) = (clients.clone(), semaphore.clone());
        let (client_id, topic, qos) = (client_id(index), topic(index), workload.qos);
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            let (client, _events) = clients.connect(clients.persistent(client_id.clone(), true)).await?;
            let suback = client
                .subscribe_one(&topic, SubscriptionOptions::with_qos(qos))
                .await
                .map_err(|error| format!("{client_id}: subscribing: {error}"))?;
            if suback.reason_codes.first().map(|code| code.0) != Some(qos as u8) {
                return Err(format!(
                    "{client_id}: SUBACK {:?} for QoS {}",
                    suback.reason_codes, qos as u8
                ));
            }
            client
                .disconnect()
                .await
                .map_err(|error| format!("{client_id}: disconnecting: {error}"))
        });
    }
    join_all(&mut tasks).await?;

    // The backlog, published while they are away.
    let publish_started = Instant::now();
    let (publisher, _events) = clients
        .connect(clients.options(format!("{}-{run}-publisher", clients.client_id_prefix)))
        .await?;
    let mut payloads = PayloadWriter::default();
    let mut waiting = std::collections::VecDeque::new();
    let mut published = 0u64;
    for sequence in 0..workload.backlog as u64 {
        for index in 0..workload.subscribers {
            let stamp = Stamp {
                run_tag,
                publisher: index as u32,
                sequence,
                intended_ns: 0,
            };
            let message = Message::new(
                topic(index),
                payloads.write(&stamp, workload.payload_bytes),
                workload.qos,
            );
            let handle = publisher
                .publish(message)
                .await
                .map_err(|error| format!("publishing the backlog: {error}"))?;
            waiting.push_back(handle);
            if waiting.len() >= PUBLISH_WINDOW {
                published += acknowledged(waiting.pop_front()).await?;
            }
        }
    }
    while !waiting.is_empty() {
        published += acknowledged(waiting.pop_front()).await?;
    }
    let publish_s = publish_started.elapsed().as_secs_f64();
    let _ = publisher.disconnect().await;

    // The storm: everybody back at once.
    let storm_started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..workload.subscribers {
        let (clients, semaphore) = (clients.clone(), semaphore.clone());
        let client_id = client_id(index);
        let backlog = workload.backlog as u64;
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            let attempt = Instant::now();
            let (client, mut events) = clients.connect(clients.persistent(client_id.clone(), false)).await?;
            let latency = attempt.elapsed();
            let mut session_present = false;
            let mut tracker = Tracker::default();
            let mut last_delivery = None;
            loop {
                match events.recv_within(DRAIN_IDLE).await {
                    Ok(Some(Event::Connected {
                        session_present: present,
                        ..
                    })) => session_present = present,
                    Ok(Some(Event::Message(publish))) => {
                        let Some(stamp) = Stamp::read(&publish.payload).filter(|stamp| stamp.run_tag == run_tag) else {
                            continue;
                        };
                        let redelivery = publish.dup;
                        if tracker.record(stamp.sequence, redelivery, true) != Arrival::Duplicate {
                            last_delivery = Some(Instant::now());
                        }
                        if tracker.received >= backlog {
                            break;
                        }
                    }
                    Ok(Some(Event::Disconnected { reason })) => {
                        return Err(format!("{client_id}: disconnected while taking its backlog: {reason}"))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            // The session goes with the client: Clean Start next time would too, but say so now.
            let _ = client.disconnect().await;
            Ok::<_, String>((latency, session_present, tracker, last_delivery))
        });
    }
    let mut latency = measure::histogram();
    let mut figures = ResumeFigures {
        subscribers: workload.subscribers as u64,
        backlog_per_subscriber: workload.backlog as u64,
        published,
        publish_s,
        expected: published,
        machine: Machine::describe(),
        ..ResumeFigures::default()
    };
    let mut last = storm_started;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|error| format!("a subscriber task failed: {error}"))? {
            Ok((resume, present, tracker, last_delivery)) => {
                measure::record(&mut latency, resume);
                figures.sessions_present += u64::from(present);
                figures.received += tracker.received;
                figures.duplicated += tracker.duplicated;
                figures.lost += tracker.lost(workload.backlog as u64);
                if let Some(at) = last_delivery {
                    last = last.max(at);
                }
            }
            Err(error) => figures.errors.push(error),
        }
    }
    figures.drain_s = last.duration_since(storm_started).as_secs_f64();
    figures.delivered_per_s = figures.received as f64 / figures.drain_s.max(1e-3);
    figures.resume_latency_us = Percentiles::of(&latency);
    figures.resume_latency_histogram = buckets(&latency);
    Ok(figures)
}

async fn acknowledged(handle: Option<mqtt_client::PublishHandle>) -> Result<u64, String> {
    let Some(handle) = handle else { return Ok(0) };
    match timeout(REQUEST_TIMEOUT, handle.wait()).await {
        Ok(Ok(outcome)) if !outcome.reason_code.is_error() => Ok(1),
        Ok(Ok(outcome)) => Err(format!("the broker refused a backlog message: {}", outcome.reason_code)),
        Ok(Err(error)) => Err(format!("publishing the backlog: {error}")),
        Err(_) => Err(format!(
            "a backlog message was not acknowledged within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

async fn join_all(tasks: &mut JoinSet<Result<(), String>>) -> Result<(), String> {
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|error| format!("a task failed: {error}"))??;
    }
    Ok(())
}

/// The subscribe churn's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnWorkload {
    pub clients: Clients,
    pub connections: usize,
    /// Subscribe-unsubscribe pairs per second, all connections together.
    pub rate: f64,
    pub duration: Duration,
    pub qos: QoS,
}

/// What the churn measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChurnFigures {
    pub pairs: u64,
    pub requested_per_s: f64,
    pub achieved_per_s: f64,
    pub subscribe_latency_us: Percentiles,
    pub unsubscribe_latency_us: Percentiles,
    /// Refusals and failures by reason.
    pub failures: BTreeMap<String, u64>,
    pub machine: Machine,
}

/// Runs the churn: each connection subscribes to a fresh filter and unsubscribes from it, on its
/// share of the rate, for the duration.
pub async fn churn(workload: &ChurnWorkload) -> Result<ChurnFigures, String> {
    let clients = &workload.clients;
    if workload.connections == 0 || workload.rate <= 0.0 {
        return Err("a churn needs --connections of at least 1 and a positive --rate".into());
    }
    let (run, _) = crate::run::run_id();
    let gap = Duration::from_secs_f64(workload.connections as f64 / workload.rate);
    let started = Instant::now() + Duration::from_millis(100);
    let end = started + workload.duration;
    let mut tasks = JoinSet::new();
    for index in 0..workload.connections {
        let clients = clients.clone();
        let client_id = format!("{}-{run}-u{index}", clients.client_id_prefix);
        let prefix = format!("{}/{run}/u{index}", clients.topic_prefix);
        let qos = workload.qos;
        let offset = gap.mul_f64(index as f64 / workload.connections as f64);
        tasks.spawn(async move {
            let (client, _events) = clients.connect(clients.options(client_id)).await?;
            let mut subscribe = measure::histogram();
            let mut unsubscribe = measure::histogram();
            let mut failures: BTreeMap<String, u64> = BTreeMap::new();
            let mut pairs = 0u64;
            let mut next = started + offset;
            while next < end {
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                next += gap;
                let filter = format!("{prefix}/{pairs}");
                let asked = Instant::now();
                match client.subscribe_one(&filter, SubscriptionOptions::with_qos(qos)).await {
                    Ok(suback) if suback.reason_codes.iter().all(|code| !code.is_error()) => {
                        measure::record(&mut subscribe, asked.elapsed())
                    }
                    Ok(suback) => {
                        *failures.entry(format!("SUBACK {:?}", suback.reason_codes)).or_default() += 1;
                        continue;
                    }
                    Err(error) => {
                        *failures.entry(format!("subscribe: {error}")).or_default() += 1;
                        break;
                    }
                }
                let asked = Instant::now();
                match client.unsubscribe(vec![filter], Default::default()).await {
                    Ok(_) => measure::record(&mut unsubscribe, asked.elapsed()),
                    Err(error) => {
                        *failures.entry(format!("unsubscribe: {error}")).or_default() += 1;
                        break;
                    }
                }
                pairs += 1;
            }
            let _ = client.disconnect().await;
            Ok::<_, String>((pairs, subscribe, unsubscribe, failures))
        });
    }
    let mut figures = ChurnFigures {
        requested_per_s: workload.rate,
        machine: Machine::describe(),
        ..ChurnFigures::default()
    };
    let mut subscribe = measure::histogram();
    let mut unsubscribe = measure::histogram();
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|error| format!("a churn task failed: {error}"))? {
            Ok((pairs, subscribed, unsubscribed, failures)) => {
                figures.pairs += pairs;
                let _ = subscribe.add(&subscribed);
                let _ = unsubscribe.add(&unsubscribed);
                for (reason, count) in failures {
                    *figures.failures.entry(reason).or_default() += count;
                }
            }
            Err(error) => *figures.failures.entry(error).or_default() += 1,
        }
    }
    figures.achieved_per_s = figures.pairs as f64 / workload.duration.as_secs_f64().max(1e-3);
    figures.subscribe_latency_us = Percentiles::of(&subscribe);
    figures.unsubscribe_latency_us = Percentiles::of(&unsubscribe);
    Ok(figures)
}
