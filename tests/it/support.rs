//! What every test of the binary needs: run it as a child process, bounded in time, and a fresh
//! temporary folder.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest one run of the binary may take.
pub const WAIT: Duration = Duration::from_secs(120);

/// The workspace root: relative paths in arguments are taken from there.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with `args` from the workspace root, without colour, killed if it takes longer
/// than [`WAIT`]. Its output is read while it runs, so a long one cannot block it.
pub fn harness(args: &[&str]) -> Output {
    harness_within(args, WAIT)
}

/// [`harness`] with its own bound, for the runs that are long by design.
pub fn harness_within(args: &[&str], wait: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqtt-harness"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("mqtt-harness {args:?} did not end within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh temporary folder for one test, named after the test binary's process and `test`.
pub fn temp(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mqtt-harness-it-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}
