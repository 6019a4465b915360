//! Connection workloads: a connect storm (connections opened at a rate, up to a count, with the
//! connect latency of each and the failures by reason) and idle connections held for a while
//! (what a broker's memory and keep-alive handling do with many quiet clients).
//!
//! Each connection is a small tokio task of its own around the client's sans-IO core ([`Link`]),
//! with buffers that start small: ten thousand held connections must cost the generator little
//! memory. A connection whose keep alive falls due sends its PINGREQ like any client.
//!
//! One source address can reach one broker address on about 28,000 ephemeral ports. Past that,
//! connections to a loopback broker are spread over source addresses in 127.0.0.0/8 (127.0.0.2,
//! 127.0.0.3, ...), each good for as many again; a broker elsewhere needs shards on several
//! machines instead.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mqtt_client::core::Event;
use mqtt_client::options::Scheme;
use mqtt_client::transport::BoxedStream;
use mqtt_client::ConnectOptions;
use mqtt_protocol::{Properties, ProtocolVersion, ReasonCode};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, timeout_at};

use crate::figures::{buckets, Percentiles};
use crate::link::Link;
use crate::measure;
use crate::run::Target;
use crate::system::{self, Machine, Process};
use crate::transport::TransportConfig;

/// Connections one source address is used for before the next one is taken.
pub const CONNECTIONS_PER_SOURCE_ADDRESS: usize = 28_000;

/// How long one connect (TCP and CONNACK) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a held connection reads at a time: it only ever gets a CONNACK and PINGRESPs.
const READ_RESERVE: usize = 256;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionWorkload {
    pub count: usize,
    /// Connects per second; `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Connects in progress at once.
    pub concurrency: usize,
    /// How long the connections are held once all are open (0 for a storm alone).
    pub hold: Duration,
    pub keep_alive_s: u16,
    pub version: ProtocolVersion,
    pub client_id_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// What a connection workload measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectionFigures {
    pub attempted: u64,
    pub connected: u64,
    /// Failures by reason (`refused 0x89 Server busy`, `timed out`, `connection refused`, ...).
    pub failed: BTreeMap<String, u64>,
    /// Connects per second achieved, from the first attempt to the last CONNACK.
    pub connect_per_s: f64,
    pub connect_latency_us: Percentiles,
    pub connect_latency_histogram: Vec<(u64, u64)>,
    pub held_s: f64,
    /// Connections still open when the hold ended.
    pub still_connected: u64,
    /// Connections the broker closed during the hold, by reason.
    pub dropped: BTreeMap<String, u64>,
    pub generator_rss_kib_before: u64,
    pub generator_rss_kib_open: u64,
    pub machine: Machine,
}

/// A held connection's end, as its task reports it.
type Ended = Result<(), String>;

