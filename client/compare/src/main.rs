//! client-throughput: publish throughput of mqtt-client beside rumqttc, end to end through one real
//! mosquitto, in the same process run.
//!
//! Both clients are driven the same way: a tokio current_thread runtime; each client's connection
//! task (ours: spawned by `Client::connect`; rumqttc: its `EventLoop`, spawned here) runs beside
//! the publishing task; M 64-byte messages go to one topic as fast as the client takes them; the
//! same in-flight window for QoS 1 and the same request queue capacity. "Done" means the same for
//! both: for QoS 1, every PUBACK received; for QoS 0, the PUBACK of one QoS 1 "fence" message
//! published after the M QoS 0 ones (mosquitto handles a connection's packets in order, so every
//! QoS 0 message before it was processed). The clock and the CPU counters run from the CONNACK to
//! "done"; connecting and disconnecting are outside the measurement.
//!
//! The clients alternate (ours, rumqttc, ours, rumqttc, ...) for every round, so drift in the
//! machine's load hits both; the summary takes the median of the rounds.
//!
//! Run from this directory (the machine may be shared: one job, niced):
//!   CARGO_TARGET_DIR=target nice -n 10 cargo run --release -j 1 -- --rounds 3

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_client::{Client, ConnectOptions, Message, PublishOutcome};
use mqtt_loadgen::system::Process;
use mqtt_protocol::{ProtocolVersion, QoS};
use mqtt_scenarios::live::mosquitto::{self, Mosquitto, MosquittoConfig};

type Error = Box<dyn StdError>;

/// The topic every message goes to.
const TOPIC: &str = "bench/client-throughput";
/// Payload length in bytes.
const PAYLOAD_LEN: usize = 64;
/// The longest one run (connect, publish, wait, disconnect) may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a disconnect may take once the measurement is over.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// mosquitto's `max_inflight_messages`: sent to 5.0 clients as Receive Maximum, so it must be above
/// the clients' window for the broker not to be the limit.
const BROKER_INFLIGHT_MAX: u16 = 1000;
/// mosquitto's `max_queued_messages` (per client, beyond those in flight).
const BROKER_QUEUED_MAX: u32 = 1_000_000;

const USAGE: &str = "\
client-throughput: publish throughput of mqtt-client beside rumqttc through a real mosquitto

USAGE: client-throughput [OPTIONS]

OPTIONS:
  --messages-qos0 N     QoS 0 messages per run (default 200000)
  --messages-qos1 N     QoS 1 messages per run (default 100000)
  --rounds N            rounds; each runs every client once per QoS (default 3)
  --version V           MQTT version: 5 (default) or 3.1.1
  --inflight N          QoS 1 in-flight window of both clients (default 100)
  --queue-capacity N    request queue capacity of both clients (default: mqtt-client's, 4096)
  --clients LIST        comma-separated: ours,rumqttc (default both; one alone is for profiling)
  -h, --help            this text";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ours,
    Rumqttc,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Ours => "ours",
            Which::Rumqttc => "rumqttc",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    messages_qos0: u64,
    messages_qos1: u64,
    rounds: u32,
    version: ProtocolVersion,
    inflight: u16,
    queue_capacity: usize,
    clients: Vec<Which>,
}

