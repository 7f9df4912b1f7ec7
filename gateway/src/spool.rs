//! The durable usage spool: the usage writer appends each batch of events to a new segment file
//! (`seg-<seq>.tmp`, fsynced per policy, then renamed to `seg-<seq>.jsonl`, which is the moment the
//! events count as recorded); the shipper sends ready segments to the sink in order and deletes each
//! only once the sink confirmed it. On start, ready segments left by a previous process are replayed
//! and `.tmp` files (a crash mid-write) are recovered up to their last complete line.
//!
//! The spool keeps its ready segments in a queue (in sequence order, so the shipper never lists or
//! sorts the directory), and hands the events of the segments this process wrote to the shipper as
//! written, within a memory budget ([`MEMORY_BYTES`]): the shipper then need not read and parse the
//! file back. Segments past the budget, and those left by an earlier process, are read from disk.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::SystemTime,
};

use tollgate_schemas::UsageEvent;

/// Encoded bytes of the segments whose events the spool keeps in memory for the shipper. A sink
/// that is down fills it; later segments are then read back from disk, so memory stays bounded.
pub const MEMORY_BYTES: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// fsync every segment (and the directory) before the events count as recorded.
    Always,
    /// Leave flushing to the OS: faster, loses the last seconds on power loss (not on a crash).
    Never,
}

/// A ready segment in the queue.
struct Segment {
    seq: u64,
    /// Its size on disk.
    bytes: u64,
    /// The events as written, while within the memory budget; `None`: read the file.
    events: Option<Arc<[UsageEvent]>>,
    /// When it became ready (for segments found at start, the file's modification time).
    ready_at: SystemTime,
    /// Its insert started in this process: if it was cut short (a shutdown aborting the shipper),
    /// the sink may hold it already, so the next attempt must skip what it has.
    attempted: bool,
}

#[derive(Default)]
struct Queue {
    /// Ready segments, by ascending `seq`.
    segments: VecDeque<Segment>,
    /// Bytes of the segments whose events are held in memory.
    held: u64,
}

impl Queue {
    fn position(&self, seq: u64) -> Result<usize, usize> {
        self.segments.binary_search_by_key(&seq, |s| s.seq)
    }
}

/// One insert's worth of ready segments, oldest first (see [`Spool::take`]).
#[derive(Default)]
pub struct Batch {
    /// The segments taken, to [`Spool::confirm_seq`] once the sink has their events.
    pub seqs: Vec<u64>,
    /// Their events, one slice per segment.
    pub parts: Vec<Arc<[UsageEvent]>>,
    /// Number of events.
    pub len: usize,
    /// Some of it may be in the sink already: written by an earlier process, or tried before.
    pub maybe_sent: bool,
}

