//! Tests only: one `#[ignore]`d test run alone, in a process of its own (the test binary again),
//! for tests that change what a process has once (the shutdown door, the heartbeat, signal
//! dispositions) and would disturb the tests running beside them.

/// Runs the ignored test `name` (its full path, e.g. `runtime::stall::tests::x`) alone and fails
/// the calling test with its output if it fails.
pub(crate) fn run_alone(name: &str) {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--ignored", "--test-threads=1", "--nocapture"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    assert!(output.status.success(), "{}{stderr}", String::from_utf8_lossy(&output.stdout));
}