impl Args {
    /// `None` when help was asked for.
    fn parse(mut arguments: impl Iterator<Item = String>) -> Result<Option<Args>, Error> {
        let mut args = Args {
            messages_qos0: 200_000,
            messages_qos1: 100_000,
            rounds: 3,
            version: ProtocolVersion::V5,
            inflight: 100,
            queue_capacity: ConnectOptions::new("").queue_capacity,
            clients: vec![Which::Ours, Which::Rumqttc],
        };
        while let Some(flag) = arguments.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let value = arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let invalid = || format!("invalid value {value:?} for {flag}");
            match flag.as_str() {
                "--messages-qos0" => args.messages_qos0 = value.parse().map_err(|_| invalid())?,
                "--messages-qos1" => args.messages_qos1 = value.parse().map_err(|_| invalid())?,
                "--rounds" => args.rounds = value.parse().map_err(|_| invalid())?,
                "--inflight" => args.inflight = value.parse().map_err(|_| invalid())?,
                "--queue-capacity" => args.queue_capacity = value.parse().map_err(|_| invalid())?,
                "--version" => {
                    args.version = match value.as_str() {
                        "5" | "5.0" => ProtocolVersion::V5,
                        "3.1.1" | "4" => ProtocolVersion::V3_1_1,
                        _ => return Err(invalid().into()),
                    }
                }
                "--clients" => {
                    args.clients = value
                        .split(',')
                        .map(|name| match name.trim() {
                            "ours" => Ok(Which::Ours),
                            "rumqttc" => Ok(Which::Rumqttc),
                            _ => Err(invalid()),
                        })
                        .collect::<Result<_, _>>()?;
                }
                _ => return Err(format!("unknown flag {flag}\n\n{USAGE}").into()),
            }
        }
        if args.messages_qos0 == 0 || args.messages_qos1 == 0 || args.rounds == 0 {
            return Err("message counts and rounds must be positive".into());
        }
        if args.inflight == 0 || args.queue_capacity == 0 || args.clients.is_empty() {
            return Err("--inflight, --queue-capacity and --clients must be positive / non-empty".into());
        }
        Ok(Some(args))
    }

    fn version_name(&self) -> &'static str {
        match self.version {
            ProtocolVersion::V5 => "5.0",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V3_1 => "3.1",
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("client-throughput: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let Some(args) = Args::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(benchmark(&args))
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    messages: u64,
    seconds: f64,
    /// CPU seconds (user + system) of this process.
    cpu_seconds: f64,
    /// CPU seconds of mosquitto.
    broker_cpu_seconds: f64,
}

impl Sample {
    fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    fn cpu_seconds_per_million(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.messages as f64
    }

    fn broker_cpu_seconds_per_million(&self) -> f64 {
        self.broker_cpu_seconds * 1e6 / self.messages as f64
    }
}

/// Wall clock and CPU times at the start of a measurement. CPU times come from
/// `mqtt_loadgen::system`, the project's one `/proc` reader; every thread of a process counts.
struct Stopwatch {
    started: Instant,
    cpu: Duration,
    broker_cpu: Duration,
    broker: Process,
}

impl Stopwatch {
    fn start(broker_pid: u32) -> Result<Stopwatch, Error> {
        let broker = Process::Pid(broker_pid);
        Ok(Stopwatch {
            cpu: Process::Myself.cpu_time()?,
            broker_cpu: broker.cpu_time()?,
            broker,
            started: Instant::now(),
        })
    }

    fn stop(&self, messages: u64) -> Result<Sample, Error> {
        let seconds = self.started.elapsed().as_secs_f64();
        let cpu = Process::Myself.cpu_time()?.saturating_sub(self.cpu);
        let broker_cpu = self.broker.cpu_time()?.saturating_sub(self.broker_cpu);
        Ok(Sample {
            messages,
            seconds,
            cpu_seconds: cpu.as_secs_f64(),
            broker_cpu_seconds: broker_cpu.as_secs_f64(),
        })
    }
}

/// How one run is set up.
#[derive(Debug, Clone)]
struct RunSpec {
    which: Which,
    qos: QoS,
    messages: u64,
    version: ProtocolVersion,
    inflight: u16,
    queue_capacity: usize,
    client_id: String,
    port: u16,
    url: String,
    broker_pid: u32,
}

async fn benchmark(args: &Args) -> Result<(), Error> {
    let config = MosquittoConfig {
        max_inflight_messages: Some(BROKER_INFLIGHT_MAX),
        max_queued_messages: Some(BROKER_QUEUED_MAX),
        ..MosquittoConfig::default()
    };
    let broker = Mosquitto::start(config).await?;
    let broker_version = mosquitto::version().unwrap_or_else(|| "(unknown version)".into());
    println!(
        "mosquitto {broker_version} (max_inflight_messages {BROKER_INFLIGHT_MAX}), MQTT {}, {PAYLOAD_LEN}-byte \
         payloads, one topic, QoS 1 window {}, request queue capacity {}, tokio current_thread, {} round(s)",
        args.version_name(),
        args.inflight,
        args.queue_capacity,
        args.rounds
    );
    println!("CPU s/M: CPU seconds (user + system) per million messages; broker: mosquitto's.\n");
    print_header("round");
    let mut samples: Vec<(QoS, Which, Sample)> = Vec::new();
    for (qos, messages) in [
        (QoS::AtMostOnce, args.messages_qos0),
        (QoS::AtLeastOnce, args.messages_qos1),
    ] {
        for round in 1..=args.rounds {
            for &which in &args.clients {
                let spec = RunSpec {
                    which,
                    qos,
                    messages,
                    version: args.version,
                    inflight: args.inflight,
                    queue_capacity: args.queue_capacity,
                    client_id: format!("{}-qos{}-round{round}", which.name(), qos as u8),
                    port: broker.port(),
                    url: broker.url(),
                    broker_pid: broker.pid(),
                };
                let sample = match tokio::time::timeout(RUN_TIMEOUT, run_once(&spec)).await {
                    Ok(Ok(sample)) => sample,
                    Ok(Err(error)) => {
                        return Err(format!("{} QoS {} round {round}: {error}", which.name(), qos as u8).into())
                    }
                    Err(_) => {
                        return Err(format!(
                            "{} QoS {} round {round}: not done within {RUN_TIMEOUT:?}",
                            which.name(),
                            qos as u8
                        )
                        .into())
                    }
                };
                print_row(&round.to_string(), which.name(), qos, &sample);
                samples.push((qos, which, sample));
            }
        }
    }
    println!("\nmedian of {} round(s):", args.rounds);
    print_header("");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let medians: Vec<(Which, Sample)> = args
            .clients
            .iter()
            .map(|&which| {
                let runs: Vec<Sample> = samples
                    .iter()
                    .filter(|(q, w, _)| *q == qos && *w == which)
                    .map(|(_, _, sample)| *sample)
                    .collect();
                (which, median_sample(&runs))
            })
            .collect();
        for (which, sample) in &medians {
            print_row("", which.name(), qos, sample);
        }
        let ours = medians.iter().find(|(which, _)| *which == Which::Ours);
        let theirs = medians.iter().find(|(which, _)| *which == Which::Rumqttc);
        if let (Some((_, ours)), Some((_, theirs))) = (ours, theirs) {
            println!(
                "{:<6}{:<14}{:>4}{:>10}{:>9.2}{:>11.2}{:>10.2}{:>12.2}",
                "",
                "ours/rumqttc",
                qos as u8,
                "",
                ours.seconds / theirs.seconds,
                ours.messages_per_second() / theirs.messages_per_second(),
                ours.cpu_seconds_per_million() / theirs.cpu_seconds_per_million(),
                ours.broker_cpu_seconds_per_million() / theirs.broker_cpu_seconds_per_million(),
            );
        }
    }
    println!("\n(ratios: seconds and CPU lower is better for ours; msgs/s higher is better)");
    broker.stop().await;
    Ok(())
}

