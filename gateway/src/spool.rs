//! The durable usage spool: the usage writer appends each batch of events to a new segment file
//! (`seg-<seq>.tmp`, fsynced per policy, then renamed to `seg-<seq>.jsonl`, which is the moment the
//! events count as recorded); the shipper sends ready segments to the sink in order and deletes each
//! only once the sink confirmed it. On start, ready segments left by a previous process are replayed
//! and `.tmp` files (a crash mid-write) are recovered up to their last complete line.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use tollgate_schemas::UsageEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// fsync every segment (and the directory) before the events count as recorded.
    Always,
    /// Leave flushing to the OS: faster, loses the last seconds on power loss (not on a crash).
    Never,
}

pub struct Spool {
    dir: PathBuf,
    fsync: Fsync,
    seq: AtomicU64,
    first: u64,
    /// Segments whose insert started in this process: if it was cut short (a shutdown aborting the
    /// shipper), the sink may hold them already, so the next attempt must skip what it has.
    attempted: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

fn seq_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

impl Spool {
    /// Opens (creating) the directory, recovers `.tmp` leftovers, and continues the numbering.
    pub fn open(dir: &Path, fsync: Fsync) -> std::io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut max = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(seq) = seq_of(&path) else { continue };
            max = max.max(seq);
            if path.extension().is_some_and(|e| e == "tmp") {
                Self::recover(&path)?;
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            fsync,
            seq: AtomicU64::new(max + 1),
            first: max + 1,
            attempted: Default::default(),
        })
    }

    pub fn seq(path: &Path) -> Option<u64> {
        seq_of(path)
    }

    /// Whether this segment may already be in the sink: written by an earlier process, or its insert
    /// started here before.
    pub fn maybe_sent(&self, path: &Path) -> bool {
        seq_of(path).is_none_or(|s| s < self.first)
            || self.attempted.lock().map_or(true, |a| a.contains(path))
    }

    pub fn mark_attempted(&self, paths: &[PathBuf]) {
        if let Ok(mut a) = self.attempted.lock() {
            a.extend(paths.iter().cloned());
        }
    }

    /// Deletes a segment the sink confirmed.
    pub fn confirm(&self, path: &Path) -> std::io::Result<()> {
        if let Ok(mut a) = self.attempted.lock() {
            a.remove(path);
        }
        fs::remove_file(path)
    }

    /// Keeps the complete lines of a segment a crash cut short, and makes it ready.
    fn recover(tmp: &Path) -> std::io::Result<()> {
        let events = read_lines(tmp)?;
        if events.is_empty() {
            return fs::remove_file(tmp);
        }
        let ready = tmp.with_extension("jsonl");
        let mut f = File::create(&ready)?;
        for e in &events {
            writeln!(f, "{e}")?;
        }
        f.sync_all()?;
        fs::remove_file(tmp)?;
        tracing::warn!(segment = %ready.display(), events = events.len(), "recovered a partly written usage segment");
        Ok(())
    }

    /// Writes one batch as a new ready segment; returns its size in bytes.
    pub fn write(&self, events: &[UsageEvent]) -> std::io::Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("seg-{seq:020}.tmp"));
        let mut buf = Vec::with_capacity(events.len() * 512);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new().create_new(true).write(true).open(&tmp)?;
        let written = f.write_all(&buf).and_then(|()| match self.fsync {
            Fsync::Always => f.sync_data(),
            Fsync::Never => Ok(()),
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, tmp.with_extension("jsonl"))?;
        if self.fsync == Fsync::Always {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(buf.len() as u64)
    }

    /// Ready segments, oldest first.
    pub fn ready(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl") && seq_of(p).is_some())
            .collect();
        out.sort();
        out
    }

    /// Total bytes waiting in ready segments.
    pub fn backlog_bytes(&self) -> u64 {
        self.ready()
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The complete, parseable events of a segment, each line parsed once (a torn last line is skipped).
    pub fn read(path: &Path) -> std::io::Result<Vec<UsageEvent>> {
        let f = File::open(path)?;
        Ok(BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }
}

/// The complete, parseable lines of a segment (a torn last line is skipped).
fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let f = File::open(path)?;
    Ok(BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| serde_json::from_str::<UsageEvent>(l).is_ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> UsageEvent {
        serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(), "ts_ms": 1, "request_id": format!("r{n}"), "key_id": null, "user": null,
            "endpoint": "chat", "requested_model": null, "served_model": null, "provider": null, "status": 200,
            "error_type": null, "streamed": false, "cancelled": false, "input_tokens": n, "output_tokens": 0,
            "cached_input_tokens": 0, "reasoning_tokens": 0, "latency_ms": 1, "ttft_ms": null, "attempts": 1
        }))
        .unwrap()
    }

    #[test]
    fn segments_survive_restart_and_torn_writes_are_recovered() {
        let dir = std::env::temp_dir().join(format!("tg-spool-{}", uuid::Uuid::new_v4()));
        let spool = Spool::open(&dir, Fsync::Always).unwrap();
        spool.write(&[event(1), event(2)]).unwrap();
        spool.write(&[event(3)]).unwrap();
        // A crash mid-write: one complete line and a torn one.
        let full = serde_json::to_string(&event(4)).unwrap();
        fs::write(
            dir.join("seg-00000000000000000099.tmp"),
            format!("{full}\n{}", &full[..20]),
        )
        .unwrap();
        drop(spool);
        let spool = Spool::open(&dir, Fsync::Always).unwrap();
        let ready = spool.ready();
        assert_eq!(ready.len(), 3);
        let counts: Vec<usize> = ready.iter().map(|p| Spool::read(p).unwrap().len()).collect();
        assert_eq!(counts, vec![2, 1, 1]);
        spool.write(&[event(5)]).unwrap();
        assert!(
            seq_of(spool.ready().last().unwrap()).unwrap() > 99,
            "numbering continues after the highest"
        );
        for p in spool.ready() {
            spool.confirm(&p).unwrap();
        }
        assert_eq!(spool.backlog_bytes(), 0);
        fs::remove_dir_all(dir).ok();
    }
}
