//! The `tollgate` command line: config checking, key management against a running server, logs,
//! and graceful shutdown.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{process::Command, time::Duration};

use serde_json::{json, Value};
use tollgate_tests::{
    fake::FakeProvider,
    gateway::{binary, standard_config, temp_dir, Gateway},
};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().expect("run tollgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Chats with `key` until the answer is `want` (the server re-reads the key store when it changed);
/// the last status, after 2.5 s at most.
async fn status_within(gw: &Gateway, key: &str, want: u16) -> u16 {
    let mut status = 0;
    for _ in 0..50 {
        let body = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
        status = gw.chat(key, body).await.status().as_u16();
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}

#[test]
fn version_is_printed() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("tollgate "), "{out}");
}

#[test]
fn check_config_reports_every_error_by_field_path() {
    let dir = temp_dir("cli");
    let good = dir.join("good.toml");
    std::fs::write(&good, standard_config("http://127.0.0.1:9/v1")).unwrap();
    let (code, out, err) = run(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"not-an-address\"\n[[providers]]\nname = \"a\"\nkind = \"azure\"\n\
         [[models]]\nname = \"m\"\ntargets = [{ provider = \"ghost\", model = \"x\" }]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    for path in [
        "server.listen",
        "providers[0].base_url",
        "models[0].targets[0].provider",
    ] {
        assert!(err.contains(path), "missing {path} in: {err}");
    }
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = 3\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("providers[0].base_url"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn serve_refuses_an_invalid_config() {
    let dir = temp_dir("cli");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("server.listen"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn keys_created_and_revoked_by_the_cli_are_honoured_by_the_running_server() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start_standard(&fake.base_url(), "").await;
    let config = gw.dir.join("tollgate.toml");
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&[
        "keys", "create", "--config", config, "--name", "cli-key", "--model", "echo",
    ]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    // The server re-reads the store when it changed (here every 200 ms; by default every second).
    assert_eq!(
        status_within(&gw, key, 200).await,
        200,
        "CLI-created key not honoured within 2.5 s"
    );
    let (_, list, _) = run(&["keys", "list", "--config", config]);
    assert!(list.contains(id) && !list.contains(key), "{list}");
    let (code, _, _) = run(&["keys", "revoke", "--config", config, id]);
    assert_eq!(code, 0);
    assert_eq!(
        status_within(&gw, key, 401).await,
        401,
        "CLI-revoked key still accepted"
    );
    let (code, _, err) = run(&["keys", "revoke", "--config", config, "key_nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("key_nope"));
}

#[tokio::test]
async fn sigterm_drains_streams_for_the_grace_period_then_exits_zero_without_losing_events() {
    let fake = FakeProvider::start().await;
    // A provider whose total timeout outlives the grace period, so shutdown is what cuts the stream.
    let extra = format!(
        "[[providers]]\nname = \"patient\"\nkind = \"openai_compat\"\nbase_url = \"{}\"\ntimeout_ms = 60000\n\
         [[models]]\nname = \"gpt-slow\"\ntargets = [{{ provider = \"patient\", model = \"slow\" }}]\n",
        fake.base_url()
    );
    let mut gw = Gateway::start_standard(&fake.base_url(), &extra).await;
    let key = gw.create_key(&[]).await;
    assert_eq!(
        gw.chat(
            &key,
            json!({"model": "echo", "messages": [{"role": "user", "content": "a b"}]})
        )
        .await
        .status(),
        200
    );
    // A stream of the echo model is quick; the slow one outlives the grace period (5 s in tests).
    let res = gw
        .chat(
            &key,
            json!({"model": "gpt-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Collect what arrives until the stream ends or is cut.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut body = res.bytes_stream();
        while let Some(Ok(b)) = futures_util::StreamExt::next(&mut body).await {
            got.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = gw.http.get(gw.url("/readyz")).send().await;
    // New connections are refused once draining started; an answer, if any, is not ready.
    if let Ok(r) = ready {
        assert_eq!(r.status(), 503);
    }
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.wait_exit(Duration::from_secs(15));
        (code, gw)
    })
    .await
    .unwrap();
    let (code, gw) = code;
    assert_eq!(code, Some(0), "log:\n{}", gw.logs());
    let streamed = reader.await.unwrap();
    // One chunk per 50 ms: the stream kept flowing through the 5 s grace period after SIGTERM.
    let chunks = streamed.matches("data: ").count();
    assert!(chunks >= 50, "only {chunks} chunks: the stream was not drained");
    let log = gw.logs();
    assert!(log.contains("shutdown requested"), "{log}");
    // Both requests were recorded before exit: the stream cut at the end of the grace period as
    // cancelled. A restarted gateway reads them from the same usage store.
    let mut gw = gw;
    gw.spawn().await;
    let events = gw.wait_events(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0]["streamed"].as_bool(), events[0]["cancelled"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(events[1]["status"], 200);
}

#[tokio::test]
async fn config_reloads_on_sighup_and_on_file_change_and_refuses_invalid_files() {
    let fake = FakeProvider::start().await;
    let slow = format!(
        "[[providers]]\nname = \"patient\"\nkind = \"openai_compat\"\nbase_url = \"{}\"\ntimeout_ms = 60000\n\
         [[models]]\nname = \"gpt-slow\"\ntargets = [{{ provider = \"patient\", model = \"slow\" }}]\n",
        fake.base_url()
    );
    let gw = Gateway::start_standard(&fake.base_url(), &slow).await;
    let key = gw.create_key(&[]).await;
    let path = gw.dir.join("tollgate.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let ask = |m: &'static str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    let status_of = |m: &'static str| {
        let (gw, key) = (&gw, &key);
        async move { gw.chat(key, ask(m)).await.status().as_u16() }
    };
    let eventually = |m: &'static str, want: u16| async move {
        for _ in 0..60 {
            if status_of(m).await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert_eq!(status_of("added").await, 404);
    // A stream that starts before the reload finishes on the config it started with.
    let res = gw
        .chat(
            &key,
            json!({"model": "gpt-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let mut stream = res.bytes_stream();
    futures_util::StreamExt::next(&mut stream).await.unwrap().unwrap();

    // SIGHUP: the slow model is removed, a new one added.
    let without_slow = original
        .replace("name = \"gpt-slow\"", "name = \"added\"")
        .replace("model = \"slow\"", "model = \"up-added\"");
    std::fs::write(&path, &without_slow).unwrap();
    Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(eventually("added", 200).await, "SIGHUP reload not applied");
    assert_eq!(status_of("gpt-slow").await, 404);
    for _ in 0..5 {
        let chunk = futures_util::StreamExt::next(&mut stream).await.unwrap().unwrap();
        assert!(
            !chunk.is_empty(),
            "the running stream kept flowing after the reload"
        );
    }
    drop(stream);

    // An invalid file is refused and the running config stays.
    std::fs::write(&path, format!("{without_slow}\n[[models]]\nname = 3\n")).unwrap();
    Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of("added").await, 200);
    let start = std::time::Instant::now();
    while !gw.logs().contains("config reload refused") {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no refusal logged:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.logs().contains("models[5].name") || gw.logs().contains(".name"),
        "the error names the field"
    );

    // A file change alone (no signal) is picked up too.
    std::fs::write(
        &path,
        without_slow.replace("name = \"added\"", "name = \"renamed\""),
    )
    .unwrap();
    assert!(eventually("renamed", 200).await, "file change not picked up");
    assert_eq!(status_of("added").await, 404);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_config_reload_failures_total 1")
            || metrics.contains("tollgate_config_reload_failures_total 2"),
        "{metrics}"
    );
}