fn print_header(first: &str) {
    println!(
        "{first:<6}{:<14}{:>4}{:>10}{:>9}{:>11}{:>10}{:>12}",
        "client", "QoS", "messages", "seconds", "msgs/s", "CPU s/M", "broker s/M"
    );
}

fn print_row(first: &str, client: &str, qos: QoS, sample: &Sample) {
    println!(
        "{first:<6}{client:<14}{:>4}{:>10}{:>9.3}{:>11.0}{:>10.2}{:>12.2}",
        qos as u8,
        sample.messages,
        sample.seconds,
        sample.messages_per_second(),
        sample.cpu_seconds_per_million(),
        sample.broker_cpu_seconds_per_million(),
    );
    let _ = std::io::stdout().flush();
}

/// Each metric's median over the runs, taken separately.
fn median_sample(runs: &[Sample]) -> Sample {
    let median = |metric: fn(&Sample) -> f64| -> f64 {
        let mut values: Vec<f64> = runs.iter().map(metric).collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        if values.len() % 2 == 1 {
            values[middle]
        } else {
            (values[middle - 1] + values[middle]) / 2.0
        }
    };
    Sample {
        messages: runs[0].messages,
        seconds: median(|sample| sample.seconds),
        cpu_seconds: median(|sample| sample.cpu_seconds),
        broker_cpu_seconds: median(|sample| sample.broker_cpu_seconds),
    }
}

