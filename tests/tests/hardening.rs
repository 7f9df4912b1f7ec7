//! Hardening: the admin API on its own listener, CORS for browser clients, and the client-header
//! allow-list (credentials, cookies and hop-by-hop headers never go upstream).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use serde_json::{json, Value};
use tollgate_tests::{
    fake::FakeProvider,
    gateway::{binary, check_config, free_port, standard_config, temp_dir, Gateway, ADMIN_KEY, PROVIDER_KEY},
};

#[tokio::test]
async fn the_admin_api_can_live_on_its_own_listener() {
    let fake = FakeProvider::start().await;
    let admin_port = free_port();
    // `[server]` is written by the harness; this override moves the admin API.
    let gw = Gateway::start(
        &standard_config(&fake.base_url()),
        &[
            ("FAKE_PROVIDER_KEY", PROVIDER_KEY),
            (
                "TOLLGATE__SERVER__ADMIN_LISTEN",
                &format!("127.0.0.1:{admin_port}"),
            ),
        ],
    )
    .await;
    let on_main = gw.get(ADMIN_KEY, "/admin/keys").await;
    assert_eq!(on_main.status(), 404, "no admin API on the public listener");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let created: Value = gw
        .http
        .post(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let res = gw
        .chat(
            key,
            json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        gw.http
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.http
            .post(format!("{admin}/v1/chat/completions"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start(
        &standard_config(&fake.base_url()),
        &[
            ("FAKE_PROVIDER_KEY", PROVIDER_KEY),
            ("TOLLGATE__SERVER__CORS_ORIGINS", "[\"https://app.example.com\"]"),
        ],
    )
    .await;
    let preflight = |origin: &'static str| {
        gw.http
            .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let no = preflight("https://evil.example.com").await.unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
    let key = gw.create_key(&[]).await;
    let res = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .bearer_auth(&key)
        .json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
}

#[tokio::test]
async fn only_allow_listed_client_headers_go_upstream() {
    let fake = FakeProvider::start().await;
    let gw = Gateway::start(
        &standard_config(&fake.base_url()),
        &[
            ("FAKE_PROVIDER_KEY", PROVIDER_KEY),
            ("TOLLGATE__SERVER__FORWARD_HEADERS", "[\"openai-organization\"]"),
        ],
    )
    .await;
    let key = gw.create_key(&[]).await;
    let res = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("openai-organization", "org-42")
        .header("cookie", "session=abc")
        .header("x-custom", "nope")
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.headers["openai-organization"], "org-42");
    assert!(sent.headers.get("cookie").is_none());
    assert!(sent.headers.get("x-custom").is_none());
    assert_eq!(sent.headers["authorization"], format!("Bearer {PROVIDER_KEY}"));

    // Credentials can never be allow-listed.
    let (code, err) = check_config("[server]\nforward_headers = [\"Authorization\", \"cookie\"]\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("server.forward_headers[0]") && err.contains("server.forward_headers[1]"),
        "{err}"
    );
}

/// After a run touching every path (good and bad keys, admin calls, upstream errors that echo the
/// provider key, streams, JWT), no configured secret appears in logs, metrics, traces, error bodies,
/// usage events or the audit log.
#[tokio::test]
async fn no_secret_appears_in_any_output() {
    use std::sync::{Arc, Mutex};
    let spans = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&spans);
    let otlp = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push_str(&body);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, otlp).await.unwrap() });

    let fake = FakeProvider::start().await;
    const JWT_SECRET: &str = "jwt-secret-value-that-is-long-enough-0042";
    let extra = format!(
        "[[models]]\nname = \"echoes-key\"\ntargets = [{{ provider = \"fake\", model = \"fail-401\" }}]\n\
         [auth.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\nhs_secret_env = \"TG_JWT\"\n\
         [telemetry]\notlp_endpoint = \"http://{otlp_addr}\"\n"
    );
    let gw = Gateway::start(
        &format!("{}{extra}", standard_config(&fake.base_url())),
        &[("FAKE_PROVIDER_KEY", PROVIDER_KEY), ("TG_JWT", JWT_SECRET)],
    )
    .await;
    let key = gw.create_key(&[]).await;
    let mut bodies = String::new();
    let ask = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    for (k, m) in [
        (key.as_str(), "gpt-test"),
        (key.as_str(), "echoes-key"),
        ("tg-wrong-key", "gpt-test"),
        (key.as_str(), "nope"),
    ] {
        bodies.push_str(&gw.chat(k, ask(m)).await.text().await.unwrap());
    }
    let mut streamed = ask("gpt-test");
    streamed["stream"] = json!(true);
    bodies.push_str(&gw.chat(&key, streamed).await.text().await.unwrap());
    bodies.push_str(&gw.chat("a.b.c", ask("gpt-test")).await.text().await.unwrap());
    for path in [
        "/admin/keys",
        "/admin/audit",
        "/admin/usage/events?limit=100",
        "/admin/usage/summary",
        "/admin/billing/export?format=csv",
    ] {
        bodies.push_str(&gw.get(ADMIN_KEY, path).await.text().await.unwrap());
    }
    bodies.push_str(&gw.get("wrong-admin", "/admin/keys").await.text().await.unwrap());
    gw.wait_events(6).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let metrics = gw.metrics().await;
    let outputs = [
        ("logs", gw.logs()),
        ("metrics", metrics),
        ("traces", spans.lock().unwrap().clone()),
        ("answers", bodies),
    ];
    assert!(!outputs[2].1.is_empty(), "traces were exported");
    for (what, text) in &outputs {
        for secret in [key.as_str(), PROVIDER_KEY, ADMIN_KEY, JWT_SECRET] {
            assert!(!text.contains(secret), "{what} contain a secret");
        }
    }
}

