//! End-to-end load: our broker beside mosquitto 2.0, on the same machine, in the same run, driven
//! by the same load tool (`mqtt-client`, MQTT 5.0, in this process). Figures are reported, not
//! gated.
//!
//! # What runs
//!
//! - **Throughput** (`1to1`, `10to10`, `1to50`), QoS 0 and QoS 1, 64-byte payloads: publishers
//!   send as fast as the client takes messages (QoS 1: at most `--window` unacknowledged, 100 by
//!   default) for a warm-up and then the measured window. Delivered msgs/s = messages received by
//!   all subscribers during the window / its length. After the window the publishers stop, their
//!   acknowledgements are awaited and the subscribers drain (until everything arrived, nothing
//!   arrived for a second, or a deadline); loss = sent x subscribers per publisher - received.
//!   `10to10`: publisher i to subscriber i on topic i; `1to50`: one topic, 50 subscribers.
//! - **Latency at a fixed rate** (`latency`, 1 -> 1, QoS 0 and 1): a pacer thread sends on a
//!   schedule of `--rate` messages/s (10,000 by default), open loop: each payload carries its
//!   intended send time and latency is measured from it, so a stall of the broker (or of the
//!   pacer) shows up as latency rather than as fewer samples.
//! - **RSS** (`rss`): `--connections` idle MQTT 5.0 connections (10,000; keep alive 3600 s), at
//!   most 100 connecting at once; VmRSS of the broker process before and after.
//!
//! Latency is the receive instant minus the time in the payload (nanoseconds since one
//! `tokio::time::Instant` of this process), into an HDR histogram (3 significant digits): in
//! throughput runs for the messages delivered within the window (what msgs/s counts), in latency
//! runs for those whose intended send time is within it, whenever they arrive.
//!
//! # Fairness
//!
//! Every run gets a fresh broker process, ours and mosquitto alike: ours is this binary re-run as
//! `--serve-broker 0` (the default multi-thread tokio runtime, one worker per core; mosquitto is
//! single-threaded), killed when dropped and ending by itself when our stdin closes. Both get the
//! same flow limits (in-flight 1000, queue 100,000 per client, raised above mosquitto's defaults of
//! 20 and 1000 so that they do not limit QoS 1) and TCP_NODELAY. The brokers alternate run by run
//! (first broker swapped every round) so that both share the machine's noise; with `--rounds N`
//! the tables give medians. Every wait has a deadline: a broker that stalls ends its run with an
//! error row. Only 127.0.0.1 is used.
//!
//! # Running
//!
//! ```text
//! cargo bench -p mqtt-broker --bench load                      # everything, 5 s per run
//! cargo bench -p mqtt-broker --bench load -- --quick           # smoke run: 1 s, 1,000 connections
//! cargo bench -p mqtt-broker --bench load -- --scenario 1to50 --qos 1 --rounds 3
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use mqtt_broker::server::Server;
use mqtt_broker::{Broker, Config};
use mqtt_client::{Client, ConnectOptions, Event, Events, Message, PublishHandle};
use mqtt_protocol::{QoS, SubscriptionOptions};
use mqtt_scenarios::live::mosquitto::{self, Mosquitto, MosquittoConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

/// Payload length in bytes: send time (u64 LE ns), sequence number (u64 LE), padding.
const PAYLOAD_LEN: usize = 64;
/// Flow limits given to both brokers: QoS 1/2 messages in flight to one client...
const BROKER_INFLIGHT_MAX: u16 = 1000;
/// ... and messages queued per client beyond those (ours also drops QoS 0 beyond this many
/// unwritten packets, mosquitto beyond this many queued packets).
const BROKER_QUEUED_MAX: u32 = 100_000;
/// Keep alive of the idle connections of the RSS scenario.
const IDLE_KEEP_ALIVE_S: u16 = 3600;
/// Connections of the RSS scenario being opened at once.
const CONNECT_CONCURRENCY: usize = 100;

/// Deadline of one client's dial + CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of a SUBACK or PUBACK (the client's request timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for connecting and subscribing every client of a run.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the drain after the window may take (and the acknowledgements with it).
const DRAIN_MAX: Duration = Duration::from_secs(20);
/// The drain ends when nothing has arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// Deadline of the CONNACK that shows the broker still answers after a run.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack for tasks to report once their own deadline has passed.
const JOIN_GRACE: Duration = Duration::from_secs(5);
/// Deadline for our broker to say which port it listens on.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a killed broker to be reaped.
const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for opening every connection of the RSS scenario.
const RSS_CONNECT_TIMEOUT: Duration = Duration::from_secs(180);
/// Pause before reading VmRSS (idle, and after the last connection).
const RSS_SETTLE: Duration = Duration::from_secs(1);
/// Pause between runs, for the previous run's sockets and processes to go.
const PAUSE_BETWEEN_RUNS: Duration = Duration::from_millis(300);
/// The histograms' range: 1 ns to 100 s.
const HISTOGRAM_HIGH_NS: u64 = 100_000_000_000;
/// Used when `getconf CLK_TCK` cannot be run; it is 100 on every Linux platform.
const CLOCK_TICKS_PER_SECOND_DEFAULT: u64 = 100;

const USAGE: &str = "\
load: our MQTT broker beside mosquitto, same machine, same run, same load tool

USAGE: cargo bench -p mqtt-broker --bench load -- [OPTIONS]

OPTIONS:
  --scenario LIST     comma-separated: 1to1,10to10,1to50,latency,rss (default all)
  --qos LIST          0, 1 or 0,1 (default 0,1; rss ignores it)
  --broker LIST       ours, mosquitto or both (default ours,mosquitto)
  --seconds S         measured seconds per run (default 5; --quick: 1)
  --warmup S          warm-up seconds before the window (default 1; --quick: 0.5)
  --rounds N          runs per broker and scenario; tables give medians (default 1)
  --rate N            messages/s of the latency scenario (default 10000)
  --window N          QoS 1 in-flight window of each publisher (default 100)
  --connections N     idle connections of the rss scenario (default 10000; --quick: 1000)
  --broker-threads N  worker threads of our broker's runtime (default: tokio's, one per core)
  --quick             smoke run: shorter runs, fewer connections
  -h, --help          this text

ENVIRONMENT:
  LOAD_BROKER_WRAPPER  a command our broker process is started under, split at spaces, for
                       profiling, e.g. \"valgrind --tool=callgrind\" or \"heaptrack\"";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().map(String::as_str) == Some("--serve-broker") {
        return serve_broker(&arguments[1..]);
    }
    if arguments.is_empty() {
        // `cargo test --benches` runs bench targets with no arguments; `cargo bench` passes --bench.
        println!("load: nothing to do without arguments; run `cargo bench -p mqtt-broker --bench load`");
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(arguments) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("load: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: cannot build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx {
        args,
        base: runtime.block_on(async { Instant::now() }),
        ticks_per_second: clock_ticks_per_second(),
    };
    match runtime.block_on(benchmark(&ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    OneToOne,
    TenToTen,
    FanOut,
    Latency,
    Rss,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::OneToOne,
        Scenario::TenToTen,
        Scenario::FanOut,
        Scenario::Latency,
        Scenario::Rss,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::OneToOne => "1to1",
            Scenario::TenToTen => "10to10",
            Scenario::FanOut => "1to50",
            Scenario::Latency => "latency",
            Scenario::Rss => "rss",
        }
    }

    fn shape(self) -> Option<Shape> {
        match self {
            Scenario::OneToOne | Scenario::Latency => Some(Shape {
                publishers: 1,
                subscribers: 1,
                fan_out: false,
            }),
            Scenario::TenToTen => Some(Shape {
                publishers: 10,
                subscribers: 10,
                fan_out: false,
            }),
            Scenario::FanOut => Some(Shape {
                publishers: 1,
                subscribers: 50,
                fan_out: true,
            }),
            Scenario::Rss => None,
        }
    }
}

