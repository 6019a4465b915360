//! The command line as a user meets it: help and usage errors. Method: run the built binary and
//! read its exit code and output.

use crate::support::harness;

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
