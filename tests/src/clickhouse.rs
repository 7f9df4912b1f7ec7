//! A private ClickHouse server for a test: its own config, data directory and ports, started from
//! Debian's `clickhouse-server` (18.16) or any newer one on the PATH, stoppable and restartable on the
//! same data to simulate outages.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    env::in_ci,
    gateway::{free_port, temp_dir},
};

pub struct ClickHouseServer {
    pub http_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClickHouseServer {
    /// Starts a server, or returns `None` (with a message) when none is installed outside CI.
    pub fn start() -> Option<ClickHouseServer> {
        if Command::new("clickhouse-server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                !in_ci(),
                "clickhouse-server is required under CI (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED: clickhouse-server is not installed");
            return None;
        }
        let dir = temp_dir("ch");
        let (http_port, tcp_port, inter_port) = (free_port(), free_port(), free_port());
        let users = ["/etc/clickhouse-server/users.xml"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let path = dir.join("users.xml");
                std::fs::write(&path, USERS).expect("users.xml");
                path.display().to_string()
            });
        let d = dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <interserver_http_port>{inter_port}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mark_cache_size>67108864</mark_cache_size>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
"#
        );
        std::fs::write(dir.join("config.xml"), config).expect("config.xml");
        let mut s = ClickHouseServer {
            http_port,
            dir,
            child: None,
        };
        assert!(
            s.restart(),
            "clickhouse-server did not start; see {}/err.log",
            s.dir.display()
        );
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// (Re)starts on the same data and ports; waits until it answers queries.
    pub fn restart(&mut self) -> bool {
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..300 {
            if self.query_blocking("SELECT 1").is_some_and(|r| r.trim() == "1") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn query_blocking(&self, sql: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "2", &self.url(), "--data-binary", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a query, returning its text answer (panics on an error answer).
    pub async fn query(&self, sql: &str) -> String {
        let r = reqwest::Client::new()
            .post(self.url())
            .body(sql.to_string())
            .send()
            .await
            .expect("clickhouse");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{sql}: {text}");
        text
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const USERS: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
