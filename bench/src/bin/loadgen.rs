//! `loadgen`: open-loop load at a constant arrival rate (or closed-loop at a fixed concurrency),
//! reporting latency percentiles, errors and the achieved rate as one markdown table row on stdout
//! and, with `--json FILE`, as one JSON line appended to FILE (what `bench/report.py` tabulates).
//!
//! ```text
//! loadgen --url URL [--key KEY] [--header 'name: value']... [--body JSON | --body-file FILE]
//!         [--rate RPS | --concurrency N] [--duration SECS] [--warmup SECS] [--stream]
//!         [--label TEXT] [--scenario NAME] [--json FILE] [--max-inflight N] [--timeout SECS]
//! loadgen ... --search [--rate START] [--max-rate RPS] [--p99-ms 10]
//! loadgen ... --open-streams N [--ramp RPS] [--ready-file PATH] [--hold-secs SECS]
//! ```
//! Open loop: request i is due at `start + i / rate`; its latency counts from that instant, so time
//! spent waiting for a free connection or a slow server is included (no coordinated omission). A
//! request due while `--max-inflight` are already waiting is not sent and counts as an error (a
//! collapsing server would otherwise pile up unbounded sockets). With `--stream`, the row also has
//! the time to the first body byte (TTFT as the client sees it) next to the time to the last byte.
//!
//! `--search` looks for the highest rate whose p99 stays under `--p99-ms` with under 0.1% errors and
//! at least 97% of the offered rate achieved: it grows the rate by half until a step fails, then
//! bisects. `--open-streams N` opens N streams (paced at `--ramp` per second), waits until each has
//! its first byte, writes the count to `--ready-file`, and holds them all open for `--hold-secs`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    io::Write,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

struct Args {
    url: String,
    key: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
    rate: f64,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    label: String,
    scenario: String,
    stream: bool,
    json: Option<String>,
    max_inflight: usize,
    timeout: f64,
    search: bool,
    max_rate: f64,
    p99_ms: f64,
    open_streams: usize,
    ramp: f64,
    ready_file: Option<String>,
    hold_secs: f64,
}

