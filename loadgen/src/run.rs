//! One message run, start to end: the engine threads connect their subscribers, then their
//! publishers; they publish through a warm-up and the measured window by schedule, then wait for
//! the acknowledgements and let the subscribers drain; every message is accounted for; the
//! figures are put together here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_protocol::QoS;
use tokio::time::{sleep, sleep_until};

use crate::engine::{Counters, Engine, EngineReport, Plan, PublisherReport, SubscriberReport, Times, CONNECT_TIMEOUT};
use crate::figures::{
    buckets, sort_issues, Figures, Generator, Histograms, Percentiles, StreamIssue, Throughput, TimelineSecond,
    FIGURES_VERSION,
};
use crate::measure::{self, Timeline};
use crate::system::{self, CpuTimes, Machine, Process};
use crate::transport::TransportConfig;
use crate::workload::{format_duration, Workload};

/// From the last connect to the first message due: lets the connections settle.
const START_DELAY: Duration = Duration::from_millis(100);

/// The drain ends at the latest this long after the window (or a fifth of the window, if
/// longer); the engine threads end it sooner when nothing more is owed or nothing arrives.
const DRAIN_MAX: Duration = Duration::from_secs(5);
const DRAIN_MAX_CAP: Duration = Duration::from_secs(60);

/// How long past the give-up instant the threads may take to close their connections.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// How often the progress callback hears from the run.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A schedule lag (p99) beyond which the report warns that the generator sent late.
const LAG_WARNING_US: u64 = 1000;
/// A share of the machine's CPU beyond which the report warns that the generator may be the
/// bottleneck.
const CPU_SHARE_WARNING: f64 = 0.8;

/// The broker to load.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    /// As the user wrote it, for the report.
    pub url: String,
    /// The URL's transport (plain TCP unless told otherwise), its TLS files read once.
    pub transport: TransportConfig,
}

impl Target {
    /// Plain TCP to `address`.
    pub fn tcp(address: SocketAddr, url: impl Into<String>) -> Target {
        Target {
            address,
            url: url.into(),
            transport: TransportConfig::default(),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    WarmingUp,
    Measuring,
    Draining,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::WarmingUp => "warming up",
            Phase::Measuring => "measuring",
            Phase::Draining => "draining",
        }
    }
}

/// A progress report, about once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: Phase,
    /// Since the schedule started.
    pub elapsed: Duration,
    /// Of warm-up, window and drain.
    pub total: Duration,
    pub sent: u64,
    pub received: u64,
    pub not_offered: u64,
    /// Connections that ended early.
    pub errors: u64,
    /// End-to-end latency p99 of the last whole second, in microseconds (0 before the first).
    pub p99_us: u64,
    /// Messages per second over the last interval.
    pub sent_per_s: f64,
    pub received_per_s: f64,
}

/// A run identifier: unique enough that two runs on one broker do not share topics or client ids.
pub fn run_id() -> (String, u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut random = crate::schedule::Random::new(nanos ^ (u64::from(std::process::id()) << 32));
    let tag = random.next_u64() as u32;
    (format!("{tag:08x}"), tag)
}