pub struct Spool {
    /// `<dir>/seg-`: segment paths start with it.
    prefix: std::ffi::OsString,
    fsync: Fsync,
    seq: AtomicU64,
    first: u64,
    /// The directory itself, kept open to fsync renames into it (with `Fsync::Always`).
    dir_handle: Option<File>,
    queue: Mutex<Queue>,
    /// See [`MEMORY_BYTES`].
    memory_bytes: u64,
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
    /// Opens (creating) the directory, recovers `.tmp` leftovers, queues the ready segments found
    /// there, and continues the numbering.
    pub fn open(dir: &Path, fsync: Fsync) -> std::io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut max = 0;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(seq) = seq_of(&path) else { continue };
            max = max.max(seq);
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    if let Some(ready) = Self::recover(&path)? {
                        found.push((seq, ready));
                    }
                }
                Some("jsonl") => found.push((seq, path)),
                _ => {}
            }
        }
        found.sort_unstable_by_key(|(seq, _)| *seq);
        // A recovery cut short leaves both `seg-N.jsonl` and `seg-N.tmp`: one segment.
        found.dedup_by_key(|(seq, _)| *seq);
        let segments = found
            .into_iter()
            .map(|(seq, path)| {
                let meta = fs::metadata(&path).ok();
                Segment {
                    seq,
                    bytes: meta.as_ref().map_or(0, |m| m.len()),
                    events: None,
                    ready_at: meta
                        .and_then(|m| m.modified().ok())
                        .unwrap_or_else(SystemTime::now),
                    attempted: false,
                }
            })
            .collect();
        Ok(Spool {
            prefix: dir.join("seg-").into_os_string(),
            fsync,
            seq: AtomicU64::new(max + 1),
            first: max + 1,
            dir_handle: match fsync {
                Fsync::Always => Some(File::open(dir)?),
                Fsync::Never => None,
            },
            queue: Mutex::new(Queue { segments, held: 0 }),
            memory_bytes: MEMORY_BYTES,
        })
    }

    /// Sets the memory budget (bytes of segments whose events are held for the shipper; 0: none).
    pub fn with_memory_budget(mut self, bytes: u64) -> Spool {
        self.memory_bytes = bytes;
        self
    }

    /// The queue; a panic elsewhere while holding it leaves it consistent (every update is one step).
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seq(path: &Path) -> Option<u64> {
        seq_of(path)
    }

    /// `<dir>/seg-<seq as 20 digits>.<ext>`, built by hand (`format!` with padding and `join`
    /// cost about 2,500 instructions a path, three paths a segment).
    fn path(&self, seq: u64, ext: &str) -> PathBuf {
        let mut digits = [b'0'; 20];
        let mut n = seq;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut p = std::ffi::OsString::with_capacity(self.prefix.len() + 21 + ext.len());
        p.push(&self.prefix);
        p.push(std::str::from_utf8(&digits).unwrap_or_default());
        p.push(".");
        p.push(ext);
        PathBuf::from(p)
    }

    /// Whether this segment may already be in the sink: written by an earlier process, or its insert
    /// started here before.
    pub fn maybe_sent(&self, path: &Path) -> bool {
        let Some(seq) = seq_of(path) else { return true };
        seq < self.first || {
            let q = self.queue();
            q.position(seq).is_ok_and(|i| q.segments[i].attempted)
        }
    }

    /// Deletes a segment the sink confirmed.
    pub fn confirm(&self, path: &Path) -> std::io::Result<()> {
        match seq_of(path) {
            Some(seq) => self.confirm_seq(seq),
            None => fs::remove_file(path),
        }
    }

    /// Deletes a segment the sink confirmed, and forgets it (even if the file cannot be removed:
    /// then the next start replays it as maybe sent, and the sink skips what it has).
    pub fn confirm_seq(&self, seq: u64) -> std::io::Result<()> {
        self.forget(seq);
        fs::remove_file(self.path(seq, "jsonl"))
    }

    /// Keeps the complete lines of a segment a crash cut short, and makes it ready (returns its
    /// path; `None` when nothing was left to keep).
    fn recover(tmp: &Path) -> std::io::Result<Option<PathBuf>> {
        let events = read_lines(tmp)?;
        if events.is_empty() {
            fs::remove_file(tmp)?;
            return Ok(None);
        }
        let ready = tmp.with_extension("jsonl");
        let mut f = File::create(&ready)?;
        for e in &events {
            writeln!(f, "{e}")?;
        }
        f.sync_all()?;
        fs::remove_file(tmp)?;
        tracing::warn!(segment = %ready.display(), events = events.len(), "recovered a partly written usage segment");
        Ok(Some(ready))
    }

    /// Writes one batch as a new ready segment (the shipper reads it back from the file); returns
    /// its size in bytes.
    pub fn write(&self, events: &[UsageEvent]) -> std::io::Result<u64> {
        let (seq, bytes) = self.write_file(events)?;
        self.enqueue(seq, bytes, None);
        Ok(bytes)
    }

    /// Like [`Spool::write`], but on success moves the events out of `batch` (leaving it empty) and
    /// keeps them for the shipper while the memory budget allows. On error `batch` is untouched.
    pub fn write_batch(&self, batch: &mut Vec<UsageEvent>) -> std::io::Result<u64> {
        let (seq, bytes) = self.write_file(batch)?;
        let events: Arc<[UsageEvent]> = batch.drain(..).collect();
        self.enqueue(seq, bytes, Some(events));
        Ok(bytes)
    }

    /// Writes, syncs and renames a new segment; returns its sequence number and size.
    fn write_file(&self, events: &[UsageEvent]) -> std::io::Result<(u64, u64)> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.path(seq, "tmp");
        let mut buf = Vec::with_capacity(events.len() * 512);
        for e in events {
            e.write_json_line(&mut buf);
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
        fs::rename(&tmp, self.path(seq, "jsonl"))?;
        if let Some(d) = &self.dir_handle {
            d.sync_all()?;
        }
        Ok((seq, buf.len() as u64))
    }

    /// Queues a ready segment, holding its events if the budget allows.
    fn enqueue(&self, seq: u64, bytes: u64, events: Option<Arc<[UsageEvent]>>) {
        let mut q = self.queue();
        let events = events.filter(|_| q.held + bytes <= self.memory_bytes);
        if events.is_some() {
            q.held += bytes;
        }
        let segment = Segment {
            seq,
            bytes,
            events,
            ready_at: SystemTime::now(),
            attempted: false,
        };
        // Sequence numbers are taken before writing: concurrent writers may finish out of order.
        match q.segments.back() {
            Some(last) if last.seq > seq => {
                let i = q.position(seq).unwrap_or_else(|i| i);
                q.segments.insert(i, segment);
            }
            _ => q.segments.push_back(segment),
        }
    }

    /// The oldest ready segments, in order, holding at most `max_events` events (but at least one
    /// segment), and marks them attempted: from here the sink may receive them. A segment that
    /// cannot be read is logged and left in place (one whose file is gone is forgotten).
    pub fn take(&self, max_events: usize) -> Batch {
        let mut batch = Batch::default();
        let mut after = None;
        loop {
            // The next segment after the last one looked at (the lock is not held while reading).
            let next = {
                let q = self.queue();
                let i = after.map_or(0, |a| q.position(a).map_or_else(|i| i, |i| i + 1));
                q.segments.get(i).map(|s| (s.seq, s.events.clone(), s.attempted))
            };
            let Some((seq, held, attempted)) = next else { break };
            after = Some(seq);
            let events = match held {
                Some(events) => events,
                None => match Self::read(&self.path(seq, "jsonl")) {
                    Ok(events) => events.into(),
                    Err(e) => {
                        let gone = e.kind() == std::io::ErrorKind::NotFound;
                        tracing::error!(error = %e, seq, gone, "unreadable usage segment left in place");
                        if gone {
                            self.forget(seq);
                        }
                        continue;
                    }
                },
            };
            if batch.len > 0 && batch.len + events.len() > max_events {
                break;
            }
            batch.maybe_sent |= attempted || seq < self.first;
            batch.len += events.len();
            batch.seqs.push(seq);
            batch.parts.push(events);
        }
        let mut q = self.queue();
        for &seq in &batch.seqs {
            if let Ok(i) = q.position(seq) {
                q.segments[i].attempted = true;
            }
        }
        batch
    }

    /// Drops a segment from the queue (and its events from memory).
    fn forget(&self, seq: u64) {
        let mut q = self.queue();
        if let Ok(i) = q.position(seq) {
            if let Some(s) = q.segments.remove(i) {
                if s.events.is_some() {
                    q.held -= s.bytes;
                }
            }
        }
    }

    /// Number of ready segments, and when the oldest became ready.
    pub fn pending(&self) -> (usize, Option<SystemTime>) {
        let q = self.queue();
        (q.segments.len(), q.segments.front().map(|s| s.ready_at))
    }

    /// Ready segments, oldest first.
    pub fn ready(&self) -> Vec<PathBuf> {
        let q = self.queue();
        q.segments.iter().map(|s| self.path(s.seq, "jsonl")).collect()
    }

    /// Total bytes waiting in ready segments.
    pub fn backlog_bytes(&self) -> u64 {
        self.queue().segments.iter().map(|s| s.bytes).sum()
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

    #[test]
    fn segment_paths_are_zero_padded() {
        let dir = std::env::temp_dir().join(format!("tg-spool-{}", uuid::Uuid::new_v4()));
        let spool = Spool::open(&dir, Fsync::Never).unwrap();
        for seq in [0, 7, 1234567890, u64::MAX] {
            assert_eq!(spool.path(seq, "jsonl"), dir.join(format!("seg-{seq:020}.jsonl")));
            assert_eq!(seq_of(&spool.path(seq, "tmp")), Some(seq));
        }
        fs::remove_dir_all(dir).ok();
    }

    fn request_ids(batch: &Batch) -> Vec<String> {
        batch
            .parts
            .iter()
            .flat_map(|p| p.iter().map(|e| e.request_id.clone()))
            .collect()
    }

    #[test]
    fn the_shipper_takes_segments_in_order_from_memory_or_disk() {
        let dir = std::env::temp_dir().join(format!("tg-spool-{}", uuid::Uuid::new_v4()));
        // A budget for the first segment (two events): the rest is read from disk.
        let line = serde_json::to_vec(&event(1)).unwrap().len() as u64 + 1;
        let spool = Spool::open(&dir, Fsync::Never)
            .unwrap()
            .with_memory_budget(2 * line + line / 2);
        let mut batch = vec![event(1), event(2)];
        spool.write_batch(&mut batch).unwrap();
        assert!(batch.is_empty(), "the events moved to the spool");
        spool.write_batch(&mut vec![event(3)]).unwrap();
        spool.write(&[event(4), event(5)]).unwrap();
        let held = spool.queue().held;
        assert_eq!(held, fs::metadata(&spool.ready()[0]).unwrap().len());
        // The file is what counts: held events equal what a restart would read back.
        assert_eq!(Spool::read(&spool.ready()[0]).unwrap().len(), 2);

        // At most 3 events, but never a segment split: the first two segments.
        let taken = spool.take(3);
        assert_eq!(request_ids(&taken), ["r1", "r2", "r3"]);
        assert_eq!(taken.len, 3);
        assert!(!taken.maybe_sent, "written by this process, never tried");
        // Tried but not confirmed (the sink failed): the retry may find them in the sink.
        let again = spool.take(3);
        assert_eq!(again.seqs, taken.seqs);
        assert!(again.maybe_sent);
        for seq in again.seqs {
            spool.confirm_seq(seq).unwrap();
        }
        assert_eq!(spool.queue().held, 0);
        // A single segment larger than the limit still goes.
        let rest = spool.take(1);
        assert_eq!(request_ids(&rest), ["r4", "r5"]);
        assert!(!rest.maybe_sent);
        // A segment whose file vanished is forgotten, not retried forever.
        fs::remove_file(&spool.ready()[0]).unwrap();
        assert!(spool.take(10).seqs.is_empty());
        assert_eq!(spool.pending().0, 0);

        // After a restart everything left is maybe sent, read from disk, in order.
        spool.write_batch(&mut vec![event(6)]).unwrap();
        spool.write_batch(&mut vec![event(7)]).unwrap();
        drop(spool);
        let spool = Spool::open(&dir, Fsync::Never).unwrap();
        let replay = spool.take(100);
        assert_eq!(request_ids(&replay), ["r6", "r7"]);
        assert!(replay.maybe_sent);
        fs::remove_dir_all(dir).ok();
    }
}
