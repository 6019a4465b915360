//! Starts a real mosquitto on an ephemeral loopback port, for tests and benchmarks.
//!
//! Each [`Mosquitto`] gets a fresh temporary directory holding its configuration file and its log
//! (mosquitto logs to stderr, which goes to `mosquitto.log` there). The process is killed and the
//! directory removed when the [`Mosquitto`] is dropped, on panic too, so a broker never outlives
//! the test that started it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use mqtt_scenarios::live::mosquitto::{Mosquitto, MosquittoConfig};
//!
//! let broker = Mosquitto::start(MosquittoConfig::default()).await?;
//! println!("connect to {}", broker.url());
//! broker.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! Starting waits for the listener in real time (polling a TCP connect), so start brokers before
//! pausing tokio's clock, not after.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// Where Debian installs the broker; used when `mosquitto` is not on `PATH`.
pub const BINARY_PATH_DEBIAN: &str = "/usr/sbin/mosquitto";

/// How long [`Mosquitto::start`] waits for one attempt's listener to accept a TCP connection.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`Mosquitto::start`] checks whether the listener is up.
const STARTUP_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many ports [`Mosquitto::start`] tries before giving up (another process may take the
/// ephemeral port between picking it and mosquitto binding it).
pub const START_ATTEMPTS_MAX: u32 = 3;

/// How long [`Mosquitto::stop`] waits for the killed process to be reaped.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times `Drop` checks, 2 ms apart, that the killed process is gone (at most 1 s).
const DROP_REAP_CHECKS_MAX: u32 = 500;

/// The most log text quoted in an error message (its tail is kept).
const ERROR_LOG_CHARS_MAX: usize = 8 * 1024;

/// What mosquitto logs when it rejects its configuration ("Error found at FILE:LINE.").
const CONFIG_ERROR_MARKER: &str = "Error found at";

/// The message of the error returned when no mosquitto binary is found.
pub const NOT_INSTALLED_MESSAGE: &str = "mosquitto is not installed: run scripts/test, which installs it";

/// Makes temporary directory names unique within this process.
static DIRECTORY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What to put in mosquitto's configuration beyond the listener, anonymous access and no
/// persistence, which are always set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MosquittoConfig {
    /// `max_keepalive`: the longest keep alive the broker accepts. A 5.0 client asking for more
    /// (or for 0) is told this value as Server Keep Alive in CONNACK; mosquitto 2.0.11 lets 3.1.1
    /// clients keep a longer one. mosquitto 2.0 refuses to start with a value below 10.
    pub max_keepalive_s: Option<u16>,
    /// `max_inflight_messages`: QoS 1/2 messages in flight per client (sent to 5.0 clients as
    /// Receive Maximum).
    pub max_inflight_messages: Option<u16>,
    /// `max_queued_messages`: messages queued per client beyond those in flight.
    pub max_queued_messages: Option<u32>,
    /// Further configuration lines, written verbatim after the others (e.g. `"log_type all"`).
    pub extra_lines: Vec<String>,
}

impl MosquittoConfig {
    /// The configuration file's text for a listener on `port`.
    pub fn render(&self, port: u16) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "# written by mqtt-scenarios' mosquitto launcher");
        let _ = writeln!(text, "listener {port} 127.0.0.1");
        let _ = writeln!(text, "allow_anonymous true");
        let _ = writeln!(text, "persistence false");
        let _ = writeln!(text, "log_dest stderr");
        if let Some(value) = self.max_keepalive_s {
            let _ = writeln!(text, "max_keepalive {value}");
        }
        if let Some(value) = self.max_inflight_messages {
            let _ = writeln!(text, "max_inflight_messages {value}");
        }
        if let Some(value) = self.max_queued_messages {
            let _ = writeln!(text, "max_queued_messages {value}");
        }
        for line in &self.extra_lines {
            let _ = writeln!(text, "{line}");
        }
        text
    }
}

