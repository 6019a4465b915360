//! `mqtt-harness report`: render a saved result again, or merge results of one kind (seed ranges
//! of `sim`, shards of `bench`).

use std::path::PathBuf;
use std::process::ExitCode;

use mqtt_reports::{merge, render, Kind, Report};

use super::output;
use super::{EXIT_FAILED, EXIT_USAGE};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Render a result file (report.json or --json output) as HTML, Markdown or JUnit XML.
    Render {
        /// The result file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write a self-contained HTML page here.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Write Markdown here.
        #[arg(long, value_name = "OUT")]
        md: Option<PathBuf>,
        /// Write JUnit XML here.
        #[arg(long, value_name = "OUT")]
        junit: Option<PathBuf>,
    },
    /// Merge result files of the same kind and target into one (bench: the shards of one run,
    /// all of them). Exit 1 when the merged result has a failure, as the commands that wrote them.
    Merge {
        /// The result files, in order.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Write the merged result here.
        #[arg(long, value_name = "OUT")]
        json: PathBuf,
    },
}

fn read(path: &PathBuf) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Report::from_json(&text).map_err(|error| format!("{}: {error}", path.display()))
}

pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Render { file, html, md, junit } => {
            if html.is_none() && md.is_none() && junit.is_none() {
                eprintln!("report render: say what to write with --html, --md or --junit");
                return ExitCode::from(EXIT_USAGE);
            }
            let report = match read(&file) {
                Ok(report) => report,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let outputs = [
                (html, render::html as fn(&Report) -> String),
                (md, render::markdown),
                (junit, render::junit),
            ];
            for (path, renderer) in outputs {
                let Some(path) = path else { continue };
                if let Err(error) = output::write_file(&path, &renderer(&report)) {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_FAILED);
                }
                eprintln!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Command::Merge { files, json } => {
            let mut reports = Vec::new();
            for file in &files {
                match read(file) {
                    Ok(report) => reports.push(report),
                    Err(error) => {
                        eprintln!("{error}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                }
            }
            let is_bench = reports.first().is_some_and(|report| report.kind == Kind::Bench);
            let merged = if is_bench {
                // Bench figures add up exactly (histograms added), and the verdicts are judged again.
                mqtt_loadgen::figures::merge_reports(reports)
            } else {
                merge(reports).map_err(|error| error.to_string())
            };
            let merged = match merged {
                Ok(merged) => merged,
                Err(error) => {
                    eprintln!("report merge: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            if let Err(error) = output::write_file(&json, &merged.to_json_pretty()) {
                eprintln!("{error}");
                return ExitCode::from(EXIT_FAILED);
            }
            println!(
                "merged {} files: {} cases: {}",
                files.len(),
                merged.cases.len(),
                render::terminal_summary_line(&merged.summary)
            );
            // As the commands that wrote them: 1 when the merged result has a failure.
            if merged.summary.failed > 0 {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
