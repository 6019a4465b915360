//! End-to-end load: our broker beside mosquitto 2.0, on the same machine, in the same run, loaded
//! by the project's load generator (`mqtt-loadgen`, as `mqtt-harness bench` uses it). Figures are
//! reported, not gated.
//!
//! # What runs
//!
//! - **The highest rate** of `1to1`, `10to10` and `1to50` (publishers → subscribers, topic groups
//!   as [`Workload::default_topics`] makes them: pairs, or one topic for the fan-out), QoS 0 and 1,
//!   64-byte payloads, MQTT 5.0. [`search::highest_rate`] with the objective of `mqtt-harness
//!   bench --max`: p99 end-to-end latency within `--slo-p99` (50 ms), nothing lost, nothing the
//!   generator could not offer, no connection ended early, at least 95% of the rate sent. Each step
//!   is one open-loop run: `--warmup`, then `--duration` measured.
//! - **At that rate**, from the very run of the search that held it (no second run): latency
//!   percentiles (at each broker's own highest rate), the broker's CPU seconds per million
//!   messages delivered in the window, and the generator's CPU µs per delivered message, all and
//!   in user space (on loopback the kernel's TCP work of both ends falls to whoever sends). The
//!   broker's CPU time is read by pid ([`Process::Pid`]) at the run's first progress report of the
//!   measured window and at its first report after it: the window, to within milliseconds.
//! - **RSS** (`rss`): 10,000 idle MQTT 5.0 connections (keep alive 3600 s, 100 connecting at once,
//!   [`connections::run`]). The broker's VmRSS before they connect and a second after its
//!   descriptor count shows every one accepted, and the generator's own with them open.
//!
//! # Fairness
//!
//! Every run (each step of a search, each RSS run) gets a fresh broker process. Ours is this
//! binary re-run as `--serve-broker`, serving as `mqtt-harness broker` does (a tokio runtime of
//! [`mqtt_broker::server::WORKER_THREADS_DEFAULT`] worker threads, `TOKIO_WORKER_THREADS` to
//! change it; `Server::run` spawned on a worker; mosquitto is single-threaded)
//! until our stdin closes; mosquitto comes from [`mqtt_scenarios::live::mosquitto`]. Both get the
//! same flow limits (in flight 1000, queue 100,000 per client, above mosquitto's defaults of 20
//! and 1000 so that they do not limit QoS 1) and TCP_NODELAY. The two searches run step by step in
//! turn (a FIFO lock hands the machine over: A, B, A, B, ..., A swapped every round), so both
//! share the machine's noise; with `--rounds N` the tables give medians. The generator runs in
//! this process on one engine thread. Every wait has a deadline: a broker that stalls or dies ends
//! its search with an error. Only 127.0.0.1 is used.
//!
//! # Running
//!
//! ```text
//! cargo bench -p mqtt-broker --bench load                      # everything, 5 s per step
//! cargo bench -p mqtt-broker --bench load -- --quick           # smoke: 1 s steps, few of them
//! cargo bench -p mqtt-broker --bench load -- --scenario 1to50 --qos 1 --rounds 3 --json load.json
//! cargo bench -p mqtt-broker --bench load -- --scenario 1to1,10to10 --rate 10000   # paced: CPU per message
//! ```
//!
//! `LOAD_BROKER_WRAPPER`, if set, is a command our broker is started under, split at spaces, for
//! profiling: `valgrind --tool=callgrind`, `heaptrack`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mqtt_broker::server::Server;
use mqtt_broker::{Broker, Config};
use mqtt_loadgen::connections::{self, ConnectionFigures, ConnectionWorkload};
use mqtt_loadgen::figures::Figures;
use mqtt_loadgen::run::{Phase, Progress, Target};
use mqtt_loadgen::search;
use mqtt_loadgen::system::{Machine, Process};
use mqtt_loadgen::workload::{format_duration, parse_duration, PayloadSize, Workload};
use mqtt_protocol::{ProtocolVersion, QoS};
use mqtt_scenarios::live::mosquitto::{self, Mosquitto, MosquittoConfig};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Mutex};
use tokio::time::{sleep, timeout, timeout_at, Instant};

