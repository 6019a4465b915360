//! `mqtt-harness bench`: open-loop load against a broker, with end-to-end latency, exact loss
//! accounting, `--max` rate search, `--compare` of two brokers in alternation, and shards.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mqtt_broker::Config;
use mqtt_loadgen::figures::{verdicts, Figures};
use mqtt_loadgen::transport::TransportConfig;
use mqtt_loadgen::workload::{parse_duration, Arrivals, PayloadSize, Shape, Shard, Workload};
use mqtt_loadgen::{Progress, Target};
use mqtt_protocol::{ProtocolVersion, QoS};
use mqtt_reports::{Kind, Report, Verdict};
use mqtt_scenarios::live::ReferenceBroker;

use super::output;
use super::{reach, TlsArgs, EXIT_FAILED, EXIT_USAGE};

/// Loads a broker on a schedule and measures throughput, end-to-end latency and loss. Open loop:
/// each publisher sends on its schedule whatever the broker does, and latency counts from the
/// intended send time, so a stalling broker shows up as latency. Exit 0 when the run completed and
/// met what its QoS promises, 1 on loss at QoS 1/2 (unless --allow-loss), a duplicate at QoS 2, a
/// rate that could not be offered or a connection that ended early, 2 on bad arguments or an
/// unreachable broker.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    mqtt-harness bench mqtt://127.0.0.1:1883 --publishers 10 --subscribers 10 --qos 1 --rate 10000\n  \
    mqtt-harness bench mqtt://127.0.0.1:1883 --publishers 1 --subscribers 50 --max --slo-p99 20ms\n  \
    mqtt-harness bench mqtt://127.0.0.1:1883 --compare mqtt://127.0.0.1:1884 --rate 5000\n  \
    mqtt-harness bench mqtt://broker:1883 --rate 100000 --publishers 100 --subscribers 100 --shard 0/4 --json s0.json")]
