//! The randomized fault runner (scripts/chaos.py) itself, on a short fixed-seed schedule:
//! three real nodes under an idempotent `acks=all` load while nodes are killed, paused,
//! shut down and two at a time taken away; nothing acknowledged may be lost, duplicated or
//! reordered, no node may exit on its own or panic. The long runs (10 minutes and more,
//! recorded in BENCHMARKS.md) use the same script; this keeps it working and honest.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::BIN;

#[test]
fn a_short_random_fault_schedule_loses_nothing_acknowledged() {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/chaos.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--seconds", "40", "--seed", "20261207", "--rate", "300"])
        .args(["--bin", BIN])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 with confluent-kafka (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == json!(true),
        "the fault schedule found a problem (logs kept in its workdir):\n{stdout}"
    );
    assert!(summary["faults"].as_u64().unwrap_or(0) >= 2, "{summary}");
    assert!(
        summary["verifier"]["acked"].as_u64().unwrap_or(0) > 1000,
        "{summary}"
    );
}