async fn run_once(spec: &RunSpec) -> Result<Sample, Error> {
    match (spec.which, spec.version) {
        (Which::Ours, _) => run_ours(spec).await,
        (Which::Rumqttc, ProtocolVersion::V5) => run_rumqttc_v5(spec).await,
        (Which::Rumqttc, _) => run_rumqttc_v4(spec).await,
    }
}

fn payload() -> Bytes {
    Bytes::from(vec![0x5A; PAYLOAD_LEN])
}

/// Success, or (5.0) No matching subscribers: mosquitto's PUBACK when nobody subscribed.
fn check_outcome(outcome: PublishOutcome) -> Result<(), Error> {
    if outcome.reason_code.is_error() {
        return Err(format!("PUBACK with reason code {}", outcome.reason_code).into());
    }
    Ok(())
}

async fn run_ours(spec: &RunSpec) -> Result<Sample, Error> {
    let mut options = ConnectOptions::new(spec.client_id.clone()).version(spec.version);
    options.inflight_count_max = spec.inflight;
    options.queue_capacity = spec.queue_capacity;
    let (client, events) = Client::connect(&spec.url, options).await?;
    // Nothing here subscribes, so no event matters. Drop the stream rather than leave it unread:
    // the connection task waits while an unread event queue is full (with a small
    // --queue-capacity, the Disconnected event would block `disconnect`), but skips a dropped one.
    drop(events);
    let payload = payload();
    // rumqttc holds at most its request channel's capacity plus its window unacknowledged; so may
    // we, which is what the window of handles bounds (without it, pending_count_max would).
    let handles_max = usize::from(spec.inflight) + spec.queue_capacity;

    let stopwatch = Stopwatch::start(spec.broker_pid)?;
    if spec.qos == QoS::AtMostOnce {
        for _ in 0..spec.messages {
            // Dropping the handle is fine: a QoS 0 message has no outcome to wait for.
            client
                .publish(Message::new(TOPIC, payload.clone(), QoS::AtMostOnce))
                .await?;
        }
        check_outcome(
            client
                .publish_and_wait(Message::new(TOPIC, payload.clone(), QoS::AtLeastOnce))
                .await?,
        )?;
    } else {
        let mut handles = VecDeque::with_capacity(handles_max + 1);
        for _ in 0..spec.messages {
            handles.push_back(client.publish(Message::new(TOPIC, payload.clone(), spec.qos)).await?);
            if handles.len() > handles_max {
                if let Some(oldest) = handles.pop_front() {
                    check_outcome(oldest.wait().await?)?;
                }
            }
        }
        while let Some(handle) = handles.pop_front() {
            check_outcome(handle.wait().await?)?;
        }
    }
    let sample = stopwatch.stop(spec.messages)?;

    tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect())
        .await
        .map_err(|_| format!("no disconnect within {DISCONNECT_TIMEOUT:?}"))??;
    Ok(sample)
}

/// Why a rumqttc run failed, as text: it crosses a task boundary.
#[derive(Debug)]
struct RumqttcError(String);

impl fmt::Display for RumqttcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rumqttc: {}", self.0)
    }
}

impl StdError for RumqttcError {}

fn rumqttc_error(error: impl fmt::Display) -> Error {
    Box::new(RumqttcError(error.to_string()))
}