/// Runs `workload` (this shard of it) against `target`, on `threads` engine threads.
pub async fn run(
    workload: &Workload,
    target: &Target,
    threads: usize,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Figures, String> {
    workload.validate()?;
    let local_publishers = workload.local_publishers();
    let local_subscribers = workload.local_subscribers();
    system::ensure_file_descriptors((local_publishers.len() + local_subscribers.len()) as u64)?;
    let (run, run_tag) = run_id();

    // Whole topic groups per thread: a group's publishers, subscribers and shared accounting stay
    // together.
    let mut groups: Vec<usize> = local_publishers
        .iter()
        .chain(&local_subscribers)
        .map(|&(_, group)| group)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let threads = threads.clamp(1, groups.len().max(1));
    let thread_of = |group: usize| groups.binary_search(&group).unwrap_or(0) % threads;
    let timeline = Timeline::new(Instant::now(), Duration::ZERO).shared();
    let counters = Arc::new(Counters::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let mut engines = Vec::with_capacity(threads);
    for thread in 0..threads {
        let plan = Plan {
            address: target.address,
            transport: target.transport.clone(),
            workload: workload.clone(),
            run: run.clone(),
            run_tag,
            publishers: local_publishers
                .iter()
                .copied()
                .filter(|&(_, group)| thread_of(group) == thread)
                .collect(),
            subscribers: local_subscribers
                .iter()
                .copied()
                .filter(|&(_, group)| thread_of(group) == thread)
                .collect(),
            timeline: timeline.clone(),
            counters: counters.clone(),
            cancel: cancel.clone(),
        };
        engines.push(Engine::spawn(plan, format!("loadgen-{thread}"))?);
    }
    let connections = (local_publishers.len() + local_subscribers.len()) as u64;
    let ready_within = CONNECT_TIMEOUT * 2 + Duration::from_millis(connections * 5);
    let engines = tokio::task::spawn_blocking(move || {
        for engine in &engines {
            engine.ready(ready_within)?;
        }
        Ok::<_, String>(engines)
    })
    .await
    .map_err(|error| format!("waiting for the connections: {error}"))??;

    // The schedule: now, or at the wall-clock time all shards were given.
    let start_delay = match workload.start_at {
        None => START_DELAY,
        Some(start_at) => match start_at.duration_since(std::time::SystemTime::now()) {
            Ok(ahead) => ahead,
            Err(late) if late.duration() <= workload.warmup => Duration::ZERO,
            Err(late) => {
                return Err(format!(
                    "ready {:.1} s after --start-at, more than the warm-up ({}): this shard's window would not be the others'",
                    late.duration().as_secs_f64(),
                    format_duration(workload.warmup)
                ))
            }
        },
    };
    let base = Instant::now();
    let start = base + start_delay;
    let window_start = start + workload.warmup;
    let window_end = window_start + workload.duration;
    let drain_max = DRAIN_MAX.max(workload.duration / 5).min(DRAIN_MAX_CAP);
    let times = Times {
        base,
        start,
        window_start,
        window_end,
        give_up: window_end + drain_max,
    };
    if let Ok(mut timeline) = timeline.lock() {
        *timeline = Timeline::new(start, times.give_up - start);
    }
    for engine in &engines {
        engine.start(times)?;
    }

    // Watch the run: CPU over the window, progress once a second.
    let total = times.give_up - start;
    while Instant::now() < start {
        on_progress(&Progress {
            phase: Phase::Connecting,
            elapsed: Duration::ZERO,
            total,
            sent: 0,
            received: 0,
            not_offered: 0,
            errors: 0,
            p99_us: 0,
            sent_per_s: 0.0,
            received_per_s: 0.0,
        });
        sleep_until(tokio::time::Instant::from_std(
            (Instant::now() + PROGRESS_EVERY).min(start),
        ))
        .await;
    }
    let mut last = (0u64, 0u64, Instant::now());
    let mut report_progress = |phase: Phase| {
        let now = Instant::now();
        let sent = counters.sent.load(Ordering::Relaxed);
        let received = counters.received.load(Ordering::Relaxed);
        let seconds = now.duration_since(last.2).as_secs_f64().max(1e-3);
        let p99_us = timeline.lock().map_or(0, |timeline| {
            let index = timeline.index(now);
            match index
                .checked_sub(1)
                .and_then(|previous| timeline.seconds().get(previous))
            {
                Some(second) if !second.latency.is_empty() => second.latency.value_at_quantile(0.99),
                _ => 0,
            }
        });
        on_progress(&Progress {
            phase,
            elapsed: now.saturating_duration_since(start),
            total,
            sent,
            received,
            not_offered: counters.not_offered.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            p99_us,
            sent_per_s: sent.saturating_sub(last.0) as f64 / seconds,
            received_per_s: received.saturating_sub(last.1) as f64 / seconds,
        });
        last = (sent, received, now);
    };
    let mut cpu_at_window_start = None;
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        if cpu_at_window_start.is_none() && now >= window_start {
            cpu_at_window_start = Process::Myself.cpu_times().ok();
        }
        let phase = if now < window_start {
            Phase::WarmingUp
        } else {
            Phase::Measuring
        };
        report_progress(phase);
        let next = (now + PROGRESS_EVERY).min(if cpu_at_window_start.is_none() {
            window_start
        } else {
            window_end
        });
        sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let cpu_at_window_end = Process::Myself.cpu_times().ok();
    // The threads drain on their own and end by the give-up instant.
    while !engines.iter().all(Engine::is_finished) {
        if Instant::now() > times.give_up + JOIN_GRACE {
            return Err("the engine threads did not finish in time".into());
        }
        report_progress(Phase::Draining);
        sleep(Duration::from_millis(100).min(PROGRESS_EVERY)).await;
    }
    report_progress(Phase::Draining);
    let mut reports = Vec::with_capacity(engines.len());
    for engine in engines {
        reports.push(engine.join()?);
    }
    let cpu = match (cpu_at_window_start, cpu_at_window_end) {
        (Some(start), Some(end)) => end.since(start),
        _ => CpuTimes::default(),
    };
    let timeline = timeline
        .lock()
        .map(|timeline| timeline.clone())
        .map_err(|_| "the timeline was poisoned")?;
    Ok(figures(workload, &times, &reports, &timeline, cpu))
}

/// Sets its flag when dropped: stops the engine threads if the run is abandoned.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Puts the run's figures together from the threads' reports.
fn figures(
    workload: &Workload,
    times: &Times,
    reports: &[EngineReport],
    timeline: &Timeline,
    cpu: CpuTimes,
) -> Figures {
    let cpu_seconds = (cpu.user + cpu.system).as_secs_f64();
    let user_cpu_seconds = cpu.user.as_secs_f64();
    let window_s = workload.duration.as_secs_f64();
    let machine = Machine::describe();
    let publishers: Vec<&PublisherReport> = reports.iter().flat_map(|report| &report.publishers).collect();
    let subscribers: Vec<&SubscriberReport> = reports.iter().flat_map(|report| &report.subscribers).collect();
    let by_number: BTreeMap<usize, &PublisherReport> = publishers
        .iter()
        .map(|publisher| (publisher.number, *publisher))
        .collect();
    let sum = |value: fn(&PublisherReport) -> u64| -> u64 { publishers.iter().map(|publisher| value(publisher)).sum() };
    // Loss, duplicates and reordering, per receiver and publisher.
    let mut lost = 0;
    let mut duplicated = 0;
    let mut reordered = 0;
    let mut overflowed = false;
    let mut stream_issues = Vec::new();
    for stream in reports.iter().flat_map(|report| &report.streams) {
        let Some(publisher) = by_number.get(&stream.publisher) else {
            continue;
        };
        let tracker = &stream.tracker;
        let stream_lost = tracker.lost(publisher.scheduled).saturating_sub(publisher.not_offered);
        lost += stream_lost;
        duplicated += tracker.duplicated;
        reordered += tracker.reordered;
        overflowed |= tracker.overflowed();
        if stream_lost + tracker.duplicated + tracker.reordered > 0 {
            stream_issues.push(StreamIssue {
                publisher: stream.publisher as u64,
                subscriber: stream.receiver as u64,
                shared: stream.shared,
                lost: stream_lost,
                duplicated: tracker.duplicated,
                reordered: tracker.reordered,
            });
        }
    }
    sort_issues(&mut stream_issues);
    let mut latency = measure::histogram();
    let mut ack_latency = measure::histogram();
    let mut lag = measure::histogram();
    let mut connect_latency = measure::histogram();
    for report in reports {
        let _ = latency.add(&report.latency);
        let _ = ack_latency.add(&report.ack_latency);
        let _ = lag.add(&report.lag);
        let _ = connect_latency.add(&report.connect_latency);
    }
    let expected: u64 = publishers
        .iter()
        .map(|publisher| publisher.sent * workload.copies_per_message(publisher.group))
        .sum();
    let received: u64 = subscribers.iter().map(|subscriber| subscriber.received).sum();
    let received_in_window: u64 = subscribers.iter().map(|subscriber| subscriber.received_in_window).sum();
    let sent_in_window = sum(|publisher| publisher.sent_in_window);
    let local_share = publishers.len() as f64 / workload.publishers as f64;
    let cpu_share = cpu_seconds / (window_s * machine.cores.max(1) as f64);
    let per_message = |seconds: f64| {
        if received_in_window > 0 {
            seconds * 1e6 / received_in_window as f64
        } else {
            0.0
        }
    };
    let lag_percentiles = Percentiles::of(&lag);
    let window_seconds = (times.window_start - times.start).as_secs()..(times.window_end - times.start).as_secs();
    let timeline_seconds: Vec<TimelineSecond> = timeline
        .seconds()
        .iter()
        .enumerate()
        .map(|(t, second)| {
            let percentile = |quantile| {
                if second.latency.is_empty() {
                    0
                } else {
                    second.latency.value_at_quantile(quantile)
                }
            };
            TimelineSecond {
                t: t as u64,
                measured: window_seconds.contains(&(t as u64)),
                scheduled: second.scheduled,
                sent: second.sent,
                received: second.received,
                p50_us: percentile(0.5),
                p99_us: percentile(0.99),
                histogram: buckets(&second.latency),
            }
        })
        .collect();
    let mut errors = Vec::new();
    for publisher in &publishers {
        if let Some(error) = &publisher.error {
            errors.push(format!("publisher {}: {error}", publisher.number));
        }
    }
    for subscriber in &subscribers {
        if let Some(error) = &subscriber.error {
            errors.push(format!("subscriber {}: {error}", subscriber.number));
        }
    }
    let foreign: u64 = subscribers.iter().map(|subscriber| subscriber.foreign).sum();
    let mut warnings = Vec::new();
    if lag_percentiles.p99 > LAG_WARNING_US {
        warnings.push(format!(
            "the generator sent late: its schedule lag p99 is {} µs, and lateness counts as latency; the generator may be the bottleneck (it used {:.0}% of {} cores)",
            lag_percentiles.p99,
            cpu_share * 100.0,
            machine.cores
        ));
    }
    if cpu_share > CPU_SHARE_WARNING {
        warnings.push(format!(
            "the generator used {:.0}% of the machine's {} cores: it, not the broker, may be the bottleneck; run it on another machine or in shards",
            cpu_share * 100.0,
            machine.cores
        ));
    }
    if lost > 0 && workload.qos != QoS::AtMostOnce {
        warnings.push(
            "messages were lost at QoS 1/2: a broker's own limits are the usual cause (mosquitto's max_queued_messages and max_inflight_messages, for instance), which a client cannot see".into(),
        );
    }
    if foreign > 0 {
        warnings.push(format!(
            "{foreign} messages that are not this run's arrived on its subscriptions (another run on the same topics?)"
        ));
    }
    if overflowed {
        warnings.push(format!(
            "so many gaps in a stream that the oldest were counted as lost to stay within {} per stream; late arrivals into them count as duplicates",
            crate::track::GAPS_MAX
        ));
    }
    Figures {
        figures_version: FIGURES_VERSION,
        shards: 1,
        window_s,
        throughput: Throughput {
            requested_per_s: workload.rate * local_share,
            sent_per_s: sent_in_window as f64 / window_s,
            received_per_s: received_in_window as f64 / window_s,
            acknowledged_per_s: ack_latency.len() as f64 / window_s,
        },
        latency_us: Percentiles::of(&latency),
        ack_latency_us: Percentiles::of(&ack_latency),
        connect_latency_us: Percentiles::of(&connect_latency),
        schedule_lag_us: lag_percentiles,
        scheduled: sum(|publisher| publisher.scheduled),
        sent: sum(|publisher| publisher.sent),
        expected,
        received,
        lost,
        duplicated,
        reordered,
        not_offered: sum(|publisher| publisher.not_offered),
        foreign,
        refused: sum(|publisher| publisher.refused),
        unacknowledged: sum(|publisher| publisher.unacknowledged),
        stream_issues,
        generator: Generator {
            cpu_seconds,
            user_cpu_seconds,
            cpu_us_per_message: per_message(cpu_seconds),
            user_cpu_us_per_message: per_message(user_cpu_seconds),
            cpu_share,
            rss_kib: Process::Myself.rss_kib().unwrap_or(0),
        },
        machine,
        timeline: timeline_seconds,
        histograms: Histograms {
            latency: buckets(&latency),
            ack_latency: buckets(&ack_latency),
            connect_latency: buckets(&connect_latency),
            schedule_lag: buckets(&lag),
        },
        errors,
        warnings,
    }
}

/// The parameters of a run, for the report (`parameters` in report.json).
pub fn parameters(workload: &Workload) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut parameters = BTreeMap::new();
    let mut set = |key: &str, value: serde_json::Value| {
        parameters.insert(key.to_owned(), value);
    };
    set("publishers", json!(workload.publishers));
    set("subscribers", json!(workload.subscribers));
    set("topics", json!(workload.topics));
    set("shape", json!(workload.shape.name()));
    set("qos", json!(workload.qos as u8));
    set("rate", json!(workload.rate));
    set("payload_bytes", json!(workload.payload.to_string()));
    set("retain", json!(workload.retain));
    set(
        "protocol",
        json!(if workload.version.is_v5() { "5.0" } else { "3.1.1" }),
    );
    set("arrivals", json!(workload.arrivals.name()));
    set("seed", json!(workload.seed));
    set("warmup", json!(format_duration(workload.warmup)));
    set("duration", json!(format_duration(workload.duration)));
    set("shard", json!(workload.shard.to_string()));
    set("inflight", json!(workload.inflight));
    if let Some(start_at) = workload.start_at {
        let seconds = start_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        set("start_at", json!(seconds));
    }
    parameters
}