/// A running mosquitto on `127.0.0.1`, killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    /// `None` only after [`Mosquitto::stop`] took it.
    child: Option<Child>,
    pid: u32,
    port: u16,
    directory: PathBuf,
}

impl Mosquitto {
    /// Starts mosquitto with `config` on a free loopback port and waits until it accepts TCP
    /// connections. Tries up to [`START_ATTEMPTS_MAX`] ports (not when mosquitto rejects the
    /// configuration); the error quotes mosquitto's log of every attempt.
    pub async fn start(config: MosquittoConfig) -> io::Result<Mosquitto> {
        let binary = binary().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, NOT_INSTALLED_MESSAGE))?;
        let directory = create_directory()?;
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS_MAX {
            match start_once(&binary, &directory, &config).await {
                Ok((child, pid, port)) => {
                    return Ok(Mosquitto {
                        child: Some(child),
                        pid,
                        port,
                        directory,
                    });
                }
                Err(error) => {
                    tracing::debug!(attempt, %error, "mosquitto did not start");
                    // Another port will not fix a configuration mosquitto rejects.
                    let give_up = error.kind() == io::ErrorKind::InvalidInput;
                    failures.push(format!("attempt {attempt}: {error}"));
                    if give_up {
                        break;
                    }
                }
            }
        }
        // Nothing runs in the directory any more.
        let _ = fs::remove_dir_all(&directory);
        Err(io::Error::other(format!(
            "mosquitto ({}) did not start (attempts: {}):\n{}",
            binary.display(),
            failures.len(),
            failures.join("\n")
        )))
    }

    /// The TCP port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// `mqtt://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary directory holding `mosquitto.conf` and `mosquitto.log`; removed on drop.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Everything mosquitto has logged so far (its stderr and stdout), for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.directory)
    }

    /// Kills the process and waits (at most 5 s) until it is reaped, so its port is closed when
    /// this returns; then removes the temporary directory.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.start_kill() {
                tracing::debug!(%error, pid = self.pid, "killing mosquitto");
            }
            if timeout(STOP_TIMEOUT, child.wait()).await.is_err() {
                tracing::warn!(
                    pid = self.pid,
                    "mosquitto was not reaped within {STOP_TIMEOUT:?} of SIGKILL"
                );
            }
        }
        // Drop removes the directory.
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// The mosquitto binary: `mosquitto` on `PATH`, else Debian's `/usr/sbin/mosquitto`.
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|directory| directory.join("mosquitto"))
        .find(|candidate| candidate.is_file());
    on_path.or_else(|| Some(PathBuf::from(BINARY_PATH_DEBIAN)).filter(|candidate| candidate.is_file()))
}

/// The installed mosquitto's version, e.g. `"2.0.11"`, from the first line of `mosquitto -h`;
/// `None` if it is not installed or says something unexpected. Runs a short child process.
pub fn version() -> Option<String> {
    let output = std::process::Command::new(binary()?)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // mosquitto prints its usage to stdout and exits non-zero; accept either stream.
    let text = if output.stdout.is_empty() {
        String::from_utf8_lossy(&output.stderr).into_owned()
    } else {
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    parse_version(&text)
}

/// `"mosquitto version 2.0.11\n..."` → `"2.0.11"`.
fn parse_version(text: &str) -> Option<String> {
    let first_line = text.lines().next()?;
    let rest = first_line.trim().strip_prefix("mosquitto version")?;
    let version = rest.split_whitespace().next()?;
    Some(version.to_owned())
}

/// One attempt: pick a port, write the configuration, spawn, wait for the listener.
async fn start_once(binary: &Path, directory: &Path, config: &MosquittoConfig) -> io::Result<(Child, u32, u16)> {
    let port = free_port()?;
    let config_path = directory.join("mosquitto.conf");
    fs::write(&config_path, config.render(port))?;
    // The child writes its stderr straight into the file: no pipe to drain, and the log is
    // readable even after the process died. mosquitto opens nothing itself, which matters when it
    // runs as root and drops privileges to the `mosquitto` user.
    let log_path = directory.join("mosquitto.log");
    let log = fs::File::create(&log_path)?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| io::Error::new(error.kind(), format!("spawning {}: {error}", binary.display())))?;
    let pid = child.id().unwrap_or(0);
    let address = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = log_tail(directory);
            // mosquitto names the file and line of a configuration error.
            let kind = if log.contains(CONFIG_ERROR_MARKER) {
                io::ErrorKind::InvalidInput
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("mosquitto exited with {status} before listening on port {port}; its log:\n{log}"),
            ));
        }
        if let Ok(Ok(stream)) = timeout(STARTUP_POLL_INTERVAL, TcpStream::connect(address)).await {
            drop(stream);
            // The listener that answered is mosquitto's unless mosquitto failed to bind and
            // someone else took the port: then mosquitto exits at once.
            if child.try_wait()?.is_none() {
                return Ok((child, pid, port));
            }
            continue;
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "mosquitto did not accept connections on port {port} within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    log_tail(directory)
                ),
            ));
        }
        sleep(STARTUP_POLL_INTERVAL).await;
    }
}

