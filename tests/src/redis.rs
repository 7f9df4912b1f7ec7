//! Redis for the tests: the machine's shared server (127.0.0.1:6379, or `$TOLLGATE_TEST_REDIS_URL`),
//! with a unique key prefix per test, and private `redis-server` processes for outage tests.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::gateway::free_port;

/// The shared server's URL, or `None` (with a message) when it is not reachable outside CI.
pub fn shared_url() -> Option<String> {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let hostport = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_string();
    if TcpStream::connect_timeout(&hostport.parse().expect("redis address"), Duration::from_secs(1)).is_ok() {
        return Some(url);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "Redis is required under CI and is not reachable at {url}");
    eprintln!("SKIPPED: Redis not reachable at {url} (scripts/test.sh starts one)");
    None
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("tgtest:{tag}:{}:{nanos}:", std::process::id())
}

/// A private `redis-server` that a test may stop and restart on the same port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        let mut s = RedisServer {
            port: free_port(),
            child: None,
        };
        s.restart().then_some(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)starts the server; false when `redis-server` is not installed.
    pub fn restart(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
