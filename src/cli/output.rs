//! What every result-producing command shares: verdict lines in colour (only on a terminal, and
//! never with NO_COLOR), a progress bar on long runs, and the result files (`--report-dir`,
//! `--json`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqtt_reports::{render, rfc3339, Case, Kind, Report, Verdict};

use super::EXIT_FAILED;

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

/// Paths as the user may type them again, space-separated.
pub fn shown_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|path| shown(path)).collect::<Vec<_>>().join(" ")
}

/// The evidence of a failed case under its verdict line: why, expected, actual, the end of the
/// trace, and the command that reruns it (`label`: `replay` or `rerun`).
pub fn print_evidence(case: &Case, label: &str) {
    let evidence = &case.evidence;
    match case.seed {
        Some(seed) => println!("       seed {seed}: {}", evidence.message),
        None => println!("       {}", evidence.message),
    }
    if let Some(expected) = &evidence.expected {
        println!("       expected: {expected}");
    }
    if let Some(actual) = &evidence.actual {
        for (index, line) in actual.lines().take(10).enumerate() {
            let heading = if index == 0 { "actual:  " } else { "         " };
            println!("       {heading} {line}");
        }
    }
    let skip = evidence.trace.len().saturating_sub(30);
    if !evidence.trace.is_empty() {
        println!("       trace (last {} lines):", evidence.trace.len() - skip);
        for line in &evidence.trace[skip..] {
            println!("         {:>11} {} {} {}", line.at, line.who, line.direction, line.what);
        }
    }
    println!("       {label}: {}", case.command);
}

/// Writes the result files and gives the exit code: 1 when `failed`, a file could not be written
/// or a trace could not be (each said on stderr), 0 otherwise.
pub fn finish(
    report: &Report,
    report_dir: Option<&Path>,
    json: Option<&Path>,
    failed: bool,
    trace_errors: &[String],
) -> ExitCode {
    for error in trace_errors.iter().take(3) {
        eprintln!("{error}");
    }
    let mut failed = failed || !trace_errors.is_empty();
    if let Err(error) = write_results(report, report_dir, json) {
        eprintln!("{error}");
        failed = true;
    }
    if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
