//! The watch around each robustness case: a well-behaved side client, on a thread and a runtime of
//! its own (so the case's own traffic cannot delay its measurements), publishes to a topic it
//! subscribes to every [`ROUND_TRIP_INTERVAL`] and times each message's return; and, for a broker
//! whose process is known, its resident memory is read at each round. The runner starts the watch,
//! lets it measure a while before the case ([`QUIET`]), runs the case, lets it measure a while
//! after, and turns what it saw into notes and, when service or memory were lost, a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::probe::{Pattern, ProbeError, ProbeOptions};
use mqtt_loadgen::system::Process;
use mqtt_protocol::{
    Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions,
};
use mqtt_scenarios::engine::Names;
use tokio::time::{sleep, Instant};

use crate::context::{Endpoint, Failure};

/// How long the watch measures before the case starts, and after it ends.
pub const QUIET: Duration = Duration::from_secs(1);
/// The pause between two round trips of the side client.
pub const ROUND_TRIP_INTERVAL: Duration = Duration::from_millis(50);
/// How far the broker's resident memory may grow during one case by default: beyond it, the
/// memory is not bounded by anything the case did.
pub const MEMORY_GROWTH_MAX_KIB: u64 = 256 * 1024;

/// What the watch reads memory from, and how much growth it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The broker's process, when the harness knows it (a broker it started, or `--broker-pid`).
    pub memory: Option<Process>,
    pub memory_growth_max_kib: u64,
}

/// What the side thread recorded, each at its time since the watch started.
#[derive(Debug, Default)]
struct Samples {
    /// A round trip's time, or `None` when the message did not come back in time.
    round_trips: Vec<(Duration, Option<Duration>)>,
    /// Resident memory, in KiB.
    memory_kib: Vec<(Duration, u64)>,
    /// The side connection was lost: when, and how.
    lost: Option<(Duration, String)>,
    /// The memory could not be read: why (once).
    memory_error: Option<String>,
}

/// A running watch.
pub struct Watcher {
    watch: Watch,
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The case's start and end, since `started`.
    case_started: Option<Duration>,
    case_ended: Option<Duration>,
}