fn self_signed(dir: &std::path::Path, tag: &str) -> Vec<u8> {
    let (key, cert) = (
        dir.join(format!("{tag}-key.pem")),
        dir.join(format!("{tag}-cert.pem")),
    );
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        // An end-entity certificate (rustls refuses a CA certificate as a server certificate).
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    std::fs::read(&cert).unwrap()
}

fn trusting(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_listener_serves_https_and_reloads_a_renewed_certificate() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "openssl is required under CI"
        );
        return;
    }
    let dir = temp_dir("tls");
    let first = self_signed(&dir, "a");
    for f in ["key", "cert"] {
        std::fs::copy(dir.join(format!("a-{f}.pem")), dir.join(format!("live-{f}.pem"))).unwrap();
    }
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{d}/live-cert.pem\"\nkey_file = \"{d}/live-key.pem\"\nreload_secs = 1\n\
         [store]\npath = \":memory:\"\n[usage]\npath = \":memory:\"\nspool_dir = \"{d}/spool\"\n\
         [[providers]]\nname = \"echo\"\nkind = \"echo\"\n[[models]]\nname = \"echo\"\ntargets = [{{ provider = \"echo\", model = \"echo\" }}]\n",
        d = dir.display()
    );
    std::fs::write(dir.join("tollgate.toml"), config).unwrap();
    let _child = KillOnDrop(
        Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(dir.join("tollgate.toml"))
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}/healthz");
    let up = |client: reqwest::Client, url: String| async move {
        for _ in 0..40 {
            if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    assert!(up(trusting(&first), url.clone()).await, "https not served");
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain HTTP must not be served"
    );
    // Renew: new key and certificate written in place; new connections get it within a second or two.
    let second = self_signed(&dir, "b");
    for f in ["key", "cert"] {
        std::fs::copy(dir.join(format!("b-{f}.pem")), dir.join(format!("live-{f}.pem"))).unwrap();
    }
    assert!(
        up(trusting(&second), url.clone()).await,
        "renewed certificate not served"
    );
    assert!(
        trusting(&first).get(&url).send().await.is_err(),
        "the old certificate is no longer served"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Ends the server even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_endless_upstream_error_body_is_not_buffered_to_the_deadline() {
    // A provider answers 503 with a body that never ends (16 KiB every 5 ms). The gateway needs
    // only the start of an error body: it must answer at once, not hold the stream (and grow its
    // buffer) until the provider's 5 s timeout.
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(|| async {
            let chunks = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from(vec![b'x'; 16 * 1024])),
                    (),
                ))
            });
            axum::response::Response::builder()
                .status(503)
                .body(axum::body::Body::from_stream(chunks))
                .unwrap()
        }),
    );
    let upstream = tollgate_tests::fake::serve(app).await;
    let gw = Gateway::start_standard(&format!("http://{}", upstream.addr), "").await;
    let key = gw.create_key(&["gpt-test"]).await;
    let started = std::time::Instant::now();
    let r = gw
        .chat(
            &key,
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let took = started.elapsed();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(status >= 500, "{status} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_non_streamed_answer_past_max_answer_bytes_is_a_502_not_a_buffer() {
    // The fake's answer size follows the prompt: "small" fits; "chunked" is 64 KiB sent without a
    // length (the gateway must stop reading past the cap); "declared" announces 64 KiB up front.
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(|body: axum::Json<Value>| async move {
            let prompt = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
            let content = if prompt == "small" {
                "ok".to_string()
            } else {
                "x".repeat(64 * 1024)
            };
            let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "up",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            .to_string()
            .into_bytes();
            let response = axum::response::Response::builder().header("content-type", "application/json");
            let body = if prompt == "chunked" {
                let pieces: Vec<Result<bytes::Bytes, std::convert::Infallible>> = answer
                    .chunks(4096)
                    .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                    .collect();
                axum::body::Body::from_stream(futures_util::stream::iter(pieces))
            } else {
                axum::body::Body::from(answer)
            };
            response.body(body).unwrap()
        }),
    );
    let upstream = tollgate_tests::fake::serve(app).await;
    let config = format!(
        r#"
[[providers]]
name = "capped"
kind = "openai_compat"
base_url = "http://{}"
max_answer_bytes = 16384
timeout_ms = 5000

[[models]]
name = "m"
targets = [{{ provider = "capped", model = "up" }}]
"#,
        upstream.addr
    );
    let gw = Gateway::start(&config, &[]).await;
    let key = gw.create_key(&["m"]).await;
    let ask = |prompt: &'static str| {
        gw.chat(
            &key,
            json!({"model": "m", "messages": [{"role": "user", "content": prompt}]}),
        )
    };
    for prompt in ["chunked", "declared"] {
        let r = ask(prompt).await;
        assert_eq!(r.status(), 502, "{prompt}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("larger than the provider's max_answer_bytes (16384)"),
            "{prompt}: {message}"
        );
    }
    let r = ask("small").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "ok");
    let statuses: Vec<u64> = gw
        .wait_events(3)
        .await
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 502).count(), 2, "{statuses:?}");
}
