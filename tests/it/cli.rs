//! The command line as a user meets it: help, usage errors, and the exit code of subcommands
//! whose capability has not landed. Method: run the built binary and read its exit code and
//! output.

use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn help_lists_every_subcommand() {
    let output = harness(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for name in ["broker", "check", "sim", "run", "bench", "report"] {
        assert!(help.contains(name), "--help does not mention `{name}`:\n{help}");
    }
}

#[test]
fn a_usage_error_exits_2() {
    assert_eq!(harness(&["check", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(harness(&["no-such-subcommand"]).status.code(), Some(2));
}