fn lock(samples: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Watcher {
    /// Connects the side client (in `version`, named by `names`) and starts measuring; an error
    /// when it cannot connect and subscribe within `wait`.
    pub async fn start(
        broker: Endpoint,
        version: ProtocolVersion,
        names: Names,
        watch: Watch,
        wait: Duration,
    ) -> Result<Watcher, String> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let (ready_sender, ready) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let side = Side {
            broker,
            version,
            names,
            memory: watch.memory,
            wait,
            started,
            stop: stop.clone(),
            samples: samples.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("robustness-watch".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_sender.send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(side.run(ready_sender));
            })
            .map_err(|error| format!("cannot start the watch's thread: {error}"))?;
        let mut watcher = Watcher {
            watch,
            started,
            stop,
            samples,
            thread: Some(thread),
            case_started: None,
            case_ended: None,
        };
        match tokio::time::timeout(wait + wait, ready).await {
            Ok(Ok(Ok(()))) => Ok(watcher),
            Ok(Ok(Err(error))) => {
                watcher.halt();
                Err(error)
            }
            Ok(Err(_)) | Err(_) => {
                watcher.halt();
                Err(format!(
                    "the side client was not ready within {} s",
                    (wait + wait).as_secs()
                ))
            }
        }
    }

    /// Marks the case's start.
    pub fn case_starts(&mut self) {
        self.case_started = Some(self.started.elapsed());
    }

    /// Marks the case's end.
    pub fn case_ends(&mut self) {
        self.case_ended = Some(self.started.elapsed());
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops the side client and says what it saw: notes for the report, and a failure when
    /// service or memory was lost.
    pub fn finish(mut self) -> (Vec<String>, Option<Failure>) {
        self.halt();
        let samples = std::mem::take(&mut *lock(&self.samples));
        let case_started = self.case_started.unwrap_or_default();
        let case_ended = self.case_ended.unwrap_or(case_started);
        let phase = |at: Duration| {
            if at < case_started {
                0
            } else if at <= case_ended {
                1
            } else {
                2
            }
        };
        let mut notes = Vec::new();
        let mut failure = None;
        let mut parts = Vec::new();
        for (index, name) in ["before", "during", "after"].into_iter().enumerate() {
            let mut times: Vec<Duration> = Vec::new();
            let mut lost = Vec::new();
            for (at, round_trip) in &samples.round_trips {
                if phase(*at) != index {
                    continue;
                }
                match round_trip {
                    Some(time) => times.push(*time),
                    None => lost.push(*at),
                }
            }
            times.sort();
            let summary = match (times.first(), times.last()) {
                (Some(_), Some(longest)) => format!(
                    "{name} p50 {} max {} ms ({} round trips{})",
                    milliseconds(times[times.len() / 2]),
                    milliseconds(*longest),
                    times.len(),
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(", {} lost", lost.len())
                    }
                ),
                _ => format!("{name}: no round trip completed ({} lost)", lost.len()),
            };
            parts.push(summary);
            if index > 0 && failure.is_none() {
                if let Some(at) = lost.first() {
                    failure = Some(Failure::expected(
                        format!(
                            "the side client's message did not come back within {} s, {} s {} the case started",
                            WAIT_NAME_SECONDS,
                            seconds(at.abs_diff(case_started)),
                            if *at >= case_started { "after" } else { "before" },
                        ),
                        "a well-behaved client keeps its service during and after the case",
                        format!("{} of its round trips lost {name} the case", lost.len()),
                    ));
                } else if index == 2 && times.is_empty() {
                    failure = Some(Failure::new(
                        "the side client completed no round trip after the case: the broker did not recover",
                    ));
                }
            }
        }
        notes.push(format!("side client round trip: {}", parts.join("; ")));
        if let Some((at, how)) = &samples.lost {
            let message = format!(
                "the side client's connection was lost {} s into the watch: {how}",
                seconds(*at)
            );
            notes.push(message.clone());
            if failure.is_none() && *at >= case_started {
                failure = Some(Failure::expected(
                    message,
                    "a well-behaved client keeps its connection",
                    "its connection closed",
                ));
            }
        }
        if let Some(error) = &samples.memory_error {
            notes.push(format!("broker memory not read: {error}"));
        } else if self.watch.memory.is_some() {
            let before = samples
                .memory_kib
                .iter()
                .filter(|(at, _)| *at < case_started)
                .map(|(_, kib)| *kib)
                .next_back();
            let peak = samples
                .memory_kib
                .iter()
                .filter(|(at, _)| *at >= case_started)
                .map(|(_, kib)| *kib)
                .max();
            let after = samples.memory_kib.last().map(|(_, kib)| *kib);
            if let (Some(before), Some(peak), Some(after)) = (before, peak, after) {
                let growth = peak.saturating_sub(before);
                notes.push(format!(
                    "broker RSS: before {} MiB, peak {} MiB (+{} MiB), after {} MiB",
                    mebibytes(before),
                    mebibytes(peak),
                    mebibytes(growth),
                    mebibytes(after)
                ));
                if growth > self.watch.memory_growth_max_kib && failure.is_none() {
                    failure = Some(Failure::expected(
                        format!(
                            "the broker's resident memory grew by {} MiB during the case",
                            mebibytes(growth)
                        ),
                        format!(
                            "memory bounded: at most {} MiB of growth",
                            mebibytes(self.watch.memory_growth_max_kib)
                        ),
                        format!("{} MiB before, {} MiB at the peak", mebibytes(before), mebibytes(peak)),
                    ));
                }
            }
        }
        (notes, failure)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The longest a side round trip may take, in the failure's words (the runner's wait, unscaled).
const WAIT_NAME_SECONDS: u64 = crate::context::WAIT.as_secs();

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64())
}

