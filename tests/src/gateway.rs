//! Runs the real `tollgate` binary for a test: writes a config into a fresh temp dir (listen port,
//! admin token, SQLite files), starts the process, waits for `/healthz`, and kills it on drop.
//! The binary is `target/debug/tollgate` (built by `scripts/test.sh`), or `$TOLLGATE_BIN`.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use serde_json::{json, Value};

pub const ADMIN_KEY: &str = "test-admin-token-5b1d";

pub struct Gateway {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("TOLLGATE_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let bin = target.join("debug").join("tollgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tollgate` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `tollgate check-config` on `toml` (written to a file of its own): its exit code and stderr.
pub fn check_config(toml: &str) -> (Option<i32>, String) {
    let dir = temp_dir("check-config");
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, toml).expect("write config");
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run tollgate");
    std::fs::remove_dir_all(dir).ok();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Gateway {
    /// Starts the gateway with `extra` TOML (providers, models, more sections) after a generated
    /// `[server]`, `[store]` and `[usage]`; `env` is added to the process environment.
    pub async fn start(extra: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with_store(None, extra, env).await
    }

    /// A gateway on [`standard_config`] in front of the fake at `base_url`, plus `extra` config.
    pub async fn start_standard(base_url: &str, extra: &str) -> Gateway {
        let config = format!("{}{extra}", standard_config(base_url));
        Gateway::start(&config, &[("FAKE_PROVIDER_KEY", PROVIDER_KEY)]).await
    }

    /// Like [`Gateway::start`], with keys and quotas in Redis under `prefix` (replicas that share a
    /// prefix share keys, limits and budgets).
    pub async fn start_redis(url: &str, prefix: &str, extra: &str, env: &[(&str, &str)]) -> Gateway {
        let store = format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n");
        Gateway::start_with_store(Some(store), extra, env).await
    }

    async fn start_with_store(store: Option<String>, extra: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_full(store, None, extra, env).await
    }

    /// Full control: `store` and `usage` TOML sections (defaults: SQLite files in the temp dir).
    pub async fn start_full(
        store: Option<String>,
        usage: Option<String>,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = temp_dir("gw");
        let usage = usage.unwrap_or_else(|| {
            format!(
                "[usage]\nsink = \"sqlite\"\npath = \"{}\"\n",
                dir.join("usage.db").display()
            )
        });
        let usage = format!("{usage}spool_dir = \"{}\"\n", dir.join("spool").display());
        let port = free_port();
        let store = store.unwrap_or_else(|| {
            format!(
                "[store]\nkind = \"sqlite\"\npath = \"{}\"\n",
                dir.join("keys.db").display()
            )
        });
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_key_env = \"TG_TEST_ADMIN\"\nkey_refresh_ms = 200\nshutdown_grace_secs = 5\n\
             {store}{usage}{extra}"
        );
        std::fs::write(dir.join("tollgate.toml"), config).expect("write config");
        let mut gw = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        gw.spawn().await;
        gw
    }

    /// Starts (or restarts, after the previous process exited) the binary on the same config and data.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gateway.log"))
            .expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir.join("tollgate.toml"))
            .env("TG_TEST_ADMIN", ADMIN_KEY)
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn tollgate"));
        for _ in 0..200 {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gateway did not become healthy; log:\n{}", self.logs());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit (after a signal sent by the test), returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub async fn create_key(&self, models: &[&str]) -> String {
        self.create_key_with(json!({"name": "test", "models": models}))
            .await["key"]
            .as_str()
            .expect("key")
            .to_string()
    }

    /// `POST /admin/keys` with any body; returns the answer (with `id` and `key`).
    pub async fn create_key_with(&self, body: Value) -> Value {
        self.admin(reqwest::Method::POST, "/admin/keys", Some(body), 201)
            .await
    }

    /// An admin call that must answer `status`; returns its JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let mut r = self.http.request(method, self.url(path)).bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("admin call");
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{path}: {v}");
        v
    }

    pub async fn events(&self, query: &str) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/admin/usage/events?{query}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Polls the usage store until at least `n` events exist (they are written asynchronously).
    pub async fn wait_events(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let v = self.events("limit=1000").await;
            let data = v["data"].as_array().cloned().unwrap_or_default();
            if data.len() >= n {
                return data;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "fewer than {n} usage events after 5 s: {}",
            self.events("limit=1000").await
        );
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.post(key, "/v1/chat/completions", body).await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        res.text().await.expect("metrics text")
    }

    /// GETs `path` with `key` as the bearer token.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        let res = self.http.get(self.url(path)).bearer_auth(key).send().await;
        res.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Sends each of `bodies` as a chat and reads its whole answer (so that the upstream request is
    /// complete and recorded); panics unless each is a 200.
    pub async fn chat_all_ok(&self, key: &str, bodies: &[Value]) {
        for body in bodies {
            let res = self.chat(key, body.clone()).await;
            assert_eq!(res.status(), 200, "{body}");
            res.bytes().await.expect("answer body");
        }
    }

    /// A streamed chat's chunks, as [`crate::e2e::sse_chunks`] reads them (a 200 SSE answer ending
    /// in `[DONE]`).
    pub async fn chat_chunks(&self, key: &str, body: Value) -> Vec<Value> {
        crate::e2e::sse_chunks(self.chat(key, body).await).await
    }

    /// POSTs `body` as JSON to `path` with `key` as the bearer token.
    pub async fn post(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The standard provider/model block for tests: an OpenAI-compatible provider at `base_url` with
/// the key from `FAKE_PROVIDER_KEY`, and the echo provider.
pub fn standard_config(base_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "fake"
kind = "openai_compat"
base_url = "{base_url}"
api_key_env = "FAKE_PROVIDER_KEY"
timeout_ms = 5000
stream_idle_timeout_ms = 3000

[[providers]]
name = "echo"
kind = "echo"

[[models]]
name = "gpt-test"
targets = [{{ provider = "fake", model = "up-gpt" }}]

[[models]]
name = "tools-test"
targets = [{{ provider = "fake", model = "tools" }}]

[[models]]
name = "embed-test"
targets = [{{ provider = "fake", model = "up-embed" }}]

[[models]]
name = "secret-model"
targets = [{{ provider = "fake", model = "up-secret" }}]

[[models]]
name = "echo"
targets = [{{ provider = "echo", model = "echo" }}]
"#
    )
}

pub const PROVIDER_KEY: &str = "sk-fake-provider-9f8e7d6c5b4a";
