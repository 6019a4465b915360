//! Loading scenario files. Goal: a mistake in a scenario is reported where it is
//! (`file:line:column`) with what was expected, for every kind of mistake the loader knows, and a
//! well-formed file loads into what the engine runs. Method: write small files to a temporary
//! folder named like a library area and load them.

use std::path::PathBuf;

use mqtt_scenarios::load::{load_file, load_paths, LoadErrors};
use mqtt_scenarios::scenario::StepKind;

/// Writes `text` as `<tmp>/<test>/<area>/<name>.yaml` and returns its path.
fn write(test: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("mqtt-scenarios-load-{}-{test}", std::process::id()))
        .join("area");
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("the file is written");
    path
}

/// The errors of loading `text`, which must not load.
fn errors(test: &str, text: &str) -> (PathBuf, LoadErrors) {
    let path = write(test, "broken", text);
    let errors = load_file(&path).expect_err("the file must not load");
    (path, errors)
}

/// Asserts one error at `line:column` whose message contains `wanted`.
fn assert_error_at(test: &str, text: &str, line: u64, column: u64, wanted: &str) {
    let (path, errors) = errors(test, text);
    let rendered = errors.to_string();
    let at = format!("{}:{line}:{column}: ", path.display());
    assert!(
        errors
            .0
            .iter()
            .any(|error| error.line == line && error.column == column && error.message.contains(wanted)),
        "expected an error at {at}containing {wanted:?}; got:\n{rendered}"
    );
    assert!(rendered.contains(&at), "rendered as file:line:column: {rendered}");
}

const HEADER: &str = "name: broken\nclients:\n  a: { client_id: x }\n  p: { kind: probe }\nsteps:\n";

#[test]
fn a_value_of_the_wrong_type_is_reported_where_it_is() {
    let text = format!("{HEADER}  - a: {{ publish: {{ topic: t, qos: high }} }}\n");
    assert_error_at("type", &text, 6, 36, "expected a QoS (0, 1 or 2)");
}

#[test]
fn an_unknown_key_names_the_keys_it_could_be() {
    let text = format!("{HEADER}  - a: {{ publish: {{ topic: t, qos: 1, colour: red }} }}\n");
    assert_error_at("key", &text, 6, 39, "unknown field `colour`");
}

#[test]
fn an_unknown_client_lists_the_known_ones() {
    let text = format!("{HEADER}  - b: {{ connect: {{}} }}\n");
    assert_error_at("client", &text, 6, 5, "unknown client \"b\"; the clients are a, p");
    let text = format!("{HEADER}  - fault: {{ partition: ghost }}\n");
    assert_error_at("fault-client", &text, 6, 5, "unknown client \"ghost\"");
}

#[test]
fn a_bad_duration_or_window_is_reported() {
    let text = format!("{HEADER}  - wait_ms: -5\n");
    let (_, errors) = errors("duration", &text);
    assert_eq!(errors.0[0].line, 6, "{errors}");
    let text = format!("{HEADER}  - a: {{ expect: {{ closed: {{}}, window_ms: [3000, 1000] }} }}\n");
    assert_error_at("window", &text, 6, 18, "the lower bound is above the upper");
    let text = "name: broken\ntick_ms: 0\nclients: {}\nsteps: []\n";
    assert_error_at("tick", text, 2, 10, "tick_ms must be between 1 and 1000");
}

#[test]
fn steps_with_two_actions_or_none_are_refused() {
    let text = format!("{HEADER}  - a: {{ connect: {{}}, subscribe: {{ filter: t }} }}\n");
    assert_error_at(
        "two",
        &text,
        6,
        5,
        "at most one action; this one has connect, subscribe",
    );
    let text = format!("{HEADER}  - a: {{ connect: {{}} }}\n    wait_ms: 5\n");
    assert_error_at("two-keys", &text, 6, 5, "exactly one key");
    let text = format!("{HEADER}  - a: {{}}\n");
    assert_error_at("none", &text, 6, 5, "neither an action nor an expectation");
}