fn mebibytes(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The side client, on its own thread.
struct Side {
    broker: Endpoint,
    version: ProtocolVersion,
    names: Names,
    memory: Option<Process>,
    wait: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
}

impl Side {
    async fn run(self, ready: tokio::sync::oneshot::Sender<Result<(), String>>) {
        let topic = self.names.topic("side");
        let options = ProbeOptions::client()
            .with_version(self.version)
            .with_send_timeout(self.wait);
        let connected = async {
            let mut probe = tokio::time::timeout(self.wait, self.broker.probe(options))
                .await
                .map_err(|_| format!("no connection to {} within {} s", self.broker, self.wait.as_secs()))?
                .map_err(|error| error.to_string())?;
            let connect = Connect {
                protocol: self.version,
                clean_start: true,
                keep_alive_s: 60,
                client_id: self.names.client_id("side"),
                user_name: self.names.username.clone(),
                password: self.names.password.clone().map(|password| password.into_bytes().into()),
                ..Connect::default()
            };
            probe
                .send(&Packet::Connect(Box::new(connect)))
                .await
                .map_err(describe)?;
            probe
                .expect(&Pattern::connack().reason_code(ReasonCode::SUCCESS), self.wait)
                .await
                .map_err(describe)?;
            probe
                .send(&Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    properties: Default::default(),
                    subscriptions: vec![Subscription {
                        filter: topic.clone(),
                        options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
                    }],
                }))
                .await
                .map_err(describe)?;
            probe.expect(&Pattern::suback(), self.wait).await.map_err(describe)?;
            Ok::<_, String>(probe)
        };
        let mut probe = match connected.await {
            Ok(probe) => {
                let _ = ready.send(Ok(()));
                probe
            }
            Err(error) => {
                let _ = ready.send(Err(format!("the side client could not start: {error}")));
                return;
            }
        };
        let mut sequence: u64 = 0;
        let mut connected = true;
        // Bounded: the runner stops the watch when the case and the quiet time after it are over.
        while !self.stop.load(Ordering::Relaxed) {
            self.read_memory();
            if connected {
                sequence += 1;
                let payload = Bytes::from(sequence.to_string());
                let sent_at = Instant::now();
                let at = self.started.elapsed();
                let publish = Packet::Publish(Publish {
                    qos: QoS::AtMostOnce,
                    topic: topic.as_str().into(),
                    payload: payload.clone(),
                    ..Publish::default()
                });
                let outcome = match probe.send(&publish).await {
                    Ok(()) => self.await_return(&mut probe, &payload, sent_at).await,
                    Err(error) => Err(describe(error)),
                };
                match outcome {
                    Ok(round_trip) => lock(&self.samples).round_trips.push((at, round_trip)),
                    Err(how) => {
                        lock(&self.samples).lost = Some((at, how));
                        connected = false;
                    }
                }
            }
            sleep(ROUND_TRIP_INTERVAL).await;
        }
        if connected {
            let _ = probe
                .send(&Packet::Disconnect(Disconnect {
                    reason_code: ReasonCode::SUCCESS,
                    properties: Default::default(),
                }))
                .await;
        }
    }

    /// Waits for the message with `payload` to come back: its round trip, `None` when it did not
    /// within the wait, an error when the connection ended.
    async fn await_return(
        &self,
        probe: &mut mqtt_client::probe::Probe,
        payload: &Bytes,
        sent_at: Instant,
    ) -> Result<Option<Duration>, String> {
        let deadline = sent_at + self.wait;
        // Bounded by the deadline: each pass waits for one packet until then.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match probe.receive(left).await {
                Ok(Packet::Publish(publish)) if publish.payload == *payload => return Ok(Some(sent_at.elapsed())),
                Ok(_) => {} // an earlier message, late: its round trip is already counted lost
                Err(ProbeError::Timeout { .. }) => return Ok(None),
                Err(error) => return Err(describe(error)),
            }
        }
    }

    fn read_memory(&self) {
        let Some(process) = self.memory else { return };
        let at = self.started.elapsed();
        match process.rss_kib() {
            Ok(kib) => lock(&self.samples).memory_kib.push((at, kib)),
            Err(error) => {
                let mut samples = lock(&self.samples);
                if samples.memory_error.is_none() {
                    samples.memory_error = Some(error);
                }
            }
        }
    }
}

fn describe(error: ProbeError) -> String {
    error.to_string()
}