const PAYLOAD_BYTES: usize = 64;
/// Flow limits given to both brokers: QoS 1/2 messages in flight to one client...
const BROKER_INFLIGHT_MAX: u16 = 1000;
/// ... and messages queued per client beyond those.
const BROKER_QUEUED_MAX: u32 = 100_000;
const IDLE_KEEP_ALIVE_S: u16 = 3600;
const CONNECT_CONCURRENCY: usize = 100;
/// One, as `mqtt-harness bench` runs by default: on a small machine the broker needs the rest.
const GENERATOR_THREADS: usize = 1;
/// A search starts at the rate that asks the broker for this many deliveries per second (1to50:
/// 50 for each message published), close enough to any broker's limit for few doublings.
const DELIVERIES_PER_SECOND_START: f64 = 20_000.0;
/// Steps one search may run under `--quick`; loadgen bounds it by [`search::STEPS_MAX`] otherwise.
const QUICK_STEPS_MAX: usize = 5;
/// What one step may take beyond its warm-up and window: connects, the drain (loadgen ends it
/// within 60 s), closing.
const STEP_SLACK: Duration = Duration::from_secs(90);
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(10);
const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connect after each run shows that the broker still runs.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// One RSS run, all of it: connects (10,000 at 100 at once), the hold, closing.
const RSS_BUDGET: Duration = Duration::from_secs(300);
/// Pause before reading VmRSS: idle, and after the last connection is in.
const RSS_SETTLE: Duration = Duration::from_secs(1);
/// How long the connections are held once open: the settle and the reading fit in it.
const RSS_HOLD: Duration = Duration::from_secs(3);
const RSS_POLL: Duration = Duration::from_millis(50);