#[test]
fn probe_only_actions_on_our_client_are_refused() {
    let text = format!("{HEADER}  - a: {{ puback: {{}} }}\n");
    assert_error_at("ack", &text, 6, 5, "acks are for probes");
    let text = format!("{HEADER}  - a: {{ raw: \"30 00\" }}\n");
    assert_error_at("raw", &text, 6, 5, "raw bytes are for probes");
    let text = format!("{HEADER}  - p: {{ raw: \"3\" }}\n");
    assert_error_at("hex", &text, 6, 5, "expected hexadecimal bytes");
}

#[test]
fn names_of_reason_codes_and_properties_are_checked() {
    let text = format!("{HEADER}  - a: {{ expect: {{ disconnect: {{ reason: keep_alive_tmeout }} }} }}\n");
    assert_error_at("reason", &text, 6, 18, "unknown reason code \"keep_alive_tmeout\"");
    let text = format!("{HEADER}  - a: {{ expect: {{ connack: {{ properties: {{ server_keepalive: 3 }} }} }} }}\n");
    assert_error_at("property", &text, 6, 18, "unknown property \"server_keepalive\"");
}

#[test]
fn faults_that_need_a_requirement_say_which() {
    let text = format!("{HEADER}  - fault: {{ broker: crash }}\n");
    assert_error_at("crash", &text, 6, 5, "requires: [broker_restart]");
    let text = "name: broken\nbroker: { server_keep_alive_s: 3 }\nclients: {}\nsteps: []\n";
    assert_error_at("config", text, 2, 9, "requires: [broker_config]");
}

#[test]
fn versions_and_statements_are_checked() {
    let text = "name: broken\nversions: [\"5.0\", \"4\"]\nclients: {}\nsteps: []\n";
    assert_error_at("version", text, 2, 19, "expected a version");
    let text = "name: broken\nstatements: [\"MQTT-3.1\"]\nclients: {}\nsteps: []\n";
    assert_error_at("statement", text, 2, 14, "expected a statement id like MQTT-3.1.2-24");
    let text = "name: broken\nversions: [\"5.0\"]\nstatements: [\"3.1.1:MQTT-3.1.2-24\"]\nclients: {}\nsteps: []\n";
    assert_error_at("statement-version", text, 3, 14, "which the scenario does not run");
}

#[test]
fn the_name_must_be_the_file_name() {
    let path = write("name", "silent", "name: loud\nclients: {}\nsteps: []\n");
    let errors = load_file(&path).expect_err("a name that is not the file's");
    assert!(
        errors
            .to_string()
            .contains("the name must be the file's name, \"silent\""),
        "{errors}"
    );
}

#[test]
fn nesting_and_aliases_are_bounded() {
    let deep = format!(
        "name: broken\nabout: {}1{}\nclients: {{}}\nsteps: []\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let (_, deep_errors) = errors("deep", &deep);
    assert!(!deep_errors.0.is_empty());
    let mut text = String::from("name: broken\nclients:\n  a: &a { client_id: x }\n");
    for index in 0..300 {
        text.push_str(&format!("  c{index}: *a\n"));
    }
    text.push_str("steps: []\n");
    let (_, alias_errors) = errors("aliases", &text);
    assert!(alias_errors.to_string().contains("budget"), "{alias_errors}");
}

#[test]
fn a_folder_loads_every_file_and_reports_every_broken_one() {
    let good = write(
        "folder",
        "fine",
        "name: fine\nclients:\n  a: {}\nsteps:\n  - a: { connect: {} }\n",
    );
    write(
        "folder",
        "bad",
        "name: bad\nclients:\n  a: {}\nsteps:\n  - b: { connect: {} }\n",
    );
    let folder = good
        .parent()
        .and_then(|area| area.parent())
        .expect("the test folder")
        .to_owned();
    let errors = load_paths(std::slice::from_ref(&folder)).expect_err("one file is broken");
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.0[0].path.ends_with("area/bad.yaml"));
    std::fs::remove_file(folder.join("area/bad.yaml")).expect("removed");
    let scenarios = load_paths(&[folder]).expect("the rest loads");
    assert_eq!(scenarios.len(), 1);
    assert_eq!(scenarios[0].id, "area/fine");
    assert!(matches!(scenarios[0].steps[0].kind, StepKind::Client(_)));
}
