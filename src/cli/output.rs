//! What every result-producing command shares: verdict lines in colour (only on a terminal, and
//! never with NO_COLOR), a progress bar on long runs, and the result files (`--report-dir`,
//! `--json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqtt_reports::{render, rfc3339, Kind, Report, Verdict};

/// Whether stdout gets colour.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()) && std::io::stdout().is_terminal()
}

/// `PASS`, `FAIL`, ... padded to one width, coloured when `colour`.
pub fn verdict_label(verdict: Verdict, colour: bool) -> String {
    let (text, code) = match verdict {
        Verdict::Pass => ("PASS", "32"),
        Verdict::Fail => ("FAIL", "31"),
        Verdict::Informational => ("INFO", "33"),
        Verdict::NotApplicable => ("N/A ", "2"),
        Verdict::Skipped => ("SKIP", "2"),
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A progress bar on stderr when it is a terminal and there is more than one thing to do.
pub fn progress(total: usize, what: &str) -> ProgressBar {
    if total <= 1 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} {{elapsed}} (eta {{eta}}) {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// An empty report of `kind`, started now.
pub fn new_report(kind: Kind, target: &str) -> Report {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Report::new(kind, env!("CARGO_PKG_VERSION"), rfc3339(since_epoch), target)
}

/// Writes `--report-dir` and `--json` if asked; says where on stderr. An error is returned as a
/// line to print (the run's verdict stands; the exit code says the files are missing).
pub fn write_results(report: &Report, report_dir: Option<&Path>, json: Option<&Path>) -> Result<(), String> {
    if let Some(dir) = report_dir {
        let written =
            render::write_dir(dir, report).map_err(|error| format!("cannot write {}: {error}", dir.display()))?;
        let names: Vec<String> = written.iter().map(|path| path.display().to_string()).collect();
        eprintln!("wrote {}", names.join(", "));
    }
    if let Some(path) = json {
        write_file(path, &report.to_json_pretty())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// A path as the user may type it again in a command: relative paths as given.
pub fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') {
        format!("'{text}'")
    } else {
        text
    }
}

/// The number of threads to use when the user does not say: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

/// Where a case's trace goes under `--trace-dir`: `<dir>/<area>/<name>/<version>[/seed-<s>].trace`.
pub fn trace_path(dir: &Path, id: &str, version: &str, seed: Option<u64>) -> PathBuf {
    let base = dir.join(id);
    match seed {
        Some(seed) => base.join(version).join(format!("seed-{seed}.trace")),
        None => base.join(format!("{version}.trace")),
    }
}