/// Runs `workload` against `address`: opens the connections, holds them, closes them.
pub async fn run(
    workload: &ConnectionWorkload,
    target: &Target,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<ConnectionFigures, String> {
    let address = target.address;
    if workload.count == 0 {
        return Err("--connections must be at least 1".into());
    }
    if workload.count > CONNECTIONS_PER_SOURCE_ADDRESS && !address.ip().is_loopback() {
        return Err(format!(
            "{} connections to {address} need more than one source address ({CONNECTIONS_PER_SOURCE_ADDRESS} each): spread them over machines with --shard, or load a broker on this machine (127.0.0.1)",
            workload.count
        ));
    }
    system::ensure_file_descriptors(workload.count as u64)?;
    let generator_rss_kib_before = Process::Myself.rss_kib().unwrap_or(0);
    let (run, _) = crate::run::run_id();
    let semaphore = Arc::new(Semaphore::new(workload.concurrency.max(1)));
    let (stop, stopped) = watch::channel(false);
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks: JoinSet<(Result<Duration, String>, Option<Ended>)> = JoinSet::new();
    let started = Instant::now();
    let gap = workload.rate.map(|rate| Duration::from_secs_f64(1.0 / rate.max(1e-3)));
    let mut last_progress = Instant::now();
    for index in 0..workload.count {
        if let Some(gap) = gap {
            sleep_until(tokio::time::Instant::from_std(started + gap.mul_f64(index as f64))).await;
        }
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the connect limiter closed".to_owned())?;
        let source = source_address(address, index);
        let options = options(workload, format!("{}-{run}-c{index}", workload.client_id_prefix));
        let stopped = stopped.clone();
        let (connected_count, failed_count) = (connected.clone(), failed.clone());
        let transport = target.transport.clone();
        tasks.spawn(async move {
            let attempt = Instant::now();
            let opened = open(address, source, &transport, options).await;
            drop(permit);
            match opened {
                Ok((stream, link)) => {
                    connected_count.fetch_add(1, Ordering::Relaxed);
                    let latency = attempt.elapsed();
                    let ended = hold(stream, link, stopped).await;
                    (Ok(latency), Some(ended))
                }
                Err(error) => {
                    failed_count.fetch_add(1, Ordering::Relaxed);
                    (Err(error), None)
                }
            }
        });
        if last_progress.elapsed() >= Duration::from_secs(1) {
            on_progress(index as u64 + 1, connected.load(Ordering::Relaxed));
            last_progress = Instant::now();
        }
    }
    // Wait until every attempt has connected or failed.
    let all_attempted = Instant::now();
    let settled = || connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    while settled() < workload.count as u64 {
        if all_attempted.elapsed() > CONNECT_TIMEOUT * 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            on_progress(workload.count as u64, connected.load(Ordering::Relaxed));
            last_progress = Instant::now();
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let generator_rss_kib_open = Process::Myself.rss_kib().unwrap_or(0);
    let hold_started = Instant::now();
    tokio::time::sleep(workload.hold).await;
    let held_s = hold_started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let mut latency: Histogram<u64> = measure::histogram();
    let mut figures = ConnectionFigures {
        attempted: workload.count as u64,
        generator_rss_kib_before,
        generator_rss_kib_open,
        held_s,
        machine: Machine::describe(),
        ..ConnectionFigures::default()
    };
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while let Some(joined) = timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| "the connections did not close in time".to_owned())?
    {
        let (opened, ended) = joined.map_err(|error| format!("a connection task failed: {error}"))?;
        match opened {
            Ok(connect_latency) => {
                figures.connected += 1;
                measure::record(&mut latency, connect_latency);
            }
            Err(reason) => *figures.failed.entry(reason).or_default() += 1,
        }
        match ended {
            Some(Ok(())) => figures.still_connected += 1,
            Some(Err(reason)) => *figures.dropped.entry(reason).or_default() += 1,
            None => {}
        }
    }
    figures.connect_per_s = figures.connected as f64 / connect_seconds.max(1e-3);
    figures.connect_latency_us = Percentiles::of(&latency);
    figures.connect_latency_histogram = buckets(&latency);
    Ok(figures)
}

/// The source address of connection `index`: the system's choice, or past the first 28,000 to a
/// loopback broker, 127.0.0.2 and up.
fn source_address(broker: SocketAddr, index: usize) -> Option<SocketAddr> {
    let block = index / CONNECTIONS_PER_SOURCE_ADDRESS;
    if block == 0 || !broker.ip().is_loopback() {
        return None;
    }
    let host = (block + 1) as u32; // 127.0.0.2 for the second block
    let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + host);
    Some(SocketAddr::new(IpAddr::V4(address), 0))
}

fn options(workload: &ConnectionWorkload, client_id: String) -> ConnectOptions {
    let mut options = ConnectOptions::new(client_id);
    options.version = workload.version;
    options.keep_alive_s = workload.keep_alive_s;
    options.connect_timeout = CONNECT_TIMEOUT;
    options.user_name = workload.username.clone();
    options.password = workload.password.clone().map(|password| password.into_bytes().into());
    options
}