/// A loopback port nobody listens on right now (the OS picks it; it may be taken again before
/// mosquitto binds it, which [`Mosquitto::start`] handles by retrying).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A fresh directory under the system's temporary directory.
fn create_directory() -> io::Result<PathBuf> {
    const TRIES_MAX: u32 = 1000;
    let base = std::env::temp_dir();
    for _ in 0..TRIES_MAX {
        let counter = DIRECTORY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = base.join(format!("mqtt-scenarios-mosquitto-{}-{counter}", std::process::id()));
        match fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            // Left behind by an earlier process with the same pid: try the next name.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("creating {}: {error}", candidate.display()),
                ))
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free directory name under {} in {TRIES_MAX} tries", base.display()),
    ))
}

/// Sends SIGKILL and waits, synchronously and for at most about a second, until the process is
/// gone, so its listener is closed when this returns. Safe to call in `Drop`, even while
/// unwinding.
fn kill_and_reap(child: &mut Child) {
    if let Err(error) = child.start_kill() {
        // Already reaped, or the kill failed: either way there is nothing more to do.
        tracing::debug!(%error, "killing mosquitto");
        return;
    }
    for _ in 0..DROP_REAP_CHECKS_MAX {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    tracing::warn!("mosquitto was not reaped within a second of SIGKILL");
}

fn read_log(directory: &Path) -> String {
    match fs::read(directory.join("mosquitto.log")) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(no log: {error})"),
    }
}

/// The end of the log, for error messages.
fn log_tail(directory: &Path) -> String {
    let log = read_log(directory);
    let char_count = log.chars().count();
    if char_count <= ERROR_LOG_CHARS_MAX {
        return log;
    }
    let tail: String = log.chars().skip(char_count - ERROR_LOG_CHARS_MAX).collect();
    format!("[...]{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_third_word_of_the_first_line_of_the_help() {
        let help = "mosquitto version 2.0.11\n\nmosquitto is an MQTT v5.0/v3.1.1/v3.1 broker.\n";
        assert_eq!(parse_version(help).as_deref(), Some("2.0.11"));
        assert_eq!(parse_version("something else\n"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn the_configuration_has_the_listener_and_every_option_set() {
        let config = MosquittoConfig {
            max_keepalive_s: Some(10),
            max_inflight_messages: Some(5),
            max_queued_messages: Some(100),
            extra_lines: vec!["log_type all".to_owned()],
        };
        let text = config.render(4711);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "listener 4711 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "max_keepalive 10",
            "max_inflight_messages 5",
            "max_queued_messages 100",
            "log_type all",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing from\n{text}");
        }
        assert!(!MosquittoConfig::default().render(1).contains("max_"));
    }
}
