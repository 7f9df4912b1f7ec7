//! What a test needs from its environment, in one place: whether it runs under CI (where a missing
//! prerequisite is a failure, not a skip), and the Python venv `scripts/test.sh` creates.

/// `CI=true` (or `1`): every prerequisite is required.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips with a message, or fails under CI.
pub fn skip(why: &str) {
    assert!(!in_ci(), "required under CI: {why}");
    eprintln!("SKIPPED: {why}");
}

/// The venv's Python (`TOLLGATE_TEST_PYTHON`), or `None` after [`skip`].
pub fn python() -> Option<String> {
    match std::env::var("TOLLGATE_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            skip("TOLLGATE_TEST_PYTHON is not set (scripts/test.sh creates the venv)");
            None
        }
    }
}