fn parse() -> Args {
    let mut a = Args {
        url: String::new(),
        key: None,
        headers: Vec::new(),
        body: r#"{"model":"gpt-test","messages":[{"role":"user","content":"hello there, how are you?"}]}"#
            .into(),
        rate: 0.0,
        concurrency: 1,
        duration: 10.0,
        warmup: 2.0,
        label: String::new(),
        scenario: String::new(),
        stream: false,
        json: None,
        max_inflight: 4096,
        timeout: 30.0,
        search: false,
        max_rate: 100_000.0,
        p99_ms: 10.0,
        open_streams: 0,
        ramp: 2000.0,
        ready_file: None,
        hold_secs: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--key" => a.key = Some(val()),
            "--header" => {
                let h = val();
                let (n, v) = h.split_once(':').expect("--header 'name: value'");
                a.headers.push((n.trim().to_string(), v.trim().to_string()));
            }
            "--body" => a.body = val(),
            "--body-file" => a.body = std::fs::read_to_string(val()).expect("body file"),
            "--rate" => a.rate = val().parse().expect("rate"),
            "--concurrency" => a.concurrency = val().parse().expect("concurrency"),
            "--duration" => a.duration = val().parse().expect("duration"),
            "--warmup" => a.warmup = val().parse().expect("warmup"),
            "--label" => a.label = val(),
            "--scenario" => a.scenario = val(),
            "--stream" => a.stream = true,
            "--json" => a.json = Some(val()),
            "--max-inflight" => a.max_inflight = val().parse().expect("max-inflight"),
            "--timeout" => a.timeout = val().parse().expect("timeout"),
            "--search" => a.search = true,
            "--max-rate" => a.max_rate = val().parse().expect("max-rate"),
            "--p99-ms" => a.p99_ms = val().parse().expect("p99-ms"),
            "--open-streams" => a.open_streams = val().parse().expect("open-streams"),
            "--ramp" => a.ramp = val().parse().expect("ramp"),
            "--ready-file" => a.ready_file = Some(val()),
            "--hold-secs" => a.hold_secs = val().parse().expect("hold-secs"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
}

#[derive(Default)]
struct Samples {
    total_us: Vec<u64>,
    ttfb_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn request(client: &reqwest::Client, a: &Args, body: bytes::Bytes) -> reqwest::RequestBuilder {
    let mut req = client
        .post(&a.url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = &a.key {
        req = req.bearer_auth(k);
    }
    for (n, v) in &a.headers {
        req = req.header(n, v);
    }
    req
}

/// One request, read to its end. Ok(time to first body byte) or an error description.
async fn one(
    client: &reqwest::Client,
    a: &Args,
    body: bytes::Bytes,
    due: Instant,
) -> Result<Option<Duration>, String> {
    let mut r = request(client, a, body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        return Err(format!(
            "status {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let mut first = None;
    loop {
        match r.chunk().await {
            Ok(Some(_)) => {
                first.get_or_insert_with(|| due.elapsed());
            }
            Ok(None) => return Ok(first),
            Err(e) => return Err(format!("body: {e}")),
        }
    }
}

fn record(out: &Mutex<Samples>, due: Instant, res: Result<Option<Duration>, String>) {
    let total = due.elapsed();
    let mut s = out.lock().expect("lock");
    match res {
        Ok(ttfb) => {
            s.total_us.push(total.as_micros() as u64);
            if let Some(t) = ttfb {
                s.ttfb_us.push(t.as_micros() as u64);
            }
        }
        Err(e) => {
            s.errors += 1;
            s.first_error.get_or_insert(e);
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Stats {
    mode: String,
    rate: f64,
    achieved: f64,
    n: usize,
    p: [f64; 4],
    ttfb: [f64; 2],
    errors: u64,
    first_error: Option<String>,
}

/// Open loop at `rate` (or closed loop at `a.concurrency` when `rate` is 0) for warmup + duration.
async fn run(client: &reqwest::Client, a: &Arc<Args>, rate: f64, warmup: f64, duration: f64) -> Stats {
    let body = bytes::Bytes::from(a.body.clone());
    let out = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(warmup);
    let end = warm_end + Duration::from_secs_f64(duration);
    if rate > 0.0 {
        // A plain thread paces the arrivals: tokio's timer wheel has 1 ms granularity, which would
        // add up to 1 ms of the driver's own lateness to every measured latency.
        let interval = Duration::from_secs_f64(1.0 / rate);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let pacer = std::thread::spawn(move || {
            let mut i: u32 = 0;
            loop {
                let due = start + interval * i;
                if due >= end {
                    break;
                }
                loop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    let left = due - now;
                    if left > Duration::from_micros(300) {
                        std::thread::sleep(left - Duration::from_micros(200));
                    } else {
                        std::hint::spin_loop();
                    }
                }
                if tx.send(due).is_err() {
                    break;
                }
                i += 1;
            }
        });
        let inflight = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        while let Some(due) = rx.recv().await {
            let measured = due >= warm_end;
            if inflight.load(Ordering::Relaxed) >= a.max_inflight {
                if measured {
                    record(
                        &out,
                        due,
                        Err(format!("shed: {} requests already in flight", a.max_inflight)),
                    );
                }
                continue;
            }
            inflight.fetch_add(1, Ordering::Relaxed);
            let (client, a, body, out, inflight) = (
                client.clone(),
                Arc::clone(a),
                body.clone(),
                Arc::clone(&out),
                Arc::clone(&inflight),
            );
            tasks.push(tokio::spawn(async move {
                let res = one(&client, &a, body, due).await;
                inflight.fetch_sub(1, Ordering::Relaxed);
                if measured {
                    record(&out, due, res);
                }
            }));
        }
        let _ = pacer.join();
        for t in tasks {
            let _ = t.await;
        }
    } else {
        let mut workers = Vec::new();
        for _ in 0..a.concurrency.max(1) {
            let (client, a, body, out) = (client.clone(), Arc::clone(a), body.clone(), Arc::clone(&out));
            workers.push(tokio::spawn(async move {
                loop {
                    let due = Instant::now();
                    if due >= end {
                        break;
                    }
                    let res = one(&client, &a, body.clone(), due).await;
                    if due >= warm_end {
                        record(&out, due, res);
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    }
    let mut s = out.lock().expect("lock");
    s.total_us.sort_unstable();
    s.ttfb_us.sort_unstable();
    let mode = if rate > 0.0 {
        format!("{rate:.0} rps open")
    } else {
        format!("c={} closed", a.concurrency)
    };
    Stats {
        mode,
        rate,
        achieved: s.total_us.len() as f64 / duration,
        n: s.total_us.len(),
        p: [50.0, 90.0, 99.0, 99.9].map(|p| pct(&s.total_us, p)),
        ttfb: [50.0, 99.0].map(|p| pct(&s.ttfb_us, p)),
        errors: s.errors,
        first_error: s.first_error.take(),
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

fn report(a: &Args, s: &Stats, extra: &str) {
    let ttfb = if a.stream {
        format!(" | {:.3} | {:.3}", s.ttfb[0], s.ttfb[1])
    } else {
        String::new()
    };
    println!(
        "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {}{} |",
        a.label, s.mode, s.achieved, s.p[0], s.p[1], s.p[2], s.p[3], s.errors, ttfb
    );
    if let Some(e) = &s.first_error {
        eprintln!("{} {}: {} errors, first: {e}", a.label, s.mode, s.errors);
    }
    if let Some(path) = &a.json {
        let line = format!(
            r#"{{"scenario":{},"label":{},"mode":{},"rate":{},"achieved":{:.1},"n":{},"p50":{},"p90":{},"p99":{},"p999":{},"ttfb_p50":{},"ttfb_p99":{},"errors":{},"first_error":{}{extra}}}"#,
            serde_json::to_string(&a.scenario).unwrap(),
            serde_json::to_string(&a.label).unwrap(),
            serde_json::to_string(&s.mode).unwrap(),
            s.rate,
            s.achieved,
            s.n,
            num(s.p[0]),
            num(s.p[1]),
            num(s.p[2]),
            num(s.p[3]),
            num(s.ttfb[0]),
            num(s.ttfb[1]),
            s.errors,
            serde_json::to_string(&s.first_error).unwrap(),
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("json file");
        writeln!(f, "{line}").expect("write json");
    }
}

/// Highest rate with p99 under the bound: grow by half until a step fails, then bisect.
async fn search(client: &reqwest::Client, a: &Arc<Args>) {
    let ok = |s: &Stats| {
        s.p[2] <= a.p99_ms
            && (s.errors as f64) <= 0.001 * (s.n as f64).max(1.0)
            && s.achieved >= 0.97 * s.rate
    };
    let mut rate = if a.rate > 0.0 { a.rate } else { 500.0 };
    let (mut good, mut bad): (Option<Stats>, Option<f64>) = (None, None);
    for _ in 0..14 {
        let s = run(client, a, rate, a.warmup, a.duration).await;
        eprintln!(
            "  search {}: {:.0} rps -> achieved {:.0}, p99 {:.3} ms, errors {}",
            a.label, rate, s.achieved, s.p[2], s.errors
        );
        if ok(&s) {
            good = Some(s);
        } else {
            bad = Some(rate);
        }
        let g = good.as_ref().map_or(0.0, |s| s.rate);
        rate = match bad {
            None => (rate * 1.5).min(a.max_rate),
            Some(b) if g > 0.0 => (g + b) / 2.0,
            Some(b) => b / 2.0,
        };
        if let Some(b) = bad {
            if g > 0.0 && (b - g) <= 0.05 * g {
                break;
            }
            if g == 0.0 && b < 2.0 {
                break;
            }
        }
        if bad.is_none() && good.as_ref().is_some_and(|s| s.rate >= a.max_rate) {
            break;
        }
    }
    match good {
        Some(mut s) => {
            s.mode = format!("max rate, p99 < {} ms", a.p99_ms);
            report(a, &s, r#","max_rate":true"#);
        }
        None => {
            println!("| {} | no rate met p99 < {} ms | | | | | | |", a.label, a.p99_ms);
        }
    }
}

/// Opens `n` streams and holds them; prints how many opened and how long it took.
async fn open_streams(client: &reqwest::Client, a: &Arc<Args>) {
    let n = a.open_streams;
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let body = bytes::Bytes::from(a.body.clone());
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / a.ramp);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, a, body, opened, failed, first_error, mut stop) = (
            client.clone(),
            Arc::clone(a),
            body.clone(),
            Arc::clone(&opened),
            Arc::clone(&failed),
            Arc::clone(&first_error),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let fail = |e: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                first_error.lock().expect("lock").get_or_insert(e);
            };
            let mut r = match request(&client, &a, body).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => return fail(format!("status {}", r.status())),
                Err(e) => return fail(format!("send: {e}")),
            };
            match r.chunk().await {
                Ok(Some(_)) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => return fail("ended before the first byte".into()),
                Err(e) => return fail(format!("body: {e}")),
            }
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    c = r.chunk() => match c {
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let (ok, bad) = (opened.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    if let Some(e) = first_error.lock().expect("lock").as_ref() {
        eprintln!("{}: {bad} streams failed, first: {e}", a.label);
    }
    if let Some(path) = &a.ready_file {
        std::fs::write(path, format!("{ok} {bad} {:.1}\n", took.as_secs_f64())).expect("ready file");
    }
    tokio::time::sleep(Duration::from_secs_f64(a.hold_secs)).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    println!("{ok} {bad} {:.1}", took.as_secs_f64());
}

#[tokio::main]
async fn main() {
    let a = Arc::new(parse());
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs_f64(a.timeout))
        .build()
        .expect("client");
    if a.open_streams > 0 {
        open_streams(&client, &a).await;
    } else if a.search {
        search(&client, &a).await;
    } else {
        let s = run(&client, &a, a.rate, a.warmup, a.duration).await;
        report(&a, &s, "");
    }
}