/// TCP (from `source` if given), CONNECT, CONNACK; the error is the reason in a few words.
async fn open(
    address: SocketAddr,
    source: Option<SocketAddr>,
    transport: &TransportConfig,
    options: ConnectOptions,
) -> Result<(Conn, Link), String> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|error| format!("socket: {error}"))?;
    if let Some(source) = source {
        socket
            .bind(source)
            .map_err(|error| format!("binding {source}: {error}"))?;
    }
    let stream = match timeout_at(deadline, socket.connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err("connection refused".into())
        }
        Ok(Err(error)) => return Err(format!("TCP: {}", error.kind())),
        Err(_) => return Err("timed out (TCP)".into()),
    };
    let _ = stream.set_nodelay(true);
    let mut stream = match transport.scheme {
        Scheme::Mqtt => Conn::Plain(stream),
        _ => Conn::Layered(
            timeout_at(deadline, transport.open_async(stream))
                .await
                .map_err(|_| "timed out (handshake)".to_owned())??,
        ),
    };
    let mut link = Link::new(options);
    link.connect(tokio::time::Instant::now())?;
    timeout_at(deadline, stream.write_all(&link.output))
        .await
        .map_err(|_| "timed out (writing CONNECT)".to_owned())?
        .map_err(|error| format!("writing CONNECT: {}", error.kind()))?;
    link.output.clear();
    loop {
        match timeout_at(deadline, stream.read_into(&mut link.input)).await {
            Err(_) => return Err("timed out (no CONNACK)".into()),
            Ok(Ok(0)) => return Err("closed before CONNACK".into()),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("reading: {}", error.kind())),
        }
        let mut connected = false;
        let mut refused = None;
        let handled = link.receive(tokio::time::Instant::now(), |event| {
            if let Event::Connected { .. } = event {
                connected = true;
            }
        });
        if let Err(error) = handled {
            refused = Some(error);
        }
        if let Some(reason) = refused {
            return Err(reason);
        }
        if connected {
            return Ok((stream, link));
        }
    }
}

/// Keeps a connection open until `stop`, answering keep alive; `Err` with the reason if the
/// broker closed it first.
async fn hold(mut stream: Conn, mut link: Link, mut stop: watch::Receiver<bool>) -> Ended {
    let far = tokio::time::Instant::now() + Duration::from_secs(7 * 24 * 3600);
    loop {
        if !link.output.is_empty() {
            let written = timeout(CONNECT_TIMEOUT, stream.write_all(&link.output)).await;
            if !matches!(written, Ok(Ok(()))) {
                return Err("the broker stopped reading".into());
            }
            link.output.clear();
        }
        let deadline = link.core.poll_timeout().unwrap_or(far);
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = stream.read_into(&mut link.input) => match read {
                Ok(0) => return Err("closed by the broker".into()),
                Ok(_) => link.receive(tokio::time::Instant::now(), |_| {})?,
                Err(error) => return Err(format!("reading: {}", error.kind())),
            },
            () = sleep_until(deadline) => link.handle_timeout(tokio::time::Instant::now())?,
        }
    }
    link.core.disconnect(ReasonCode::SUCCESS, Properties::default());
    if link.transmit(tokio::time::Instant::now()).is_ok() {
        let _ = timeout(Duration::from_secs(2), stream.write_all(&link.output)).await;
    }
    Ok(())
}

/// A held connection's stream: plain TCP, which holds no buffer while idle (it waits for
/// readiness, then reads), or the layers of TLS and WebSocket, which hold their own.
enum Conn {
    Plain(TcpStream),
    Layered(BoxedStream),
}

impl Conn {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(stream) => stream.write_all(bytes).await,
            Conn::Layered(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    /// Waits for bytes and appends them to `buffer`; 0 at the end of the stream. Cancel safe.
    async fn read_into(&mut self, buffer: &mut bytes::BytesMut) -> std::io::Result<usize> {
        match self {
            Conn::Plain(stream) => loop {
                stream.readable().await?;
                buffer.reserve(READ_RESERVE);
                match stream.try_read_buf(buffer) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    read => return read,
                }
            },
            Conn::Layered(stream) => {
                buffer.reserve(READ_RESERVE);
                stream.read_buf(buffer).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_spread_over_loopback_past_the_first_block_only() {
        let loopback: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:1883".parse().unwrap();
        assert_eq!(source_address(loopback, 0), None);
        assert_eq!(source_address(loopback, CONNECTIONS_PER_SOURCE_ADDRESS - 1), None);
        assert_eq!(
            source_address(loopback, CONNECTIONS_PER_SOURCE_ADDRESS),
            Some("127.0.0.2:0".parse().unwrap())
        );
        assert_eq!(
            source_address(loopback, 3 * CONNECTIONS_PER_SOURCE_ADDRESS + 5),
            Some("127.0.0.4:0".parse().unwrap())
        );
        assert_eq!(source_address(remote, 100_000), None);
    }
}