/// rumqttc's 5.0 client. Its event loop runs in a task of its own, as ours does, and counts
/// PUBACKs until `expected`; this task publishes.
async fn run_rumqttc_v5(spec: &RunSpec) -> Result<Sample, Error> {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    use rumqttc::{NetworkOptions, Outgoing};

    let mut options = MqttOptions::new(spec.client_id.clone(), "127.0.0.1", spec.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_outgoing_inflight_upper_limit(spec.inflight);
    // Ours sets TCP_NODELAY; so does rumqttc here.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(options, spec.queue_capacity);
    loop {
        match eventloop.poll().await.map_err(rumqttc_error)? {
            Event::Incoming(Packet::ConnAck(connack)) if connack.code == ConnectReturnCode::Success => break,
            Event::Incoming(Packet::ConnAck(connack)) => return Err(rumqttc_error(format!("refused: {connack:?}"))),
            _ => {}
        }
    }
    let expected = if spec.qos == QoS::AtMostOnce { 1 } else { spec.messages };
    let payload = payload();

    let stopwatch = Stopwatch::start(spec.broker_pid)?;
    let driver = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected {
            match eventloop.poll().await.map_err(|error| error.to_string())? {
                Event::Incoming(Packet::PubAck(ack)) => {
                    if !matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers) {
                        return Err(format!("PUBACK with reason {:?}", ack.reason));
                    }
                    acks += 1;
                }
                Event::Incoming(Packet::Disconnect(disconnect)) => {
                    return Err(format!("the server disconnected: {disconnect:?}"))
                }
                _ => {}
            }
        }
        Ok(eventloop)
    });
    let qos = if spec.qos == QoS::AtMostOnce {
        RQoS::AtMostOnce
    } else {
        RQoS::AtLeastOnce
    };
    let published = async {
        for _ in 0..spec.messages {
            client.publish_bytes(TOPIC, qos, false, payload.clone()).await?;
        }
        if spec.qos == QoS::AtMostOnce {
            client
                .publish_bytes(TOPIC, RQoS::AtLeastOnce, false, payload.clone())
                .await?;
        }
        Ok::<(), rumqttc::v5::ClientError>(())
    }
    .await;
    if let Err(error) = published {
        driver.abort();
        return Err(rumqttc_error(error));
    }
    let mut eventloop = driver.await?.map_err(rumqttc_error)?;
    let sample = stopwatch.stop(spec.messages)?;

    client.disconnect().await.map_err(rumqttc_error)?;
    tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| format!("no disconnect within {DISCONNECT_TIMEOUT:?}"))?;
    Ok(sample)
}

/// rumqttc's 3.1.1 client, driven as [`run_rumqttc_v5`] drives its 5.0 one.
async fn run_rumqttc_v4(spec: &RunSpec) -> Result<Sample, Error> {
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, NetworkOptions, Outgoing, Packet, QoS as RQoS};

    let mut options = MqttOptions::new(spec.client_id.clone(), "127.0.0.1", spec.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_inflight(spec.inflight);
    let (client, mut eventloop) = AsyncClient::new(options, spec.queue_capacity);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    loop {
        match eventloop.poll().await.map_err(rumqttc_error)? {
            Event::Incoming(Packet::ConnAck(connack)) if connack.code == ConnectReturnCode::Success => break,
            Event::Incoming(Packet::ConnAck(connack)) => return Err(rumqttc_error(format!("refused: {connack:?}"))),
            _ => {}
        }
    }
    let expected = if spec.qos == QoS::AtMostOnce { 1 } else { spec.messages };
    let payload = payload();

    let stopwatch = Stopwatch::start(spec.broker_pid)?;
    let driver = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.map_err(|error| error.to_string())? {
                acks += 1;
            }
        }
        Ok::<_, String>(eventloop)
    });
    let qos = if spec.qos == QoS::AtMostOnce {
        RQoS::AtMostOnce
    } else {
        RQoS::AtLeastOnce
    };
    let published = async {
        for _ in 0..spec.messages {
            client.publish_bytes(TOPIC, qos, false, payload.clone()).await?;
        }
        if spec.qos == QoS::AtMostOnce {
            client
                .publish_bytes(TOPIC, RQoS::AtLeastOnce, false, payload.clone())
                .await?;
        }
        Ok::<(), rumqttc::ClientError>(())
    }
    .await;
    if let Err(error) = published {
        driver.abort();
        return Err(rumqttc_error(error));
    }
    let mut eventloop = driver.await?.map_err(rumqttc_error)?;
    let sample = stopwatch.stop(spec.messages)?;

    client.disconnect().await.map_err(rumqttc_error)?;
    tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| format!("no disconnect within {DISCONNECT_TIMEOUT:?}"))?;
    Ok(sample)
}