pub struct Args {
    /// The broker, e.g. mqtt://127.0.0.1:1883 (credentials as mqtt://user:password@host:port).
    /// Without one, the reference broker is started in this process and loaded.
    #[arg(value_name = "URL")]
    pub broker: Option<String>,
    /// What to run: messages (publishers to subscribers, the default), connect-storm (open
    /// --connections at --rate per second and close them), idle (open --connections and hold them
    /// for --hold), resume (--subscribers persistent sessions get a --backlog each while offline,
    /// then all reconnect at once), churn (--connections subscribe and unsubscribe, --rate pairs
    /// per second).
    #[arg(long, default_value = "messages", value_name = "WORKLOAD")]
    pub workload: WorkloadKind,
    /// Publishing connections.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub publishers: usize,
    /// Subscribing connections.
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub subscribers: usize,
    /// Topic groups: publisher i and subscriber j use group i mod T and j mod T [default: the
    /// smaller of publishers and subscribers, so 1→N is fan-out, N→1 fan-in, N→N pairs].
    #[arg(long, value_name = "T")]
    pub topics: Option<usize>,
    /// How subscribers listen to their group: topic (the exact topic), wildcard (a filter with +
    /// matching it), shared (members of one $share group per topic; 5.0).
    #[arg(long, default_value = "topic", value_name = "SHAPE")]
    pub shape: Shape,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Total messages per second across all publishers (and all shards) [default: 1000]; for
    /// connect-storm, connects per second [default: as fast as --concurrency allows]; for churn,
    /// subscribe-unsubscribe pairs per second [default: 100].
    #[arg(long, value_name = "PER_S")]
    pub rate: Option<f64>,
    /// connect-storm, idle, churn: how many connections.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub connections: usize,
    /// Connects in progress at once (connect-storm, idle, resume).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub concurrency: usize,
    /// idle: how long the connections are held once all are open.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub hold: Duration,
    /// Keep alive of connect-storm and idle connections, seconds (0: none).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub keep_alive: u16,
    /// resume: messages published to each offline subscriber.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub backlog: usize,
    /// Payload bytes: a number, or MIN..MAX for sizes uniform over the range (at least 24: the
    /// payload carries its publisher, sequence number and send time).
    #[arg(short = 's', long, default_value = "64", value_name = "BYTES")]
    pub payload_bytes: PayloadSize,
    /// The measured window (30s, 2m, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Sent and delivered before the window, not measured.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,
    /// Publish with the retain flag.
    #[arg(long)]
    pub retain: bool,
    /// MQTT version: 5.0 or 3.1.1.
    #[arg(long, default_value = "5.0", value_name = "VERSION", value_parser = parse_version)]
    pub protocol: ProtocolVersion,
    /// When messages are due: even (evenly spaced) or poisson (exponential gaps, from --seed).
    #[arg(long, default_value = "even", value_name = "ARRIVALS")]
    pub arrivals: Arrivals,
    /// Seeds Poisson arrivals and payload sizes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Client ids are PREFIX-RUN-pN and PREFIX-RUN-sN.
    #[arg(long, default_value = "mqtt-harness-bench", value_name = "PREFIX")]
    pub client_id_prefix: String,
    /// Topics are PREFIX/RUN/GROUP/m.
    #[arg(long, default_value = "mqtt-harness/bench", value_name = "PREFIX")]
    pub topic_prefix: String,
    /// QoS 1/2 messages a publisher may have unacknowledged (the broker's Receive Maximum also
    /// bounds it).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub inflight: u16,
    /// User name (or give it in the URL).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (or give it in the URL, or in MQTT_HARNESS_PASSWORD, which keeps it out of the
    /// process list).
    #[arg(
        short = 'P',
        long = "pw",
        visible_alias = "password",
        value_name = "PASSWORD",
        env = "MQTT_HARNESS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Run shard K (from 0) of N: the topic groups numbered K mod N, publishers and subscribers
    /// together. Merge the shards' --json files with `mqtt-harness report merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Start the schedule at this wall-clock time, in seconds since the Unix epoch (`date +%s`),
    /// after connecting: shards started apart by a scheduler then measure the same window. A
    /// shard that is ready only after the time plus its warm-up refuses to run (exit 1).
    #[arg(long, value_name = "EPOCH_SECONDS")]
    pub start_at: Option<u64>,
    /// Do not fail the run on loss at QoS 1/2 (it is still reported).
    #[arg(long)]
    pub allow_loss: bool,
    /// Search for the highest rate that holds --slo-p99 with no loss, and print it.
    #[arg(long, conflicts_with = "compare")]
    pub max: bool,
    /// The latency --max must hold at p99.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, value_name = "DURATION")]
    pub slo_p99: Duration,
    /// Run the same workload against this second broker too, in alternation (A B A B), and print
    /// the ratio of each figure.
    #[arg(long, value_name = "URL_B")]
    pub compare: Option<String>,
    /// Rounds of --compare (each runs both brokers once).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Write report.json, junit.xml, report.html and report.md to DIR.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Write the result (report.json) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Generator threads, each running whole topic groups (publishers and subscribers together).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Write the latency histograms, one per second, as an HDR interval log to FILE.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
}

/// `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    Messages,
    ConnectStorm,
    Idle,
    Resume,
    Churn,
}

impl WorkloadKind {
    fn name(self) -> &'static str {
        match self {
            WorkloadKind::Messages => "messages",
            WorkloadKind::ConnectStorm => "connect-storm",
            WorkloadKind::Idle => "idle",
            WorkloadKind::Resume => "resume",
            WorkloadKind::Churn => "churn",
        }
    }
}

fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text {
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        "3.1.1" | "4" => Ok(ProtocolVersion::V3_1_1),
        other => Err(format!("`{other}`: use 5.0 or 3.1.1")),
    }
}