/// Who publishes to whom: pairs (publisher i to subscriber i on topic i), or one topic that every
/// subscriber subscribes to.
#[derive(Debug, Clone, Copy)]
struct Shape {
    publishers: usize,
    subscribers: usize,
    fan_out: bool,
}

impl Shape {
    fn topic(&self, index: usize) -> String {
        if self.fan_out {
            "bench/load/0".to_owned()
        } else {
            format!("bench/load/{index}")
        }
    }

    fn subscribers_per_publisher(&self) -> u64 {
        if self.fan_out {
            self.subscribers as u64
        } else {
            1
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerKind {
    Ours,
    Mosquitto,
}

impl BrokerKind {
    fn name(self) -> &'static str {
        match self {
            BrokerKind::Ours => "ours",
            BrokerKind::Mosquitto => "mosquitto",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    scenarios: Vec<Scenario>,
    qos: Vec<QoS>,
    brokers: Vec<BrokerKind>,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    rate: u32,
    window: u16,
    connections: usize,
    /// Worker threads of our broker's runtime; `None`: tokio's default.
    broker_threads: Option<usize>,
    quick: bool,
}

impl Args {
    /// `None` when help was asked for.
    fn parse(arguments: Vec<String>) -> Result<Option<Args>, String> {
        let mut scenarios = Scenario::ALL.to_vec();
        let mut qos = vec![QoS::AtMostOnce, QoS::AtLeastOnce];
        let mut brokers = vec![BrokerKind::Ours, BrokerKind::Mosquitto];
        let (mut seconds, mut warmup, mut connections) = (None, None, None);
        let (mut rounds, mut rate, mut window, mut quick) = (1, 10_000, 100, false);
        let mut broker_threads = None;
        let mut arguments = arguments.into_iter();
        while let Some(flag) = arguments.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                // Passed by `cargo bench`.
                "--bench" => continue,
                "--quick" => {
                    quick = true;
                    continue;
                }
                _ => {}
            }
            let value = arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let invalid = || format!("invalid value {value:?} for {flag}");
            let list = || value.split(',').map(str::trim).filter(|item| !item.is_empty());
            match flag.as_str() {
                "--scenario" => {
                    scenarios = list()
                        .map(|name| {
                            Scenario::ALL
                                .into_iter()
                                .find(|scenario| scenario.name() == name)
                                .ok_or_else(invalid)
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--qos" => {
                    qos = list()
                        .map(|level| match level {
                            "0" => Ok(QoS::AtMostOnce),
                            "1" => Ok(QoS::AtLeastOnce),
                            _ => Err(invalid()),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--broker" => {
                    brokers = list()
                        .flat_map(|name| match name {
                            "ours" => vec![Ok(BrokerKind::Ours)],
                            "mosquitto" => vec![Ok(BrokerKind::Mosquitto)],
                            "both" => vec![Ok(BrokerKind::Ours), Ok(BrokerKind::Mosquitto)],
                            _ => vec![Err(invalid())],
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--seconds" => seconds = Some(value.parse::<f64>().map_err(|_| invalid())?),
                "--warmup" => warmup = Some(value.parse::<f64>().map_err(|_| invalid())?),
                "--connections" => connections = Some(value.parse().map_err(|_| invalid())?),
                "--rounds" => rounds = value.parse().map_err(|_| invalid())?,
                "--rate" => rate = value.parse().map_err(|_| invalid())?,
                "--window" => window = value.parse().map_err(|_| invalid())?,
                "--broker-threads" => broker_threads = Some(value.parse().map_err(|_| invalid())?),
                _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
            }
        }
        let args = Args {
            scenarios,
            qos,
            brokers,
            seconds: seconds.unwrap_or(if quick { 1.0 } else { 5.0 }),
            warmup: warmup.unwrap_or(if quick { 0.5 } else { 1.0 }),
            rounds,
            rate,
            window,
            connections: connections.unwrap_or(if quick { 1000 } else { 10_000 }),
            broker_threads,
            quick,
        };
        let finite = |value: f64| (0.0..=3600.0).contains(&value);
        if !finite(args.seconds) || args.seconds == 0.0 || !finite(args.warmup) {
            return Err("--seconds must be in (0, 3600], --warmup in [0, 3600]".into());
        }
        if args.rounds == 0 || args.rate == 0 || args.window == 0 || args.connections == 0 || broker_threads == Some(0)
        {
            return Err("--rounds, --rate, --window, --connections and --broker-threads must be positive".into());
        }
        if args.scenarios.is_empty() || args.qos.is_empty() || args.brokers.is_empty() {
            return Err("--scenario, --qos and --broker need at least one value".into());
        }
        Ok(Some(args))
    }
}

/// What every run shares.
struct Ctx {
    args: Args,
    /// The origin of every timestamp in a payload.
    base: Instant,
    ticks_per_second: u64,
}

impl Ctx {
    fn times(&self, start: Instant) -> Times {
        let window_start = start + Duration::from_secs_f64(self.args.warmup);
        let window_end = window_start + Duration::from_secs_f64(self.args.seconds);
        Times {
            base: self.base,
            start,
            window_start,
            window_end,
            give_up_at: window_end + DRAIN_MAX,
        }
    }

    /// The longest one run may take, broker start and stop aside.
    fn run_budget(&self, scenario: Scenario) -> Duration {
        match scenario {
            Scenario::Rss => RSS_CONNECT_TIMEOUT + RSS_SETTLE * 2 + JOIN_GRACE,
            _ => {
                SETUP_TIMEOUT
                    + Duration::from_secs_f64(self.args.warmup + self.args.seconds)
                    + DRAIN_MAX
                    + JOIN_GRACE * 3
            }
        }
    }
}

/// The instants of one run.
#[derive(Debug, Clone, Copy)]
struct Times {
    base: Instant,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    /// Acknowledgements and the drain end by then.
    give_up_at: Instant,
}

impl Times {
    fn ns(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.base))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_HIGH_NS, 3).expect("valid histogram bounds")
}

// ---------------------------------------------------------------------------------------------
// Our broker as a child process

/// Our broker's limits here: the defaults, with the same flow limits mosquitto gets.
fn our_config() -> Config {
    Config {
        inflight_count_max: BROKER_INFLIGHT_MAX,
        queued_messages_max: BROKER_QUEUED_MAX as usize,
        outgoing_packets_max: BROKER_QUEUED_MAX as usize,
        ..Config::default()
    }
}

fn mosquitto_config() -> MosquittoConfig {
    MosquittoConfig {
        max_inflight_messages: Some(BROKER_INFLIGHT_MAX),
        max_queued_messages: Some(BROKER_QUEUED_MAX),
        // Ours always sets TCP_NODELAY; mosquitto only when asked.
        extra_lines: vec!["set_tcp_nodelay true".to_owned()],
        ..MosquittoConfig::default()
    }
}

/// `--serve-broker PORT [WORKERS]`: runs our server on 127.0.0.1:PORT (0: any) as
/// `mqtt-harness broker` does (a multi-thread tokio runtime, tokio's default worker count unless
/// given, `Server::run` spawned on a worker thread as `mqtt-harness broker` does), prints `listening ADDRESS`, and serves until
/// stdin closes (the parent went).
fn serve_broker(arguments: &[String]) -> ExitCode {
    let Some(Ok(port)) = arguments.first().map(|port| port.parse::<u16>()) else {
        eprintln!("load: --serve-broker needs a port (0: any)");
        return ExitCode::from(2);
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match arguments.get(1).map(|workers| workers.parse::<usize>()) {
        None => {}
        Some(Ok(workers)) if workers > 0 => {
            builder.worker_threads(workers);
        }
        Some(_) => {
            eprintln!("load: --serve-broker PORT [WORKERS]: WORKERS must be a positive number");
            return ExitCode::from(2);
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load broker: cannot build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    // The lifeline: the parent holds our stdin; EOF (or an error) means it is gone.
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(count) = stdin.read(&mut sink) {
            if count == 0 {
                break;
            }
        }
        let _ = stop.send(());
    });
    let served = runtime.block_on(async move {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|error| format!("binding 127.0.0.1:{port}: {error}"))?;
        let server = Server::new(vec![listener], Broker::new(our_config()));
        let address = server
            .local_addrs()
            .map_err(|error| error.to_string())?
            .first()
            .copied()
            .ok_or("no listener address")?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "listening {address}").map_err(|error| error.to_string())?;
            stdout.flush().map_err(|error| error.to_string())?;
        }
        // Spawned, as `mqtt-harness broker` does: the broker task runs on a worker thread.
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }))
        .await
        .map_err(|error| format!("the broker task failed: {error}"))?;
        Ok::<(), String>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load broker: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Our broker's process, killed when dropped.
struct OurBroker {
    child: Child,
    pid: u32,
    port: u16,
}

impl OurBroker {
    async fn start(threads: Option<usize>) -> Result<OurBroker, String> {
        let exe = std::env::current_exe().map_err(|error| format!("finding this executable: {error}"))?;
        let wrapper = std::env::var("LOAD_BROKER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        command.args(["--serve-broker", "0"]);
        if let Some(threads) = threads {
            command.arg(threads.to_string());
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("spawning {}: {error}", exe.display()))?;
        let pid = child.id().ok_or("our broker exited at once")?;
        let mut broker = OurBroker { child, pid, port: 0 };
        let stdout = broker.child.stdout.take().ok_or("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        // Bounded by the deadline. A wrapper (LOAD_BROKER_WRAPPER) may print lines of its own first.
        loop {
            let line = match timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => return Err("our broker exited before listening".into()),
                Ok(Err(error)) => return Err(format!("reading our broker's stdout: {error}")),
                Err(_) => return Err(format!("our broker did not listen within {BROKER_START_TIMEOUT:?}")),
            };
            if let Some(address) = line.strip_prefix("listening ") {
                broker.port = address
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("unexpected line from our broker: {line:?}"))?
                    .port();
                return Ok(broker);
            }
        }
    }

    async fn stop(mut self) {
        if self.child.start_kill().is_ok() {
            let _ = timeout(BROKER_STOP_TIMEOUT, self.child.wait()).await;
        }
    }
}

impl Drop for OurBroker {
    fn drop(&mut self) {
        // Killed and reaped (at most a second), so that no broker outlives its run.
        if self.child.start_kill().is_err() {
            return;
        }
        for _ in 0..500 {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

enum RunningBroker {
    Ours(OurBroker),
    Mosquitto(Mosquitto),
}

/// What a run needs to know about its broker.
#[derive(Debug, Clone)]
struct BrokerInfo {
    url: String,
    pid: u32,
}

impl RunningBroker {
    async fn start(kind: BrokerKind, threads: Option<usize>) -> Result<RunningBroker, String> {
        match kind {
            BrokerKind::Ours => OurBroker::start(threads).await.map(RunningBroker::Ours),
            BrokerKind::Mosquitto => Mosquitto::start(mosquitto_config())
                .await
                .map(RunningBroker::Mosquitto)
                .map_err(|error| error.to_string()),
        }
    }

    fn info(&self) -> BrokerInfo {
        let (port, pid) = match self {
            RunningBroker::Ours(broker) => (broker.port, broker.pid),
            RunningBroker::Mosquitto(broker) => (broker.port(), broker.pid()),
        };
        BrokerInfo {
            url: format!("mqtt://127.0.0.1:{port}"),
            pid,
        }
    }

    async fn stop(self) {
        match self {
            RunningBroker::Ours(broker) => broker.stop().await,
            RunningBroker::Mosquitto(broker) => broker.stop().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Whether `pid` runs (exists and is not a zombie).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| {
            let (_, after_name) = text.rsplit_once(')')?;
            after_name.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks, every thread of the process.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|error| format!("reading {path}: {error}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    // Field 3 (state) is then the first, so utime (14) and stime (15) are the 12th and 13th.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> Result<u64, String> {
        let value = fields.get(index).ok_or_else(|| format!("{path} is too short"))?;
        value.parse().map_err(|_| format!("{path}: {value:?} is not a number"))
    };
    Ok(field(11)? + field(12)?)
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|error| format!("reading {path}: {error}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in {path}"))
}

/// `getconf CLK_TCK`: the unit of `/proc/*/stat` times.
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(CLOCK_TICKS_PER_SECOND_DEFAULT)
}

// ---------------------------------------------------------------------------------------------
// Clients

fn payload(sent_ns: u64, sequence: u64) -> Bytes {
    let mut payload = BytesMut::with_capacity(PAYLOAD_LEN);
    payload.put_u64_le(sent_ns);
    payload.put_u64_le(sequence);
    payload.resize(PAYLOAD_LEN, 0x5A);
    payload.freeze()
}

/// (send time in ns since the base, sequence number).
fn parse_payload(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() != PAYLOAD_LEN {
        return None;
    }
    let sent_ns = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let sequence = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    Some((sent_ns, sequence))
}

fn client_options(client_id: String, window: u16) -> ConnectOptions {
    let mut options = ConnectOptions::new(client_id);
    options.inflight_count_max = window;
    options.connect_timeout = CONNECT_TIMEOUT;
    options.request_timeout = REQUEST_TIMEOUT;
    options
}

async fn connect(url: &str, options: ConnectOptions) -> Result<(Client, Events), String> {
    let client_id = options.client_id.clone();
    match timeout(CONNECT_TIMEOUT + JOIN_GRACE, Client::connect(url, options)).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(format!("connecting {client_id}: {error}")),
        Err(_) => Err(format!("connecting {client_id}: no CONNACK in time")),
    }
}

/// Connects the run's subscribers (each subscribed at `qos`), then its publishers.
async fn connect_shape(
    broker: &BrokerInfo,
    shape: Shape,
    qos: QoS,
    window: u16,
    label: &str,
) -> Result<(Vec<(Client, Events)>, Vec<Client>), String> {
    let mut subscribers = Vec::with_capacity(shape.subscribers);
    for index in 0..shape.subscribers {
        let (client, events) = connect(&broker.url, client_options(format!("{label}-sub{index}"), window)).await?;
        let topic = shape.topic(index);
        let suback = client
            .subscribe_one(&topic, SubscriptionOptions::with_qos(qos))
            .await
            .map_err(|error| format!("subscribing to {topic}: {error}"))?;
        match suback.reason_codes.as_slice() {
            [code] if code.0 == qos as u8 => {}
            codes => return Err(format!("SUBACK to {topic} at QoS {}: {codes:?}", qos as u8)),
        }
        subscribers.push((client, events));
    }
    let mut publishers = Vec::with_capacity(shape.publishers);
    for index in 0..shape.publishers {
        let (client, events) = connect(&broker.url, client_options(format!("{label}-pub{index}"), window)).await?;
        // Publishers subscribe to nothing: no event matters, and a dropped stream is skipped.
        drop(events);
        publishers.push(client);
    }
    Ok((subscribers, publishers))
}

/// What one subscriber saw.
struct Received {
    /// Latency (ns) of the messages of the window (see [`LatencyOf`]).
    histogram: Histogram<u64>,
    /// Messages received within the window (duplicates aside).
    in_window: u64,
    /// Messages received (duplicates aside).
    unique: u64,
    /// Sequence numbers at or below one seen already: duplicates or reordering.
    duplicates: u64,
    malformed: u64,
    /// Why its connection ended, if it did.
    ended: Option<String>,
}

/// Which messages' latency a run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyOf {
    /// Those delivered within the window (throughput runs: the latency of what the msgs/s counts;
    /// a flat-out publisher may send nothing in the window while the broker works off its backlog).
    ReceivedInWindow,
    /// Those whose (intended) send time is in the window, whenever they arrive (latency runs: a
    /// stall at the end of the window counts in full).
    SentInWindow,
}

/// Reads one subscriber's events until told to stop. Each subscriber hears one publisher, whose
/// sequence numbers increase.
async fn receive(
    mut events: Events,
    mut stop: watch::Receiver<bool>,
    times: Times,
    unique_count: Arc<AtomicU64>,
    latency_of: LatencyOf,
) -> Received {
    let mut received = Received {
        histogram: new_histogram(),
        in_window: 0,
        unique: 0,
        duplicates: 0,
        malformed: 0,
        ended: None,
    };
    let window = times.ns(times.window_start)..times.ns(times.window_end);
    let mut sequence_next = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = events.recv() => event,
        };
        match event {
            Some(Event::Message(publish)) => {
                let now_ns = times.ns(Instant::now());
                let Some((sent_ns, sequence)) = parse_payload(&publish.payload) else {
                    received.malformed += 1;
                    continue;
                };
                if sequence < sequence_next {
                    received.duplicates += 1;
                    continue;
                }
                sequence_next = sequence + 1;
                received.unique += 1;
                unique_count.fetch_add(1, Ordering::Relaxed);
                if window.contains(&now_ns) {
                    received.in_window += 1;
                }
                let of_window = match latency_of {
                    LatencyOf::ReceivedInWindow => window.contains(&now_ns),
                    LatencyOf::SentInWindow => window.contains(&sent_ns),
                };
                if of_window {
                    received
                        .histogram
                        .saturating_record(now_ns.saturating_sub(sent_ns).max(1));
                }
            }
            Some(Event::Disconnected { reason }) => {
                received.ended = Some(reason);
                break;
            }
            Some(_) => {}
            None => {
                received.ended = Some("the client stopped".into());
                break;
            }
        }
    }
    received
}

/// What one publisher did.
#[derive(Debug, Default)]
struct Published {
    sent: u64,
    /// QoS 1 messages without a successful PUBACK by the deadline.
    unacked: u64,
    error: Option<String>,
}

/// Waits for a QoS 1 message's PUBACK (at most until `deadline`); `false` if it did not come or
/// carried an error.
async fn acknowledged(handle: PublishHandle, deadline: Instant) -> bool {
    matches!(
        timeout_at(deadline, handle.wait()).await,
        Ok(Ok(outcome)) if !outcome.reason_code.is_error()
    )
}

/// Publishes as fast as the client takes messages until the window ends; QoS 1 keeps at most
/// `window` unacknowledged.
async fn publish_flat_out(client: Client, topic: String, qos: QoS, window: usize, times: Times) -> Published {
    let mut published = Published::default();
    let mut outstanding = VecDeque::with_capacity(window + 1);
    loop {
        let now = Instant::now();
        if now >= times.window_end {
            break;
        }
        let message = Message::new(topic.clone(), payload(times.ns(now), published.sent), qos);
        match timeout_at(times.window_end, client.publish(message)).await {
            Err(_elapsed) => break,
            Ok(Err(error)) => {
                published.error = Some(format!("publishing: {error}"));
                break;
            }
            Ok(Ok(handle)) => {
                published.sent += 1;
                if qos != QoS::AtMostOnce {
                    outstanding.push_back(handle);
                }
            }
        }
        if outstanding.len() >= window {
            if let Some(oldest) = outstanding.pop_front() {
                if !acknowledged(oldest, times.give_up_at).await {
                    published.unacked += 1;
                    published.error = Some("a PUBACK did not come (or carried an error)".into());
                    break;
                }
            }
        }
    }
    for handle in outstanding {
        if !acknowledged(handle, times.give_up_at).await {
            published.unacked += 1;
        }
    }
    published
}

/// Whether the broker still answers a CONNECT within [`HEALTH_CHECK_TIMEOUT`].
async fn responsive(broker: &BrokerInfo) -> Result<(), String> {
    let mut options = client_options("load-health-check".to_owned(), 1);
    options.connect_timeout = HEALTH_CHECK_TIMEOUT;
    match timeout(HEALTH_CHECK_TIMEOUT + JOIN_GRACE, Client::connect(&broker.url, options)).await {
        Ok(Ok((client, _events))) => {
            let _ = timeout(JOIN_GRACE, client.disconnect()).await;
            Ok(())
        }
        Ok(Err(error)) => Err(format!("the broker did not accept a connection after the run: {error}")),
        Err(_) => Err(format!(
            "the broker did not answer a CONNECT within {HEALTH_CHECK_TIMEOUT:?} after the run (stalled?)"
        )),
    }
}

/// Waits until the subscribers have `expected` messages, nothing arrived for [`DRAIN_IDLE`], or
/// `deadline`.
async fn drain(counters: &[Arc<AtomicU64>], expected: u64, deadline: Instant) {
    let mut last = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        let total: u64 = counters.iter().map(|counter| counter.load(Ordering::Relaxed)).sum();
        let now = Instant::now();
        if total >= expected || now >= deadline {
            return;
        }
        if total != last {
            last = total;
            last_change = now;
        } else if now.saturating_duration_since(last_change) >= DRAIN_IDLE {
            return;
        }
        sleep(DRAIN_POLL).await;
    }
}

async fn join_all<T: 'static>(set: &mut JoinSet<T>, deadline: Instant, what: &str) -> Result<Vec<T>, String> {
    let mut results = Vec::with_capacity(set.len());
    loop {
        match timeout_at(deadline, set.join_next()).await {
            Err(_elapsed) => return Err(format!("{what} did not finish in time")),
            Ok(None) => return Ok(results),
            Ok(Some(Ok(result))) => results.push(result),
            Ok(Some(Err(error))) => return Err(format!("a {what} task failed: {error}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// What one throughput or latency run measured.
struct Sample {
    /// Messages received by all subscribers within the window.
    delivered: u64,
    seconds: f64,
    histogram: Histogram<u64>,
    /// Messages the subscribers should have received in all.
    expected: u64,
    /// Messages they received (duplicates aside).
    received: u64,
    duplicates: u64,
    unacked: u64,
    broker_cpu_seconds: f64,
    /// The pacer's lateness (ns), latency runs only.
    pacer_lateness: Option<Histogram<u64>>,
}

/// Brackets the window with the broker's CPU counter.
async fn broker_cpu_over_window(ctx: &Ctx, pid: u32, times: &Times) -> Result<f64, String> {
    sleep_until(times.window_start).await;
    let before = cpu_ticks(pid)?;
    sleep_until(times.window_end).await;
    let after = cpu_ticks(pid)?;
    Ok(after.saturating_sub(before) as f64 / ctx.ticks_per_second as f64)
}

/// Stops the subscribers once the drain is over and puts the run's figures together.
// Each argument is a different piece of one run that ends here; bundling them into a struct used
// only for this call would add a type without making the call any clearer.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Ctx,
    broker: &BrokerInfo,
    receivers: &mut JoinSet<Received>,
    counters: &[Arc<AtomicU64>],
    stop: watch::Sender<bool>,
    published: Published,
    expected: u64,
    broker_cpu_seconds: f64,
    times: &Times,
    pacer_lateness: Option<Histogram<u64>>,
) -> Result<Sample, String> {
    drain(counters, expected, times.give_up_at).await;
    let _ = stop.send(true);
    let received = join_all(receivers, Instant::now() + JOIN_GRACE, "subscriber").await?;
    if !process_alive(broker.pid) {
        return Err("the broker process exited".into());
    }
    // A stalled broker loses QoS 0 messages without failing anything: it must still answer.
    responsive(broker).await?;
    if let Some(error) = published.error {
        return Err(error);
    }
    let published_sent = published.sent;
    let mut sample = Sample {
        delivered: 0,
        seconds: ctx.args.seconds,
        histogram: new_histogram(),
        expected,
        received: 0,
        duplicates: 0,
        unacked: published.unacked,
        broker_cpu_seconds,
        pacer_lateness,
    };
    for subscriber in received {
        if let Some(reason) = subscriber.ended {
            return Err(format!("a subscriber's connection ended: {reason}"));
        }
        if subscriber.malformed > 0 {
            return Err(format!("{} malformed payloads", subscriber.malformed));
        }
        sample.delivered += subscriber.in_window;
        sample.received += subscriber.unique;
        sample.duplicates += subscriber.duplicates;
        sample
            .histogram
            .add(&subscriber.histogram)
            .map_err(|error| format!("merging histograms: {error:?}"))?;
    }
    // A broker may deliver nothing during the window and catch up afterwards (mosquitto does when
    // a flat-out QoS 0 publisher outruns its fan-out): a 0 msgs/s row, latencies "-" if no message
    // sent in the window arrived. Only a run in which nothing arrived at all is an error.
    if sample.received == 0 {
        return Err(format!(
            "nothing delivered (a stalled broker?); sent {published_sent}, expected {}",
            sample.expected
        ));
    }
    Ok(sample)
}

/// A throughput run: every publisher flat out for the warm-up and the window.
async fn run_throughput(ctx: &Ctx, broker: &BrokerInfo, shape: Shape, qos: QoS, label: &str) -> Result<Sample, String> {
    let (subscribers, publishers) = timeout(SETUP_TIMEOUT, connect_shape(broker, shape, qos, ctx.args.window, label))
        .await
        .map_err(|_| format!("connecting and subscribing took over {SETUP_TIMEOUT:?}"))??;
    let times = ctx.times(Instant::now());
    let (stop, stopped) = watch::channel(false);
    let mut receivers = JoinSet::new();
    let mut counters = Vec::with_capacity(subscribers.len());
    // Kept until the end: dropping a client disconnects it.
    let mut subscriber_clients = Vec::with_capacity(subscribers.len());
    for (client, events) in subscribers {
        let counter = Arc::new(AtomicU64::new(0));
        counters.push(counter.clone());
        receivers.spawn(receive(
            events,
            stopped.clone(),
            times,
            counter,
            LatencyOf::ReceivedInWindow,
        ));
        subscriber_clients.push(client);
    }
    let mut senders = JoinSet::new();
    for (index, client) in publishers.into_iter().enumerate() {
        senders.spawn(publish_flat_out(
            client,
            shape.topic(index),
            qos,
            usize::from(ctx.args.window),
            times,
        ));
    }
    let broker_cpu_seconds = broker_cpu_over_window(ctx, broker.pid, &times).await?;
    let mut published = Published::default();
    for one in join_all(&mut senders, times.give_up_at + JOIN_GRACE, "publisher").await? {
        published.sent += one.sent;
        published.unacked += one.unacked;
        published.error = published.error.or(one.error);
    }
    let expected = published.sent * shape.subscribers_per_publisher();
    let sample = finish(
        ctx,
        broker,
        &mut receivers,
        &counters,
        stop,
        published,
        expected,
        broker_cpu_seconds,
        &times,
        None,
    )
    .await;
    drop(subscriber_clients);
    sample
}

/// Sets its flag when dropped: stops the pacer thread if the run is abandoned.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The latency run's sender: a thread of its own that sleeps until each message's turn and hands
/// it to the client through the runtime.
struct Pacer {
    client: Client,
    topic: String,
    qos: QoS,
    rate: u32,
    times: Times,
    /// QoS 1: each handle goes to the acknowledgement collector (bounded by the window).
    acks: Option<mpsc::Sender<PublishHandle>>,
    cancel: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
}

struct Paced {
    published: Published,
    /// How late the pacer sent each message of the window (ns).
    lateness: Histogram<u64>,
}

impl Pacer {
    fn run(self) -> Paced {
        let mut paced = Paced {
            published: Published::default(),
            lateness: new_histogram(),
        };
        let rate = u64::from(self.rate);
        let mut sequence: u64 = 0;
        while !self.cancel.load(Ordering::Relaxed) {
            let intended = self.times.start + Duration::from_nanos(sequence.saturating_mul(1_000_000_000) / rate);
            if intended >= self.times.window_end {
                break;
            }
            let wait = intended.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let actual = Instant::now();
            if intended >= self.times.window_start {
                paced
                    .lateness
                    .saturating_record(nanos(actual.saturating_duration_since(intended)).max(1));
            }
            // Open loop: the payload carries the intended time, not the actual one.
            let message = Message::new(self.topic.clone(), payload(self.times.ns(intended), sequence), self.qos);
            // The timeout is made inside block_on: its timer needs the runtime's context.
            let sent = self.runtime.block_on(async {
                timeout_at(self.times.give_up_at, async {
                    let handle = self
                        .client
                        .publish(message)
                        .await
                        .map_err(|error| format!("publishing: {error}"))?;
                    if let Some(acks) = &self.acks {
                        acks.send(handle)
                            .await
                            .map_err(|_| "the acknowledgement collector ended".to_owned())?;
                    }
                    Ok::<(), String>(())
                })
                .await
            });
            match sent {
                Ok(Ok(())) => paced.published.sent += 1,
                Ok(Err(error)) => {
                    paced.published.error = Some(error);
                    break;
                }
                Err(_elapsed) => {
                    paced.published.error = Some("publishing stalled past the run's deadline".into());
                    break;
                }
            }
            sequence += 1;
        }
        paced
    }
}

/// Awaits every QoS 1 handle the pacer queued, in order; returns how many were not acknowledged.
async fn collect_acks(mut handles: mpsc::Receiver<PublishHandle>, deadline: Instant) -> u64 {
    let mut unacked = 0;
    while let Some(handle) = handles.recv().await {
        if !acknowledged(handle, deadline).await {
            unacked += 1;
        }
    }
    unacked
}

/// A latency run: 1 -> 1 at a fixed rate, paced by schedule.
async fn run_latency(ctx: &Ctx, broker: &BrokerInfo, qos: QoS, label: &str) -> Result<Sample, String> {
    let shape = Scenario::Latency.shape().expect("the latency scenario has a shape");
    let (mut subscribers, mut publishers) =
        timeout(SETUP_TIMEOUT, connect_shape(broker, shape, qos, ctx.args.window, label))
            .await
            .map_err(|_| format!("connecting and subscribing took over {SETUP_TIMEOUT:?}"))??;
    let (subscriber_client, events) = subscribers.pop().ok_or("no subscriber")?;
    let publisher = publishers.pop().ok_or("no publisher")?;
    // Kept until the end: when the pacer's clone is the last one, dropping it would disconnect the
    // publisher before the last PUBACKs arrive.
    let publisher_kept = publisher.clone();
    let times = ctx.times(Instant::now() + Duration::from_millis(10));
    let (stop, stopped) = watch::channel(false);
    let counter = Arc::new(AtomicU64::new(0));
    let mut receivers = JoinSet::new();
    receivers.spawn(receive(
        events,
        stopped,
        times,
        counter.clone(),
        LatencyOf::SentInWindow,
    ));
    let mut collector = JoinSet::new();
    let acks = if qos == QoS::AtMostOnce {
        None
    } else {
        let (sender, handles) = mpsc::channel(usize::from(ctx.args.window));
        collector.spawn(collect_acks(handles, times.give_up_at));
        Some(sender)
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let pacer = Pacer {
        client: publisher,
        topic: shape.topic(0),
        qos,
        rate: ctx.args.rate,
        times,
        acks,
        cancel,
        runtime: tokio::runtime::Handle::current(),
    };
    let (report, reported) = oneshot::channel();
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let _ = report.send(pacer.run());
        })
        .map_err(|error| format!("starting the pacer thread: {error}"))?;
    let broker_cpu_seconds = broker_cpu_over_window(ctx, broker.pid, &times).await?;
    let paced = match timeout_at(times.give_up_at + JOIN_GRACE, reported).await {
        Ok(Ok(paced)) => paced,
        Ok(Err(_)) => return Err("the pacer thread died".into()),
        Err(_) => return Err("the pacer did not finish in time".into()),
    };
    let mut published = paced.published;
    for unacked in join_all(&mut collector, times.give_up_at + JOIN_GRACE, "acknowledgement").await? {
        published.unacked += unacked;
    }
    let expected = published.sent;
    let sample = finish(
        ctx,
        broker,
        &mut receivers,
        &[counter],
        stop,
        published,
        expected,
        broker_cpu_seconds,
        &times,
        Some(paced.lateness),
    )
    .await;
    drop((subscriber_client, publisher_kept));
    sample
}

/// What the RSS run measured.
#[derive(Debug, Clone, Copy)]
struct RssSample {
    idle_kib: u64,
    loaded_kib: u64,
    connections: usize,
    connect_seconds: f64,
}

/// Opens `--connections` idle connections, at most [`CONNECT_CONCURRENCY`] at once, and reads the
/// broker's VmRSS before and after.
async fn run_rss(ctx: &Ctx, broker: &BrokerInfo, label: &str) -> Result<RssSample, String> {
    sleep(RSS_SETTLE).await;
    let idle_kib = vm_rss_kib(broker.pid)?;
    let count = ctx.args.connections;
    let started = Instant::now();
    let deadline = started + RSS_CONNECT_TIMEOUT;
    let mut clients = Vec::with_capacity(count);
    let mut connecting = JoinSet::new();
    let mut next = 0;
    while clients.len() < count {
        while connecting.len() < CONNECT_CONCURRENCY && next < count {
            let mut options = client_options(format!("{label}-idle{next}"), ctx.args.window);
            options.keep_alive_s = IDLE_KEEP_ALIVE_S;
            options.queue_capacity = 8;
            let url = broker.url.clone();
            connecting.spawn(async move { connect(&url, options).await });
            next += 1;
        }
        let connected = clients.len();
        match timeout_at(deadline, connecting.join_next()).await {
            Err(_elapsed) => {
                return Err(format!(
                    "{connected} of {count} connections open after {RSS_CONNECT_TIMEOUT:?}"
                ))
            }
            Ok(None) => return Err("no connection attempt left".into()),
            Ok(Some(Ok(Ok((client, events))))) => {
                // Idle: nothing to read.
                drop(events);
                clients.push(client);
            }
            Ok(Some(Ok(Err(error)))) => return Err(format!("after {connected} connections: {error}")),
            Ok(Some(Err(error))) => return Err(format!("a connect task failed: {error}")),
        }
        if clients.len() % 1000 == 0 {
            progress(&format!("  {} connections open", clients.len()));
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    sleep(RSS_SETTLE).await;
    let loaded_kib = vm_rss_kib(broker.pid)?;
    let open = clients.iter().filter(|client| client.info().connected).count();
    if open != count {
        return Err(format!("only {open} of {count} connections still open after settling"));
    }
    drop(clients);
    Ok(RssSample {
        idle_kib,
        loaded_kib,
        connections: count,
        connect_seconds,
    })
}

/// Starts a fresh broker, runs `run` against it within `budget`, stops the broker.
async fn with_broker<T, F, Fut>(ctx: &Ctx, kind: BrokerKind, budget: Duration, run: F) -> Result<T, String>
where
    F: FnOnce(BrokerInfo) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let broker = RunningBroker::start(kind, ctx.args.broker_threads)
        .await
        .map_err(|error| format!("starting {}: {error}", kind.name()))?;
    let info = broker.info();
    let result = match timeout(budget, run(info)).await {
        Ok(result) => result,
        Err(_) => Err(format!("the run did not finish within {budget:?}")),
    };
    broker.stop().await;
    result
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn progress(line: &str) {
    eprintln!("load: {line}");
}

/// `value` with `decimals` decimals, or "-" when there is none (NaN, infinite).
fn figure(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "-".to_owned()
    }
}

/// `a / b` as "1.23x", or "-" when either is missing or `b` is 0.
fn ratio(a: f64, b: f64) -> String {
    figure(a / b, 2) + if (a / b).is_finite() { "x" } else { "" }
}

/// The median of the values that are not NaN; NaN if there are none.
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| !value.is_nan());
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.is_empty() {
        f64::NAN
    } else if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// One run's figures as printed (latencies in µs).
#[derive(Debug, Clone, Copy)]
struct Summary {
    messages_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    loss: f64,
    loss_percent: f64,
    duplicates: f64,
    unacked: f64,
    cpu_us_per_message: f64,
    pacer_p50_us: Option<f64>,
    pacer_p99_us: Option<f64>,
}

impl Summary {
    fn of(sample: &Sample) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        // NaN (printed "-") when there is nothing to measure.
        let latency = |ns: u64| if sample.histogram.is_empty() { f64::NAN } else { us(ns) };
        let loss = sample.expected.saturating_sub(sample.received);
        Summary {
            messages_per_second: sample.delivered as f64 / sample.seconds,
            p50_us: latency(sample.histogram.value_at_quantile(0.5)),
            p99_us: latency(sample.histogram.value_at_quantile(0.99)),
            max_us: latency(sample.histogram.max()),
            loss: loss as f64,
            loss_percent: if sample.expected == 0 {
                0.0
            } else {
                loss as f64 * 100.0 / sample.expected as f64
            },
            duplicates: sample.duplicates as f64,
            unacked: sample.unacked as f64,
            cpu_us_per_message: if sample.delivered == 0 {
                f64::NAN
            } else {
                sample.broker_cpu_seconds * 1e6 / sample.delivered as f64
            },
            pacer_p50_us: sample.pacer_lateness.as_ref().map(|h| us(h.value_at_quantile(0.5))),
            pacer_p99_us: sample.pacer_lateness.as_ref().map(|h| us(h.value_at_quantile(0.99))),
        }
    }

    /// Each figure's median over the runs, taken separately.
    fn median(runs: &[Summary]) -> Summary {
        let of = |metric: fn(&Summary) -> f64| median(runs.iter().map(metric).collect());
        let of_option = |metric: fn(&Summary) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(metric).collect();
            (!values.is_empty()).then(|| median(values))
        };
        Summary {
            messages_per_second: of(|s| s.messages_per_second),
            p50_us: of(|s| s.p50_us),
            p99_us: of(|s| s.p99_us),
            max_us: of(|s| s.max_us),
            loss: of(|s| s.loss),
            loss_percent: of(|s| s.loss_percent),
            duplicates: of(|s| s.duplicates),
            unacked: of(|s| s.unacked),
            cpu_us_per_message: of(|s| s.cpu_us_per_message),
            pacer_p50_us: of_option(|s| s.pacer_p50_us),
            pacer_p99_us: of_option(|s| s.pacer_p99_us),
        }
    }

    fn loss_cell(&self) -> String {
        let mut cell = if self.loss == 0.0 {
            "0".to_owned()
        } else {
            format!("{:.0} ({:.2}%)", self.loss, self.loss_percent)
        };
        if self.duplicates > 0.0 {
            let _ = write!(cell, " +{:.0} dup", self.duplicates);
        }
        if self.unacked > 0.0 {
            let _ = write!(cell, " {:.0} unacked", self.unacked);
        }
        cell
    }

    fn one_line(&self) -> String {
        let mut line = format!(
            "{:.0} msgs/s, p50 {} µs, p99 {} µs, max {} µs, loss {}, broker CPU {} µs/msg",
            self.messages_per_second,
            figure(self.p50_us, 0),
            figure(self.p99_us, 0),
            figure(self.max_us, 0),
            self.loss_cell(),
            figure(self.cpu_us_per_message, 2)
        );
        if let (Some(p50), Some(p99)) = (self.pacer_p50_us, self.pacer_p99_us) {
            let _ = write!(line, ", pacer lateness p50 {p50:.0} µs p99 {p99:.0} µs");
        }
        line
    }
}

#[derive(Debug, Clone, Copy)]
struct RssSummary {
    idle_mib: f64,
    loaded_mib: f64,
    delta_mib: f64,
    kib_per_connection: f64,
    connect_seconds: f64,
}

impl RssSummary {
    fn of(sample: &RssSample) -> RssSummary {
        let delta_kib = sample.loaded_kib.saturating_sub(sample.idle_kib) as f64;
        RssSummary {
            idle_mib: sample.idle_kib as f64 / 1024.0,
            loaded_mib: sample.loaded_kib as f64 / 1024.0,
            delta_mib: delta_kib / 1024.0,
            kib_per_connection: delta_kib / sample.connections as f64,
            connect_seconds: sample.connect_seconds,
        }
    }

    fn median(runs: &[RssSummary]) -> RssSummary {
        let of = |metric: fn(&RssSummary) -> f64| median(runs.iter().map(metric).collect());
        RssSummary {
            idle_mib: of(|s| s.idle_mib),
            loaded_mib: of(|s| s.loaded_mib),
            delta_mib: of(|s| s.delta_mib),
            kib_per_connection: of(|s| s.kib_per_connection),
            connect_seconds: of(|s| s.connect_seconds),
        }
    }
}

/// The median of the successful runs, or the first error if none succeeded; plus a note on
/// failed rounds.
fn combine<S: Copy>(runs: &[Result<S, String>], median: fn(&[S]) -> S) -> (Result<S, String>, Option<String>) {
    let successes: Vec<S> = runs.iter().filter_map(|run| run.as_ref().ok().copied()).collect();
    let first_error = runs.iter().find_map(|run| run.as_ref().err().cloned());
    if successes.is_empty() {
        return (Err(first_error.unwrap_or_else(|| "no run".into())), None);
    }
    let note = first_error.map(|error| {
        format!(
            "{} of {} rounds failed, median of the others; first error: {error}",
            runs.len() - successes.len(),
            runs.len()
        )
    });
    (Ok(median(&successes)), note)
}

fn print_table_header() {
    println!(
        "{:<9}{:>4}  {:<10}{:>11}{:>9}{:>9}{:>10}  {:<24}{:>11}",
        "scenario", "QoS", "broker", "msgs/s", "p50 µs", "p99 µs", "max µs", "loss", "CPU µs/msg"
    );
}

fn print_group(scenario: Scenario, qos: QoS, results: &[(BrokerKind, Vec<Result<Summary, String>>)]) {
    let mut medians = Vec::new();
    for (kind, runs) in results {
        let (combined, note) = combine(runs, Summary::median);
        match combined {
            Ok(summary) => {
                println!(
                    "{:<9}{:>4}  {:<10}{:>11.0}{:>9}{:>9}{:>10}  {:<24}{:>11}",
                    scenario.name(),
                    qos as u8,
                    kind.name(),
                    summary.messages_per_second,
                    figure(summary.p50_us, 0),
                    figure(summary.p99_us, 0),
                    figure(summary.max_us, 0),
                    summary.loss_cell(),
                    figure(summary.cpu_us_per_message, 2),
                );
                medians.push((*kind, summary));
            }
            Err(error) => println!(
                "{:<9}{:>4}  {:<10}ERROR: {error}",
                scenario.name(),
                qos as u8,
                kind.name()
            ),
        }
        if let Some(note) = note {
            println!("{:<15}({} {note})", "", kind.name());
        }
    }
    let find = |wanted: BrokerKind| medians.iter().find(|(kind, _)| *kind == wanted).map(|(_, s)| *s);
    if let (Some(ours), Some(theirs)) = (find(BrokerKind::Ours), find(BrokerKind::Mosquitto)) {
        let mut line = format!(
            "{:<9}{:>4}  ours/mosquitto: msgs/s {}, p50 {}, p99 {}, max {}, CPU/msg {}",
            scenario.name(),
            qos as u8,
            ratio(ours.messages_per_second, theirs.messages_per_second),
            ratio(ours.p50_us, theirs.p50_us),
            ratio(ours.p99_us, theirs.p99_us),
            ratio(ours.max_us, theirs.max_us),
            ratio(ours.cpu_us_per_message, theirs.cpu_us_per_message),
        );
        if let (Some(a), Some(b)) = (ours.pacer_p99_us, theirs.pacer_p99_us) {
            let _ = write!(line, " (pacer lateness p99 {a:.0} / {b:.0} µs)");
        }
        println!("{line}");
    }
    let _ = std::io::stdout().flush();
}

fn print_rss(connections: usize, results: &[(BrokerKind, Vec<Result<RssSummary, String>>)]) {
    println!(
        "\nRSS of the broker process (VmRSS) with {connections} idle MQTT 5.0 connections (keep alive \
         {IDLE_KEEP_ALIVE_S} s, at most {CONNECT_CONCURRENCY} connecting at once):"
    );
    println!(
        "{:<10}{:>10}{:>12}{:>11}{:>11}{:>12}",
        "broker", "idle MiB", "loaded MiB", "delta MiB", "KiB/conn", "connect s"
    );
    let mut medians = Vec::new();
    for (kind, runs) in results {
        let (combined, note) = combine(runs, RssSummary::median);
        match combined {
            Ok(summary) => {
                println!(
                    "{:<10}{:>10.1}{:>12.1}{:>11.1}{:>11.2}{:>12.2}",
                    kind.name(),
                    summary.idle_mib,
                    summary.loaded_mib,
                    summary.delta_mib,
                    summary.kib_per_connection,
                    summary.connect_seconds
                );
                medians.push((*kind, summary));
            }
            Err(error) => println!("{:<10}ERROR: {error}", kind.name()),
        }
        if let Some(note) = note {
            println!("{:<10}({note})", "");
        }
    }
    let find = |wanted: BrokerKind| medians.iter().find(|(kind, _)| *kind == wanted).map(|(_, s)| *s);
    if let (Some(ours), Some(theirs)) = (find(BrokerKind::Ours), find(BrokerKind::Mosquitto)) {
        println!(
            "rss ours/mosquitto: loaded {:.2}x, delta {:.2}x, connect time {:.2}x",
            ours.loaded_mib / theirs.loaded_mib,
            ours.delta_mib / theirs.delta_mib,
            ours.connect_seconds / theirs.connect_seconds
        );
    }
    let _ = std::io::stdout().flush();
}

fn print_preamble(ctx: &Ctx) {
    let args = &ctx.args;
    let cores = std::thread::available_parallelism().map_or(0, |count| count.get());
    let mosquitto_version = mosquitto::version().unwrap_or_else(|| "(not found)".into());
    println!("MQTT broker load: ours beside mosquitto {mosquitto_version}, same machine, same run, same load tool");
    println!(
        "ours: a separate process (this binary, --serve-broker) run as `mqtt-harness broker` runs: tokio \
         multi-thread runtime with {}, Server::run spawned on a worker thread; Config::default() but \
         inflight_count_max {BROKER_INFLIGHT_MAX}, queued_messages_max {BROKER_QUEUED_MAX}, outgoing_packets_max \
         {BROKER_QUEUED_MAX}",
        match args.broker_threads {
            Some(threads) => format!("{threads} worker thread(s) (--broker-threads)"),
            None => format!("tokio's default worker count ({cores}, one per core)"),
        }
    );
    println!(
        "mosquitto: single-threaded; max_inflight_messages {BROKER_INFLIGHT_MAX}, max_queued_messages \
         {BROKER_QUEUED_MAX}, set_tcp_nodelay true (ours always sets TCP_NODELAY)"
    );
    println!(
        "load tool: mqtt-client, MQTT 5.0, in this process (tokio multi-thread, {cores} workers); {PAYLOAD_LEN}-byte \
         payloads; QoS 1 window {}; warm-up {} s, {} s measured per run; latency scenario {} msgs/s 1 -> 1, \
         open loop, paced by a thread of its own; {} round(s), medians; a fresh broker per run, brokers alternating{}",
        args.window,
        args.warmup,
        args.seconds,
        args.rate,
        args.rounds,
        if args.quick {
            "; --quick: smoke figures only"
        } else {
            ""
        }
    );
    println!(
        "msgs/s: received by all subscribers in the window; latency: from the send time in the payload, of the msgs \
         delivered in the window (latency scenario: of the msgs whose intended send time is in it); loss: sent x \
         subscribers - received by the end of the drain (<= {} s; QoS 0 may drop by design); CPU µs/msg: broker \
         process CPU in the window / msgs delivered in it\n",
        DRAIN_MAX.as_secs()
    );
}

async fn benchmark(ctx: &Ctx) -> Result<(), String> {
    let args = &ctx.args;
    print_preamble(ctx);
    let mut header_printed = false;
    let mut run_number = 0u64;
    for &scenario in &args.scenarios {
        // The first broker is swapped every round.
        let reversed: Vec<BrokerKind> = args.brokers.iter().rev().copied().collect();
        let order = |round: usize| {
            if round.is_multiple_of(2) {
                args.brokers.clone()
            } else {
                reversed.clone()
            }
        };
        if scenario == Scenario::Rss {
            let mut results: Vec<(BrokerKind, Vec<Result<RssSummary, String>>)> =
                args.brokers.iter().map(|&kind| (kind, Vec::new())).collect();
            for round in 0..args.rounds {
                for kind in order(round) {
                    run_number += 1;
                    let label = format!("r{run_number}");
                    progress(&format!(
                        "rss {} round {}/{}: {} connections",
                        kind.name(),
                        round + 1,
                        args.rounds,
                        args.connections
                    ));
                    let result = with_broker(ctx, kind, ctx.run_budget(scenario), |broker| async move {
                        run_rss(ctx, &broker, &label).await
                    })
                    .await
                    .map(|sample| RssSummary::of(&sample));
                    match &result {
                        Ok(summary) => progress(&format!(
                            "  idle {:.1} MiB, loaded {:.1} MiB ({:.2} KiB/conn), connected in {:.2} s",
                            summary.idle_mib, summary.loaded_mib, summary.kib_per_connection, summary.connect_seconds
                        )),
                        Err(error) => progress(&format!("  ERROR: {error}")),
                    }
                    if let Some((_, runs)) = results.iter_mut().find(|(k, _)| *k == kind) {
                        runs.push(result);
                    }
                    sleep(PAUSE_BETWEEN_RUNS).await;
                }
            }
            print_rss(args.connections, &results);
            continue;
        }
        let shape = scenario.shape().expect("every other scenario has a shape");
        for &qos in &args.qos {
            let mut results: Vec<(BrokerKind, Vec<Result<Summary, String>>)> =
                args.brokers.iter().map(|&kind| (kind, Vec::new())).collect();
            for round in 0..args.rounds {
                for kind in order(round) {
                    run_number += 1;
                    let label = format!("r{run_number}");
                    progress(&format!(
                        "{} QoS {} {} round {}/{}",
                        scenario.name(),
                        qos as u8,
                        kind.name(),
                        round + 1,
                        args.rounds
                    ));
                    let result = with_broker(ctx, kind, ctx.run_budget(scenario), |broker| {
                        let label = label.clone();
                        async move {
                            if scenario == Scenario::Latency {
                                run_latency(ctx, &broker, qos, &label).await
                            } else {
                                run_throughput(ctx, &broker, shape, qos, &label).await
                            }
                        }
                    })
                    .await
                    .map(|sample| Summary::of(&sample));
                    match &result {
                        Ok(summary) => progress(&format!("  {}", summary.one_line())),
                        Err(error) => progress(&format!("  ERROR: {error}")),
                    }
                    if let Some((_, runs)) = results.iter_mut().find(|(k, _)| *k == kind) {
                        runs.push(result);
                    }
                    sleep(PAUSE_BETWEEN_RUNS).await;
                }
            }
            if !header_printed {
                print_table_header();
                header_printed = true;
            }
            print_group(scenario, qos, &results);
        }
    }
    Ok(())
}
