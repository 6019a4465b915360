//! What the machine and its processes say about themselves: CPU time and resident memory from
//! `/proc` (Linux), the file-descriptor limit, cores and kernel. The one place that reads them:
//! the bench command, the broker benchmark and the client comparison all come here.

use std::time::Duration;

/// Clock ticks per second when `getconf CLK_TCK` cannot be asked (the Linux default).
const CLOCK_TICKS_PER_SECOND_DEFAULT: u64 = 100;

/// A process to measure: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Myself,
    Pid(u32),
}

impl Process {
    fn proc_dir(self) -> String {
        match self {
            Process::Myself => "/proc/self".to_owned(),
            Process::Pid(pid) => format!("/proc/{pid}"),
        }
    }

    /// CPU time (user + system) used so far.
    pub fn cpu_time(self) -> Result<Duration, String> {
        self.cpu_times().map(|times| times.user + times.system)
    }

    /// CPU time used so far, in user space and in the kernel apart.
    pub fn cpu_times(self) -> Result<CpuTimes, String> {
        let path = format!("{}/stat", self.proc_dir());
        let stat = std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
        // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 (utime) and 15 (stime), counted from 1 with the state at 3.
        let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok());
        let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
            return Err(format!("{path}: no CPU times in `{}`", stat.trim()));
        };
        let per_second = clock_ticks_per_second() as f64;
        Ok(CpuTimes {
            user: Duration::from_secs_f64(user as f64 / per_second),
            system: Duration::from_secs_f64(system as f64 / per_second),
        })
    }

    /// Resident memory (VmRSS), in KiB.
    pub fn rss_kib(self) -> Result<u64, String> {
        let path = format!("{}/status", self.proc_dir());
        let status = std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| format!("{path}: no VmRSS line"))
    }

    /// File descriptors the process holds open (the entries of `/proc/<pid>/fd`). Every socket is
    /// one, so a broker's count rises by one for each connection it accepts: the broker benchmark
    /// waits on it to read a broker's memory once all its idle connections are in.
    pub fn open_descriptors(self) -> Result<usize, String> {
        let path = format!("{}/fd", self.proc_dir());
        let entries = std::fs::read_dir(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
        Ok(entries.count())
    }

    /// Whether the process still runs.
    pub fn is_alive(self) -> bool {
        std::path::Path::new(&self.proc_dir()).exists()
    }
}

/// CPU time in user space and in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(CLOCK_TICKS_PER_SECOND_DEFAULT)
    })
}

/// The machine a run happened on, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub os: String,
    pub harness_version: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
            os: std::env::consts::OS.to_owned(),
            harness_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Makes sure this process may open `needed` more file descriptors: raises the soft limit up to
/// the hard one if that is enough, else says what to raise.
pub fn ensure_file_descriptors(needed: u64) -> Result<(), String> {
    #[cfg(unix)]
    {
        // Descriptors this process holds already (standard streams, the runtime's) and spare.
        const SPARE: u64 = 64;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given, which lives on this stack frame.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Ok(()); // Cannot tell: let the connects themselves fail with their reason.
        }
        let wanted = needed + SPARE;
        if limit.rlim_cur >= wanted {
            return Ok(());
        }
        if limit.rlim_max >= wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return Ok(());
            }
        }
        Err(format!(
            "{needed} connections need {wanted} file descriptors, and this process may open {} (hard limit {}): raise it with `ulimit -n {wanted}` (or LimitNOFILE= for a service)",
            limit.rlim_cur, limit.rlim_max
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = needed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory_and_a_dead_pid_has_none() {
        let start = Process::Myself.cpu_time().expect("readable on Linux");
        // Burn a little CPU so the counter moves (a tick is 10 ms).
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(Process::Myself.cpu_time().unwrap() > start);
        assert!(Process::Myself.rss_kib().unwrap() > 0);
        assert!(
            Process::Myself.open_descriptors().unwrap() > 0,
            "the listing holds one itself"
        );
        assert!(Process::Myself.is_alive());
        assert!(Process::Pid(u32::MAX).cpu_time().is_err());
        assert!(Process::Pid(u32::MAX).open_descriptors().is_err());
        assert!(!Process::Pid(u32::MAX).is_alive());
    }

    #[test]
    fn a_modest_descriptor_need_is_met_and_an_absurd_one_says_what_to_raise() {
        assert_eq!(ensure_file_descriptors(10), Ok(()));
        let error = ensure_file_descriptors(u64::from(u32::MAX)).unwrap_err();
        assert!(error.contains("ulimit -n"), "{error}");
    }
}