fn qos_of(value: u8) -> QoS {
    match value {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl Args {
    fn workload_of(&self, rate: f64) -> Workload {
        Workload {
            publishers: self.publishers,
            subscribers: self.subscribers,
            topics: self
                .topics
                .unwrap_or_else(|| Workload::default_topics(self.publishers, self.subscribers)),
            shape: self.shape,
            qos: qos_of(self.qos),
            rate,
            payload: self.payload_bytes,
            retain: self.retain,
            version: self.protocol,
            arrivals: self.arrivals,
            seed: self.seed,
            warmup: self.warmup,
            duration: self.duration,
            shard: self.shard.unwrap_or(Shard::WHOLE),
            client_id_prefix: self.client_id_prefix.clone(),
            topic_prefix: self.topic_prefix.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            inflight: self.inflight,
            start_at: self
                .start_at
                .map(|seconds| std::time::UNIX_EPOCH + Duration::from_secs(seconds)),
        }
    }
}

/// A broker being loaded: one given by URL, or the reference broker in this process.
struct Loaded {
    target: Target,
    _reference: Option<ReferenceBroker>,
}

fn loaded(text: Option<&str>, args: &Args) -> Result<(Loaded, Option<String>, Option<String>), String> {
    match text {
        None => {
            let broker = ReferenceBroker::start(Config::default())
                .map_err(|error| format!("cannot start the reference broker: {error}"))?;
            let target = Target::tcp(broker.address(), "reference broker (in process)");
            Ok((
                Loaded {
                    target,
                    _reference: Some(broker),
                },
                args.username.clone(),
                args.password.clone(),
            ))
        }
        Some(text) => {
            let (address, url, tls) = reach(text, &args.tls)?;
            let transport = TransportConfig::new(&url, &tls)?;
            let username = args.username.clone().or(url.username);
            let password = args.password.clone().or(url.password);
            Ok((
                Loaded {
                    target: Target {
                        address,
                        url: text.to_owned(),
                        transport,
                    },
                    _reference: None,
                },
                username,
                password,
            ))
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> ExitCode {
    let rate = args.rate.unwrap_or(1000.0);
    let mut workload = args.workload_of(rate);
    if let Err(error) = workload.validate() {
        eprintln!("bench: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.broker.is_none() {
        // The reference broker runs in this process: its end of every connection counts too.
        let connections = match args.workload {
            WorkloadKind::Messages | WorkloadKind::Resume => args.publishers + args.subscribers,
            WorkloadKind::ConnectStorm | WorkloadKind::Idle | WorkloadKind::Churn => args.connections,
        } as u64;
        if let Err(error) = mqtt_loadgen::system::ensure_file_descriptors(2 * connections) {
            eprintln!("bench: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let (a, username, password) = match loaded(args.broker.as_deref(), &args) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    workload.username = username;
    workload.password = password;
    if args.workload != WorkloadKind::Messages {
        return other_workload(&args, &workload, &a.target).await;
    }
    if args.max {
        return search_max(&args, &workload, &a.target).await;
    }
    if let Some(url_b) = &args.compare {
        let (b, username, password) = match loaded(Some(url_b), &args) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("--compare: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let workload_b = Workload {
            username: username.or(workload.username.clone()),
            password: password.or(workload.password.clone()),
            ..workload.clone()
        };
        return compare(&args, &workload, &a.target, &workload_b, &b.target).await;
    }
    print_plan(&workload, &a.target);
    let started = output::new_report(Kind::Bench, &a.target.url);
    let figures = match one_run(&workload, &a.target, usize::from(args.threads), true).await {
        Ok(figures) => figures,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::from(exit_code_of(&error));
        }
    };
    print_figures(&figures);
    let report = report_of(&args, &workload, started, figures);
    let failed = report.cases.iter().any(|case| case.verdict == Verdict::Fail);
    print_verdicts(&report);
    if let Some(path) = &args.hdr_log {
        match Figures::from_report(&report).and_then(|figures| mqtt_loadgen::figures::interval_log(&figures)) {
            Ok(text) => {
                if let Err(error) = output::write_file(path, &text) {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_FAILED);
                }
                eprintln!("wrote {}", path.display());
            }
            Err(error) => {
                eprintln!("cannot write the HDR log: {error}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    output::finish(&report, args.report_dir.as_deref(), args.json.as_deref(), failed, &[])
}

/// One run, with a live progress line on a terminal.
async fn one_run(workload: &Workload, target: &Target, threads: usize, show_progress: bool) -> Result<Figures, String> {
    let terminal = show_progress && std::io::stderr().is_terminal();
    let mut on_progress = |progress: &Progress| {
        if terminal {
            eprint!(
                "\r\x1b[2K{:>10} {:>5.1}/{:.0} s  sent {:>9.0}/s  received {:>9.0}/s  p99 {:>7} µs  not offered {}  errors {}",
                progress.phase.name(),
                progress.elapsed.as_secs_f64(),
                progress.total.as_secs_f64(),
                progress.sent_per_s,
                progress.received_per_s,
                progress.p99_us,
                progress.not_offered,
                progress.errors
            );
        }
    };
    let result = mqtt_loadgen::run(workload, target, threads, &mut on_progress).await;
    if terminal {
        eprint!("\r\x1b[2K");
    }
    result
}

fn print_plan(workload: &Workload, target: &Target) {
    println!(
        "bench: {} → {} publishers, {} subscribers, {} topic groups ({}), QoS {}, {:.0} msgs/s, {} B payloads, {} + {} warm-up{}",
        target.url,
        workload.publishers,
        workload.subscribers,
        workload.topics,
        workload.shape.name(),
        workload.qos as u8,
        workload.rate,
        workload.payload,
        mqtt_loadgen::workload::format_duration(workload.duration),
        mqtt_loadgen::workload::format_duration(workload.warmup),
        if workload.shard.count > 1 {
            format!(", shard {}", workload.shard)
        } else {
            String::new()
        }
    );
}

/// The final table.
fn print_figures(figures: &Figures) {
    let t = &figures.throughput;
    let rows: Vec<(&str, String)> = vec![
        ("requested", format!("{:.0} msgs/s", t.requested_per_s)),
        ("sent", format!("{:.0} msgs/s", t.sent_per_s)),
        ("received", format!("{:.0} msgs/s", t.received_per_s)),
        (
            "latency µs",
            percentiles_line(&figures.latency_us),
        ),
        ("ack latency µs", percentiles_line(&figures.ack_latency_us)),
        ("connect µs", percentiles_line(&figures.connect_latency_us)),
        ("schedule lag µs", percentiles_line(&figures.schedule_lag_us)),
        (
            "deliveries",
            format!(
                "{} owed, {} received, {} lost, {} duplicated, {} reordered",
                figures.expected, figures.received, figures.lost, figures.duplicated, figures.reordered
            ),
        ),
        (
            "sent",
            format!(
                "{} sent, {} not offered, {} refused, {} unacknowledged",
                figures.sent, figures.not_offered, figures.refused, figures.unacknowledged
            ),
        ),
        (
            "generator",
            format!(
                "{:.2} CPU s, {:.2} µs CPU per delivered message ({:.2} µs in its own code, the rest in the kernel), {:.0}% of {} cores, {} MiB",
                figures.generator.cpu_seconds,
                figures.generator.cpu_us_per_message,
                figures.generator.user_cpu_us_per_message,
                figures.generator.cpu_share * 100.0,
                figures.machine.cores,
                figures.generator.rss_kib / 1024
            ),
        ),
    ];
    for (label, value) in rows {
        println!("  {label:<16} {value}");
    }
    for issue in figures.stream_issues.iter().take(5) {
        println!(
            "  stream           publisher {} → subscriber {}{}: {} lost, {} duplicated, {} reordered",
            issue.publisher,
            issue.subscriber,
            if issue.shared { " (shared group)" } else { "" },
            issue.lost,
            issue.duplicated,
            issue.reordered
        );
    }
    for error in figures.errors.iter().take(5) {
        println!("  error: {error}");
    }
    for warning in &figures.warnings {
        println!("  warning: {warning}");
    }
}

fn percentiles_line(p: &mqtt_loadgen::figures::Percentiles) -> String {
    if p.count == 0 {
        return "none".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        p.p50, p.p90, p.p99, p.p999, p.max, p.count
    )
}

fn print_verdicts(report: &Report) {
    let colour = output::colour();
    for case in &report.cases {
        println!(
            "{} {}  {}",
            output::verdict_label(case.verdict, colour),
            case.id,
            case.evidence.message
        );
    }
}

/// The report of a run that started when `report` was made (`output::new_report` just before it).
fn report_of(args: &Args, workload: &Workload, mut report: Report, figures: Figures) -> Report {
    report.parameters = mqtt_loadgen::run::parameters(workload);
    report
        .parameters
        .insert("allow_loss".into(), serde_json::json!(args.allow_loss));
    let version = if workload.version.is_v5() { "5.0" } else { "3.1.1" };
    for case in verdicts(&figures, workload.qos, args.allow_loss, version) {
        report.push(case);
    }
    figures.into_report(&mut report);
    report
}

/// `--max`: the highest rate holding the p99 objective with no loss.
async fn search_max(args: &Args, workload: &Workload, target: &Target) -> ExitCode {
    let objective = args.slo_p99;
    let started = output::new_report(Kind::Bench, &target.url);
    println!(
        "bench --max: {} → the highest rate with p99 ≤ {} and no loss ({} per step)",
        target.url,
        mqtt_loadgen::workload::format_duration(objective),
        mqtt_loadgen::workload::format_duration(workload.duration)
    );
    let mut step = |rate: f64| {
        let workload = Workload {
            rate,
            ..workload.clone()
        };
        async move {
            let figures = one_run(&workload, target, usize::from(args.threads), true).await?;
            let holds = mqtt_loadgen::search::holds(&figures, rate, objective);
            println!(
                "  {rate:>10.0} msgs/s: received {:>10.0}/s, p99 {} µs, lost {}, not offered {} → {}",
                figures.throughput.received_per_s,
                figures.latency_us.p99,
                figures.lost,
                figures.not_offered,
                if holds { "holds" } else { "does not hold" }
            );
            Ok::<(bool, Figures), String>((holds, figures))
        }
    };
    match mqtt_loadgen::search::highest_rate(args.rate.unwrap_or(1000.0), &mut step).await {
        Ok(Some((rate, figures))) => {
            println!(
                "max: {rate:.0} msgs/s holds p99 ≤ {} µs with no loss",
                objective.as_micros()
            );
            let workload = Workload {
                rate,
                ..workload.clone()
            };
            let mut report = report_of(args, &workload, started, figures);
            report.parameters.insert("max_rate".into(), serde_json::json!(rate));
            output::finish(&report, args.report_dir.as_deref(), args.json.as_deref(), false, &[])
        }
        Ok(None) => {
            println!(
                "max: no rate tried holds p99 ≤ {} µs with no loss",
                objective.as_micros()
            );
            ExitCode::from(EXIT_FAILED)
        }
        Err(error) => {
            eprintln!("bench --max: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `--compare`: A B A B ..., then each figure's median per broker and their ratio.
async fn compare(args: &Args, workload_a: &Workload, a: &Target, workload_b: &Workload, b: &Target) -> ExitCode {
    println!(
        "bench --compare: {} (A) against {} (B), {} rounds of A then B (B then A every other round)",
        a.url, b.url, args.rounds
    );
    let started = output::new_report(Kind::Bench, &a.url);
    let mut runs_a = Vec::new();
    let mut runs_b = Vec::new();
    for round in 0..args.rounds {
        let order: [(bool, &Workload, &Target); 2] = if round % 2 == 0 {
            [(true, workload_a, a), (false, workload_b, b)]
        } else {
            [(false, workload_b, b), (true, workload_a, a)]
        };
        for (is_a, workload, target) in order {
            match one_run(workload, target, usize::from(args.threads), true).await {
                Ok(figures) => {
                    println!(
                        "  round {} {}: received {:.0}/s, p99 {} µs, lost {}",
                        round + 1,
                        if is_a { "A" } else { "B" },
                        figures.throughput.received_per_s,
                        figures.latency_us.p99,
                        figures.lost
                    );
                    if is_a {
                        runs_a.push(figures);
                    } else {
                        runs_b.push(figures);
                    }
                }
                Err(error) => {
                    eprintln!("bench --compare: {} failed: {error}", target.url);
                    return ExitCode::from(EXIT_FAILED);
                }
            }
        }
    }
    let comparison = mqtt_loadgen::compare::Comparison::of(&runs_a, &runs_b);
    println!("{:<28} {:>14} {:>14} {:>8}", "figure (median)", "A", "B", "A/B");
    for row in &comparison.rows {
        println!(
            "{:<28} {:>14.1} {:>14.1} {:>8}",
            row.figure,
            row.a,
            row.b,
            row.ratio_text()
        );
    }
    // The report holds A's last run, whole, and the comparison of all of them.
    let Some(last_a) = runs_a.last().cloned() else {
        return ExitCode::from(EXIT_FAILED);
    };
    let mut report = report_of(args, workload_a, started, last_a);
    report.extra.insert("compare".into(), comparison.to_json(&b.url));
    let failed = report.cases.iter().any(|case| case.verdict == Verdict::Fail)
        || runs_b.iter().any(|figures| {
            verdicts(figures, workload_b.qos, args.allow_loss, "")
                .iter()
                .any(|case| case.verdict == Verdict::Fail)
        });
    output::finish(&report, args.report_dir.as_deref(), args.json.as_deref(), failed, &[])
}

/// The connection and session workloads.
async fn other_workload(args: &Args, workload: &Workload, target: &Target) -> ExitCode {
    use mqtt_loadgen::connections::{self, ConnectionWorkload};
    use mqtt_loadgen::sessions::{self, ChurnWorkload, Clients, ResumeWorkload};
    let terminal = std::io::stderr().is_terminal();
    let mut report = output::new_report(Kind::Bench, &target.url);
    report.parameters = mqtt_loadgen::run::parameters(workload);
    let name = args.workload.name();
    report.parameters.insert("workload".into(), serde_json::json!(name));
    let version = if workload.version.is_v5() { "5.0" } else { "3.1.1" };
    let case = |id: &str, title: &str, passed: bool, message: String| {
        let mut case = mqtt_reports::Case::new(id, version, if passed { Verdict::Pass } else { Verdict::Fail });
        case.title = title.to_owned();
        case.evidence.message = message;
        case
    };
    let clients = Clients {
        address: target.address,
        version: workload.version,
        client_id_prefix: workload.client_id_prefix.clone(),
        topic_prefix: workload.topic_prefix.clone(),
        username: workload.username.clone(),
        password: workload.password.clone(),
        concurrency: args.concurrency,
    };
    let (section, value, cases): (&str, Result<serde_json::Value, String>, Vec<mqtt_reports::Case>) =
        match args.workload {
            WorkloadKind::ConnectStorm | WorkloadKind::Idle => {
                let idle = args.workload == WorkloadKind::Idle;
                let connection_workload = ConnectionWorkload {
                    count: args.connections,
                    rate: if idle { None } else { args.rate },
                    concurrency: args.concurrency,
                    hold: if idle { args.hold } else { Duration::ZERO },
                    keep_alive_s: args.keep_alive,
                    version: workload.version,
                    client_id_prefix: workload.client_id_prefix.clone(),
                    username: workload.username.clone(),
                    password: workload.password.clone(),
                };
                println!(
                    "bench {name}: {} → {} connections{}",
                    target.url,
                    args.connections,
                    if idle {
                        format!(", held for {}", mqtt_loadgen::workload::format_duration(args.hold))
                    } else {
                        args.rate.map_or_else(String::new, |rate| format!(" at {rate:.0}/s"))
                    }
                );
                let mut progress = |attempted: u64, connected: u64| {
                    if terminal {
                        eprint!("\r\x1b[2K  attempted {attempted}, connected {connected}");
                    }
                };
                let result = connections::run(&connection_workload, target, &mut progress).await;
                if terminal {
                    eprint!("\r\x1b[2K");
                }
                match result {
                    Ok(figures) => {
                        let failed: u64 = figures.failed.values().sum();
                        let dropped: u64 = figures.dropped.values().sum();
                        println!(
                            "  connected        {} of {} ({:.0}/s)",
                            figures.connected, figures.attempted, figures.connect_per_s
                        );
                        println!("  connect µs       {}", percentiles_line(&figures.connect_latency_us));
                        for (reason, count) in &figures.failed {
                            println!("  failed           {count} × {reason}");
                        }
                        if idle {
                            println!(
                                "  held             {:.1} s, {} still connected, {dropped} dropped",
                                figures.held_s, figures.still_connected
                            );
                        }
                        println!(
                            "  generator RSS    {} MiB with the connections open ({} MiB before)",
                            figures.generator_rss_kib_open / 1024,
                            figures.generator_rss_kib_before / 1024
                        );
                        let mut cases = vec![case(
                            "connections/all-connected",
                            "every connection was accepted",
                            failed == 0,
                            format!(
                                "{} of {} connected; {failed} failed",
                                figures.connected, figures.attempted
                            ),
                        )];
                        if idle {
                            cases.push(case(
                                "connections/held",
                                "every connection lasted the hold",
                                dropped == 0,
                                format!("{dropped} of {} were closed during the hold", figures.connected),
                            ));
                        }
                        (
                            "connections",
                            serde_json::to_value(&figures).map_err(|error| error.to_string()),
                            cases,
                        )
                    }
                    Err(error) => ("connections", Err(error), Vec::new()),
                }
            }
            WorkloadKind::Resume => {
                let resume = ResumeWorkload {
                    clients,
                    subscribers: args.subscribers,
                    backlog: args.backlog,
                    qos: workload.qos,
                    payload_bytes: workload.payload.min,
                };
                println!(
                "bench resume: {} → {} persistent sessions, {} messages each while offline, QoS {}, then all reconnect",
                target.url, args.subscribers, args.backlog, workload.qos as u8
            );
                match sessions::resume_storm(&resume).await {
                    Ok(figures) => {
                        println!(
                            "  published        {} in {:.2} s while offline",
                            figures.published, figures.publish_s
                        );
                        println!("  resume µs        {}", percentiles_line(&figures.resume_latency_us));
                        println!(
                            "  sessions found   {} of {}",
                            figures.sessions_present, figures.subscribers
                        );
                        println!(
                            "  backlog          {} of {} delivered in {:.2} s ({:.0}/s), {} lost, {} duplicated",
                            figures.received,
                            figures.expected,
                            figures.drain_s,
                            figures.delivered_per_s,
                            figures.lost,
                            figures.duplicated
                        );
                        for error in figures.errors.iter().take(5) {
                            println!("  error: {error}");
                        }
                        let cases = vec![
                            case(
                                "sessions/present",
                                "every session was there when its client came back",
                                figures.sessions_present == figures.subscribers && figures.errors.is_empty(),
                                format!(
                                    "{} of {} reconnects found their session",
                                    figures.sessions_present, figures.subscribers
                                ),
                            ),
                            case(
                                "delivery/loss",
                                "every backlog message arrived",
                                figures.lost == 0 || args.allow_loss,
                                format!("{} of {} backlog messages were lost", figures.lost, figures.expected),
                            ),
                            case(
                                "delivery/duplicates",
                                "no duplicate where the QoS forbids it",
                                figures.duplicated == 0 || workload.qos != QoS::ExactlyOnce,
                                format!("{} backlog messages arrived more than once", figures.duplicated),
                            ),
                        ];
                        (
                            "resume",
                            serde_json::to_value(&figures).map_err(|error| error.to_string()),
                            cases,
                        )
                    }
                    Err(error) => ("resume", Err(error), Vec::new()),
                }
            }
            WorkloadKind::Churn => {
                let churn = ChurnWorkload {
                    clients,
                    connections: args.connections,
                    rate: args.rate.unwrap_or(100.0),
                    duration: args.duration,
                    qos: workload.qos,
                };
                println!(
                    "bench churn: {} → {} connections subscribe and unsubscribe, {:.0} pairs/s for {}",
                    target.url,
                    churn.connections,
                    churn.rate,
                    mqtt_loadgen::workload::format_duration(churn.duration)
                );
                match sessions::churn(&churn).await {
                    Ok(figures) => {
                        println!(
                            "  pairs            {} ({:.0}/s of {:.0}/s)",
                            figures.pairs, figures.achieved_per_s, figures.requested_per_s
                        );
                        println!("  SUBACK µs        {}", percentiles_line(&figures.subscribe_latency_us));
                        println!(
                            "  UNSUBACK µs      {}",
                            percentiles_line(&figures.unsubscribe_latency_us)
                        );
                        for (reason, count) in &figures.failures {
                            println!("  failed           {count} × {reason}");
                        }
                        let failures: u64 = figures.failures.values().sum();
                        let cases = vec![
                            case(
                                "churn/accepted",
                                "every subscribe and unsubscribe was granted",
                                failures == 0,
                                format!("{failures} requests failed or were refused"),
                            ),
                            case(
                                "rate/offered",
                                "the requested rate was kept",
                                figures.achieved_per_s
                                    >= figures.requested_per_s * mqtt_loadgen::figures::RATE_OFFERED_SHARE,
                                format!(
                                    "{:.0} of {:.0} pairs/s",
                                    figures.achieved_per_s, figures.requested_per_s
                                ),
                            ),
                        ];
                        (
                            "churn",
                            serde_json::to_value(&figures).map_err(|error| error.to_string()),
                            cases,
                        )
                    }
                    Err(error) => ("churn", Err(error), Vec::new()),
                }
            }
            WorkloadKind::Messages => unreachable!("handled by the caller"),
        };
    let value = match value {
        Ok(value) => value,
        Err(error) => {
            eprintln!("bench {name}: {error}");
            return ExitCode::from(exit_code_of(&error));
        }
    };
    report.extra.insert(section.into(), value);
    for case in cases {
        report.push(case);
    }
    print_verdicts(&report);
    let failed = report.cases.iter().any(|case| case.verdict == Verdict::Fail);
    output::finish(&report, args.report_dir.as_deref(), args.json.as_deref(), failed, &[])
}

/// 2 when the broker could not be reached at all (refused, or its TLS or WebSocket handshake
/// failed: bad input, nothing measured), 1 for a run that failed.
fn exit_code_of(error: &str) -> u8 {
    let unreachable = error.starts_with("connection refused")
        || error.contains(": TLS handshake: ")
        || error.contains(": WebSocket handshake with ");
    if unreachable {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}