/// Our broker beside mosquitto: the highest rate within a p99 objective, CPU per message, and
/// memory with idle connections. Figures are reported, not gated.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Which to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1to1,10to10,1to50,rss")]
    scenario: Vec<Scenario>,
    /// QoS levels of the message scenarios, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1", value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Vec<u8>,
    /// The measured window of each search step [default: 5s; --quick: 1s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Sent before each window, not measured [default: 1s; --quick: 500ms].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    warmup: Option<Duration>,
    /// No search: one run per broker at this rate (msgs/s published), for CPU per message at a
    /// paced rate.
    #[arg(long, value_name = "MSGS_PER_S")]
    rate: Option<f64>,
    /// The latency the highest rate must hold at p99.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, value_name = "DURATION")]
    slo_p99: Duration,
    /// Searches (and RSS runs) per broker; the tables give medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Idle connections of the rss scenario [default: 10000; --quick: 1000].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// Smoke run: 1 s steps, at most 5 per search, 1,000 connections.
    #[arg(long)]
    quick: bool,
    /// One broker alone (for profiling).
    #[arg(long, value_name = "BROKER")]
    only: Option<BrokerKind>,
    /// Also write every figure, each round's, to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Serve our broker (the child process of each run).
    #[arg(long, hide = true)]
    serve_broker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    #[value(name = "1to1")]
    OneToOne,
    #[value(name = "10to10")]
    TenToTen,
    #[value(name = "1to50")]
    OneToFifty,
    Rss,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::OneToOne => "1to1",
            Scenario::TenToTen => "10to10",
            Scenario::OneToFifty => "1to50",
            Scenario::Rss => "rss",
        }
    }

    /// Publishers and subscribers; `None` for rss.
    fn clients(self) -> Option<(usize, usize)> {
        match self {
            Scenario::OneToOne => Some((1, 1)),
            Scenario::TenToTen => Some((10, 10)),
            Scenario::OneToFifty => Some((1, 50)),
            Scenario::Rss => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// The arguments with their defaults resolved.
struct Plan {
    args: Args,
    brokers: Vec<BrokerKind>,
    warmup: Duration,
    duration: Duration,
    connections: usize,
    steps_max: usize,
}

fn main() -> ExitCode {
    if std::env::args_os().len() <= 1 {
        // `cargo test --benches` runs bench targets without arguments; `cargo bench` passes --bench.
        println!("load: nothing to do without arguments; run `cargo bench -p mqtt-broker --bench load`");
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    if args.serve_broker {
        return serve_broker();
    }
    let quick = args.quick;
    let plan = Plan {
        brokers: args
            .only
            .map_or(vec![BrokerKind::Ours, BrokerKind::Mosquitto], |only| vec![only]),
        warmup: args
            .warmup
            .unwrap_or(Duration::from_millis(if quick { 500 } else { 1000 })),
        duration: args.duration.unwrap_or(Duration::from_secs(if quick { 1 } else { 5 })),
        connections: args.connections.unwrap_or(if quick { 1000 } else { 10_000 }),
        steps_max: if quick { QUICK_STEPS_MAX } else { search::STEPS_MAX },
        args,
    };
    if plan.duration.is_zero() || plan.connections == 0 {
        eprintln!("load: --duration and --connections must be above 0");
        return ExitCode::from(2);
    }
    // Before any broker starts: the brokers inherit the raised limit.
    if plan.args.scenario.contains(&Scenario::Rss) {
        if let Err(error) = mqtt_loadgen::system::ensure_file_descriptors(plan.connections as u64) {
            eprintln!("load: {error}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: cannot build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(benchmark(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The brokers

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

/// `--serve-broker`: our broker on 127.0.0.1 (a port of the system's choice) as `mqtt-harness
/// broker` runs it; prints `listening ADDRESS`, serves until stdin closes (the parent went).
fn serve_broker() -> ExitCode {
    // As `mqtt-harness broker` runs; TOKIO_WORKER_THREADS=N overrides it to compare.
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|threads| threads.parse().ok())
        .unwrap_or(mqtt_broker::server::WORKER_THREADS_DEFAULT);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load broker: cannot build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    // The lifeline, unbounded on purpose: it lasts as long as the parent holds our stdin.
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(count) if count > 0) {}
        let _ = stop.send(());
    });
    let served = runtime.block_on(async move {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|error| format!("binding 127.0.0.1: {error}"))?;
        let server = Server::new(vec![listener], Broker::new(our_config()));
        let address = server
            .local_addrs()
            .map_err(|error| error.to_string())?
            .first()
            .copied()
            .ok_or("no listener address")?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {address}")
            .and_then(|()| stdout.flush())
            .map_err(|error| error.to_string())?;
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

/// A fresh broker process, killed when dropped (ours also ends when our end of its stdin closes).
enum RunningBroker {
    Ours {
        child: Child,
        pid: u32,
        address: SocketAddr,
    },
    Mosquitto(Mosquitto),
}

impl RunningBroker {
    async fn start(kind: BrokerKind) -> Result<RunningBroker, String> {
        let started = match kind {
            BrokerKind::Ours => start_ours().await,
            BrokerKind::Mosquitto => Mosquitto::start(mosquitto_config())
                .await
                .map(RunningBroker::Mosquitto)
                .map_err(|error| error.to_string()),
        };
        started.map_err(|error| format!("starting {}: {error}", kind.name()))
    }

    fn address(&self) -> SocketAddr {
        match self {
            RunningBroker::Ours { address, .. } => *address,
            RunningBroker::Mosquitto(broker) => broker.address(),
        }
    }

    fn process(&self) -> Process {
        match self {
            RunningBroker::Ours { pid, .. } => Process::Pid(*pid),
            RunningBroker::Mosquitto(broker) => Process::Pid(broker.pid()),
        }
    }

    /// Kills the broker and waits (bounded) until it is reaped.
    async fn stop(self) {
        match self {
            RunningBroker::Ours { mut child, .. } => {
                if child.start_kill().is_ok() {
                    let _ = timeout(BROKER_STOP_TIMEOUT, child.wait()).await;
                }
            }
            RunningBroker::Mosquitto(broker) => broker.stop().await,
        }
    }
}

async fn start_ours() -> Result<RunningBroker, String> {
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
    let mut child = command
        .arg("--serve-broker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("spawning {}: {error}", exe.display()))?;
    let pid = child.id().ok_or("it exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + BROKER_START_TIMEOUT;
    // A wrapper may print lines of its own first.
    loop {
        let line = match timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => return Err("it exited before listening".into()),
            Ok(Err(error)) => return Err(format!("reading its stdout: {error}")),
            Err(_) => return Err(format!("it did not listen within {BROKER_START_TIMEOUT:?}")),
        };
        if let Some(address) = line.strip_prefix("listening ") {
            let address = address
                .parse()
                .map_err(|_| format!("unexpected line from it: {line:?}"))?;
            return Ok(RunningBroker::Ours { child, pid, address });
        }
    }
}

/// Whether the broker still takes a TCP connection: a dead one does not, and its loss of QoS 0
/// messages would otherwise pass for overload.
async fn still_answers(address: SocketAddr) -> Result<(), String> {
    match timeout(HEALTH_CHECK_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("the broker no longer accepts connections ({error})")),
        Err(_) => Err(format!(
            "the broker did not accept a connection within {HEALTH_CHECK_TIMEOUT:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The highest rate

/// A search's outcome at the highest rate that held.
#[derive(Serialize)]
struct Found {
    rate: f64,
    figures: Figures,
    /// Of the broker, over the window; NaN if it could not be read.
    broker_cpu_s_per_million: f64,
    steps: usize,
    /// The step budget ended the search before any rate failed: the rate is a lower bound.
    lower_bound: bool,
}

/// The broker's CPU time over the measured window, read when the run reports its phases.
struct WindowCpu {
    process: Process,
    start: Option<Duration>,
    end: Option<Duration>,
}

impl WindowCpu {
    fn see(&mut self, progress: &Progress) {
        match progress.phase {
            Phase::Measuring if self.start.is_none() => self.start = self.process.cpu_time().ok(),
            Phase::Draining if self.start.is_some() && self.end.is_none() => {
                self.end = self.process.cpu_time().ok();
            }
            _ => {}
        }
    }

    fn seconds(&self) -> Option<f64> {
        Some(self.end?.saturating_sub(self.start?).as_secs_f64())
    }
}

/// One step: a fresh broker, one run at `workload.rate`, the broker's CPU over the window.
async fn step(kind: BrokerKind, workload: &Workload) -> Result<(Figures, Option<f64>), String> {
    let broker = RunningBroker::start(kind).await?;
    let target = Target::tcp(
        broker.address(),
        format!("{} at mqtt://{}", kind.name(), broker.address()),
    );
    let mut window_cpu = WindowCpu {
        process: broker.process(),
        start: None,
        end: None,
    };
    let budget = workload.warmup + workload.duration + STEP_SLACK;
    let mut on_progress = |progress: &Progress| window_cpu.see(progress);
    let ran = timeout(
        budget,
        mqtt_loadgen::run(workload, &target, GENERATOR_THREADS, &mut on_progress),
    )
    .await;
    let answers = still_answers(broker.address()).await;
    broker.stop().await;
    let figures = ran.map_err(|_| format!("the run did not end within {}", format_duration(budget)))??;
    answers.map_err(|error| format!("after the run at {:.0} msgs/s: {error}", workload.rate))?;
    Ok((figures, window_cpu.seconds()))
}

/// Searches `kind`'s highest rate of `base`, one step at a time while it holds `turn`.
async fn search_one(
    plan: &Plan,
    turn: &Mutex<()>,
    kind: BrokerKind,
    base: &Workload,
    label: &str,
) -> Result<Option<Found>, String> {
    // Each step's rate and broker CPU per million, and whether one did not hold.
    let broker_cpu: RefCell<Vec<(f64, f64)>> = RefCell::new(Vec::new());
    let failed = std::cell::Cell::new(false);
    let mut steps = 0;
    let mut run_step = |rate: f64| {
        steps += 1;
        let number = steps;
        let (broker_cpu, failed) = (&broker_cpu, &failed);
        async move {
            if number > plan.steps_max {
                // Past the budget: answered "does not hold" without running, so that the search
                // closes in on the best rate it has.
                return Ok((false, Figures::default()));
            }
            let _turn = turn.lock().await;
            let workload = Workload { rate, ..base.clone() };
            let (figures, cpu_seconds) = step(kind, &workload).await?;
            let delivered = figures.throughput.received_per_s * figures.window_s;
            let per_million = match cpu_seconds {
                Some(seconds) if delivered > 0.0 => seconds * 1e6 / delivered,
                _ => f64::NAN,
            };
            broker_cpu.borrow_mut().push((rate, per_million));
            let held = mqtt_loadgen::search::holds(&figures, rate, plan.args.slo_p99);
            failed.set(failed.get() || !held);
            eprintln!(
                "load: {label} {}: step {number}, {rate:.0} msgs/s → received {:.0}/s, p99 {} µs, lost {}, not offered {}, errors {}, broker {} CPU s per M → {}",
                kind.name(),
                figures.throughput.received_per_s,
                figures.latency_us.p99,
                figures.lost,
                figures.not_offered,
                figures.errors.len(),
                figure(per_million, 2),
                if held { "holds" } else { "does not hold" }
            );
            Ok((held, figures))
        }
    };
    let start = DELIVERIES_PER_SECOND_START / base.copies_per_message(0).max(1) as f64;
    let found = match plan.args.rate {
        Some(rate) => {
            let (_, figures) = run_step(rate).await?;
            Some((rate, figures))
        }
        None => search::highest_rate(start, &mut run_step).await?,
    };
    let lower_bound = steps > plan.steps_max && !failed.get();
    let steps = steps.min(plan.steps_max);
    Ok(found.map(|(rate, figures)| {
        let broker_cpu_s_per_million = broker_cpu
            .borrow()
            .iter()
            .rev()
            .find(|(tried, _)| *tried == rate)
            .map_or(f64::NAN, |(_, per_million)| *per_million);
        Found {
            rate,
            figures,
            broker_cpu_s_per_million,
            steps,
            lower_bound,
        }
    }))
}

/// Every broker's search of `base`, in turn step by step; `first` starts.
async fn search_all(
    plan: &Plan,
    base: &Workload,
    label: &str,
    first: usize,
) -> Vec<(BrokerKind, Result<Option<Found>, String>)> {
    // tokio's Mutex is fair: a step that ends queues behind the other broker's waiting step.
    let turn = Mutex::new(());
    let search = |kind| search_one(plan, &turn, kind, base, label);
    match plan.brokers.as_slice() {
        [only] => vec![(*only, search(*only).await)],
        [a, b] => {
            let (a, b) = if first == 0 { (*a, *b) } else { (*b, *a) };
            let (result_a, result_b) = tokio::join!(search(a), search(b));
            vec![(a, result_a), (b, result_b)]
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// RSS with idle connections

#[derive(Serialize)]
struct RssSample {
    broker_rss_kib_idle: u64,
    broker_rss_kib_connected: u64,
    generator: ConnectionFigures,
}

async fn rss_run(plan: &Plan, kind: BrokerKind) -> Result<RssSample, String> {
    let broker = RunningBroker::start(kind).await?;
    let measured = timeout(RSS_BUDGET, rss_of(plan, &broker)).await;
    broker.stop().await;
    measured.map_err(|_| format!("the RSS run did not end within {RSS_BUDGET:?}"))?
}

/// Opens the idle connections, reads the broker's VmRSS once it holds them all, closes them.
async fn rss_of(plan: &Plan, broker: &RunningBroker) -> Result<RssSample, String> {
    let process = broker.process();
    sleep(RSS_SETTLE).await;
    let broker_rss_kib_idle = process.rss_kib()?;
    let descriptors_wanted = process.open_descriptors()? + plan.connections;
    let workload = ConnectionWorkload {
        count: plan.connections,
        rate: None,
        concurrency: CONNECT_CONCURRENCY,
        hold: RSS_HOLD,
        keep_alive_s: IDLE_KEEP_ALIVE_S,
        version: ProtocolVersion::V5,
        client_id_prefix: "load-idle".into(),
        username: None,
        password: None,
    };
    let mut quiet = |_attempted: u64, _connected: u64| {};
    let target = Target::tcp(broker.address(), "idle");
    let connecting = connections::run(&workload, &target, &mut quiet);
    tokio::pin!(connecting);
    let mut all_in_at = None;
    let mut broker_rss_kib_connected = None;
    // Bounded by the connection workload, which ends after its connects and hold.
    let generator = loop {
        tokio::select! {
            figures = &mut connecting => break figures?,
            () = sleep(RSS_POLL), if broker_rss_kib_connected.is_none() => match all_in_at {
                None if process.open_descriptors()? >= descriptors_wanted => all_in_at = Some(Instant::now()),
                Some(at) if at.elapsed() >= RSS_SETTLE => broker_rss_kib_connected = Some(process.rss_kib()?),
                _ => {}
            },
        }
    };
    let failed: u64 = generator.failed.values().sum();
    let dropped: u64 = generator.dropped.values().sum();
    if failed > 0 || dropped > 0 {
        return Err(format!(
            "{failed} connections failed ({:?}), {dropped} were dropped ({:?})",
            generator.failed, generator.dropped
        ));
    }
    let broker_rss_kib_connected = broker_rss_kib_connected.ok_or_else(|| {
        format!(
            "the broker did not hold {} connections a second before the hold of {RSS_HOLD:?} ended",
            plan.connections
        )
    })?;
    Ok(RssSample {
        broker_rss_kib_idle,
        broker_rss_kib_connected,
        generator,
    })
}

// ---------------------------------------------------------------------------------------------
// The run and its report

/// One row of a table: what it shows, its decimals, how to read it from one round.
type Row<T> = (&'static str, usize, fn(&T) -> f64);

const SEARCH_ROWS: [Row<Found>; 9] = [
    ("rate held, msgs/s published", 0, |found| found.rate),
    ("delivered msgs/s", 0, |found| found.figures.throughput.received_per_s),
    ("latency p50 µs", 0, |found| found.figures.latency_us.p50 as f64),
    ("latency p99 µs", 0, |found| found.figures.latency_us.p99 as f64),
    ("latency p99.9 µs", 0, |found| found.figures.latency_us.p999 as f64),
    ("latency max µs", 0, |found| found.figures.latency_us.max as f64),
    ("broker CPU s per M delivered", 2, |found| {
        found.broker_cpu_s_per_million
    }),
    ("generator CPU µs per delivered", 2, |found| {
        found.figures.generator.cpu_us_per_message
    }),
    ("  of it in user space", 2, |found| {
        found.figures.generator.user_cpu_us_per_message
    }),
];

const RSS_ROWS: [Row<RssSample>; 5] = [
    ("broker VmRSS idle, MiB", 1, |sample| {
        sample.broker_rss_kib_idle as f64 / 1024.0
    }),
    ("broker VmRSS connected, MiB", 1, |sample| {
        sample.broker_rss_kib_connected as f64 / 1024.0
    }),
    ("broker KiB per connection", 2, |sample| {
        sample
            .broker_rss_kib_connected
            .saturating_sub(sample.broker_rss_kib_idle) as f64
            / sample.generator.connected.max(1) as f64
    }),
    ("generator RSS connected, MiB", 1, |sample| {
        sample.generator.generator_rss_kib_open as f64 / 1024.0
    }),
    ("connects per second", 0, |sample| sample.generator.connect_per_s),
];

async fn benchmark(plan: &Plan) -> Result<(), String> {
    let args = &plan.args;
    let machine = Machine::describe();
    let mosquitto_version = mosquitto::version().unwrap_or_else(|| "(not found)".into());
    println!(
        "MQTT broker load: ours beside mosquitto {mosquitto_version}, {} cores, kernel {}",
        machine.cores, machine.kernel
    );
    println!(
        "both: a fresh process per run, in flight {BROKER_INFLIGHT_MAX}, queue {BROKER_QUEUED_MAX} per client, TCP_NODELAY; \
         ours: tokio, {} worker thread(s), mosquitto: single-threaded",
        std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|threads| threads.parse::<usize>().ok())
            .unwrap_or(mqtt_broker::server::WORKER_THREADS_DEFAULT)
    );
    println!(
        "generator: mqtt-loadgen, {GENERATOR_THREADS} engine thread, MQTT 5.0, {PAYLOAD_BYTES}-byte payloads, open loop; \
         each search step {} warm-up + {} measured, at most {} steps; {} round(s), medians{}\n",
        format_duration(plan.warmup),
        format_duration(plan.duration),
        plan.steps_max,
        args.rounds,
        if args.quick { "; --quick: smoke figures only" } else { "" }
    );
    let mut searches = Vec::new();
    let mut rss = Vec::new();
    for &scenario in &args.scenario {
        match scenario.clients() {
            Some((publishers, subscribers)) => {
                searches.extend(search_scenario(plan, scenario, publishers, subscribers).await)
            }
            None => rss.push(rss_scenario(plan).await),
        }
    }
    if let Some(path) = &args.json {
        let document = json!({
            "mosquitto_version": mosquitto_version,
            "machine": machine,
            "parameters": {
                "warmup_s": plan.warmup.as_secs_f64(),
                "duration_s": plan.duration.as_secs_f64(),
                "slo_p99_us": args.slo_p99.as_micros() as u64,
                "rounds": args.rounds,
                "steps_max": plan.steps_max,
                "payload_bytes": PAYLOAD_BYTES,
                "generator_threads": GENERATOR_THREADS,
                "broker_inflight_max": BROKER_INFLIGHT_MAX,
                "broker_queued_max": BROKER_QUEUED_MAX,
                "quick": args.quick,
            },
            "searches": searches,
            "rss": rss,
        });
        let text = serde_json::to_string(&document).map_err(|error| error.to_string())?;
        std::fs::write(path, text).map_err(|error| format!("writing {}: {error}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Both QoS levels of one message scenario: the searches, their table, their JSON.
async fn search_scenario(plan: &Plan, scenario: Scenario, publishers: usize, subscribers: usize) -> Vec<Value> {
    let topics = Workload::default_topics(publishers, subscribers);
    let mut tables = Vec::new();
    for &qos in &plan.args.qos {
        let qos = if qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let base = Workload {
            publishers,
            subscribers,
            topics,
            qos,
            payload: PayloadSize::fixed(PAYLOAD_BYTES),
            version: ProtocolVersion::V5,
            warmup: plan.warmup,
            duration: plan.duration,
            client_id_prefix: "load".into(),
            topic_prefix: "load".into(),
            inflight: BROKER_INFLIGHT_MAX,
            ..Workload::default()
        };
        let mut rounds = Vec::new();
        for round in 0..plan.args.rounds as usize {
            let label = format!("{} QoS {} round {}", scenario.name(), qos as u8, round + 1);
            rounds.extend(search_all(plan, &base, &label, round % 2).await);
        }
        tables.push((qos, rounds));
    }
    println!(
        "{}: {publishers} publisher(s) → {subscribers} subscriber(s), {topics} topic group(s); the highest rate with \
         p99 ≤ {} and no loss, and the figures of the run that held it",
        scenario.name(),
        format_duration(plan.args.slo_p99)
    );
    let mut documents = Vec::new();
    for (qos, rounds) in &tables {
        // A search that found no rate is no error, but has no figures either.
        let shown: Vec<(BrokerKind, Result<&Found, String>)> = rounds
            .iter()
            .map(|(kind, result)| match result {
                Ok(Some(found)) => (*kind, Ok(found)),
                Ok(None) => (*kind, Err("no rate held the objective".to_owned())),
                Err(error) => (*kind, Err(error.clone())),
            })
            .collect();
        print_table(plan, &format!("QoS {}", *qos as u8), &SEARCH_ROWS, &shown);
        // What the reader must know before trusting a column: the generator's own warnings too.
        for (kind, result) in rounds {
            if let Ok(Some(found)) = result.as_ref().map(Option::as_ref) {
                for warning in &found.figures.warnings {
                    println!("{:<8}{}: {warning}", "", kind.name());
                }
                if found.lower_bound {
                    let (steps, rate) = (found.steps, found.rate);
                    println!(
                        "{:<8}{}: all {steps} steps held: {rate:.0} msgs/s is a lower bound",
                        "",
                        kind.name()
                    );
                }
            }
        }
        documents.push(json!({
            "scenario": scenario.name(),
            "qos": *qos as u8,
            "publishers": publishers,
            "subscribers": subscribers,
            "rounds": rounds_json(rounds),
        }));
    }
    println!();
    documents
}

/// The rss scenario: its runs, its table, its JSON.
async fn rss_scenario(plan: &Plan) -> Value {
    let mut rounds = Vec::new();
    for round in 0..plan.args.rounds as usize {
        for index in 0..plan.brokers.len() {
            let kind = plan.brokers[(index + round) % plan.brokers.len()];
            eprintln!(
                "load: rss round {} {}: {} connections",
                round + 1,
                kind.name(),
                plan.connections
            );
            rounds.push((kind, rss_run(plan, kind).await));
        }
    }
    println!(
        "rss: {} idle MQTT 5.0 connections, keep alive {IDLE_KEEP_ALIVE_S} s, {CONNECT_CONCURRENCY} connecting at once",
        plan.connections
    );
    let shown: Vec<(BrokerKind, Result<&RssSample, String>)> = rounds
        .iter()
        .map(|(kind, result)| (*kind, result.as_ref().map_err(Clone::clone)))
        .collect();
    print_table(plan, "", &RSS_ROWS, &shown);
    println!();
    json!({ "connections": plan.connections, "rounds": rounds_json(&rounds) })
}

fn rounds_json<T: Serialize>(rounds: &[(BrokerKind, Result<T, String>)]) -> Value {
    let round = |(kind, result): &(BrokerKind, Result<T, String>)| match result {
        Ok(value) => json!({ "broker": kind.name(), "result": value }),
        Err(error) => json!({ "broker": kind.name(), "error": error }),
    };
    Value::Array(rounds.iter().map(round).collect())
}

/// A table: one row per figure, one column per broker (the median of its rounds), and the ratio
/// ours/mosquitto; then the errors of failed rounds.
fn print_table<T>(plan: &Plan, section: &str, rows: &[Row<T>], rounds: &[(BrokerKind, Result<&T, String>)]) {
    let mut header = format!("{section:<8}{:<32}", "");
    for kind in &plan.brokers {
        let _ = write!(header, "{:>12}", kind.name());
    }
    if plan.brokers.len() == 2 {
        let _ = write!(header, "{:>16}", "ours/mosquitto");
    }
    println!("{header}");
    for (label, decimals, value_of) in rows {
        let values: Vec<f64> = plan
            .brokers
            .iter()
            .map(|&kind| {
                let of_kind = rounds.iter().filter(|(of, _)| *of == kind);
                median(
                    of_kind
                        .filter_map(|(_, result)| Some(value_of(result.as_ref().ok()?)))
                        .collect(),
                )
            })
            .collect();
        let mut line = format!("{:<8}{label:<32}", "");
        for value in &values {
            let _ = write!(line, "{:>12}", figure(*value, *decimals));
        }
        if let [ours, theirs] = values.as_slice() {
            let _ = write!(line, "{:>16}", ratio(*ours, *theirs));
        }
        println!("{line}");
    }
    for (kind, result) in rounds {
        if let Err(error) = result {
            println!("{:<8}{}: ERROR: {error}", "", kind.name());
        }
    }
    let _ = std::io::stdout().flush();
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
    let ratio = a / b;
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "-".to_owned()
    }
}

/// The median of the values that are not NaN; NaN if there are none.
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| !value.is_nan());
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        count if count % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}
