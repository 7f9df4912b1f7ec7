//! `loadgen`: open-loop load at a constant arrival rate (or closed-loop at a fixed concurrency),
//! reporting latency percentiles, errors and the achieved rate as one markdown table row.
//!
//! ```text
//! loadgen --url URL [--key KEY] [--body JSON | --body-file FILE] [--rate RPS | --concurrency N]
//!         [--duration SECS] [--warmup SECS] [--label TEXT] [--stream]
//! ```
//! Open loop: request i is due at `start + i / rate`; its latency counts from that instant, so time
//! spent waiting for a free connection or a slow server is included. With `--stream`, the row also has
//! the time to the first body byte.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

struct Args {
    url: String,
    key: Option<String>,
    body: String,
    rate: f64,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    label: String,
    stream: bool,
}

fn parse() -> Args {
    let mut a = Args {
        url: String::new(),
        key: None,
        body: r#"{"model":"gpt-test","messages":[{"role":"user","content":"hello there, how are you?"}]}"#
            .into(),
        rate: 0.0,
        concurrency: 1,
        duration: 10.0,
        warmup: 2.0,
        label: String::new(),
        stream: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--key" => a.key = Some(val()),
            "--body" => a.body = val(),
            "--body-file" => a.body = std::fs::read_to_string(val()).expect("body file"),
            "--rate" => a.rate = val().parse().expect("rate"),
            "--concurrency" => a.concurrency = val().parse().expect("concurrency"),
            "--duration" => a.duration = val().parse().expect("duration"),
            "--warmup" => a.warmup = val().parse().expect("warmup"),
            "--label" => a.label = val(),
            "--stream" => a.stream = true,
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
}

async fn one(
    client: &reqwest::Client,
    a: &Args,
    body: bytes::Bytes,
    due: Instant,
    out: &Mutex<Samples>,
    record: bool,
) {
    let mut req = client
        .post(&a.url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = &a.key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await;
    let (ok, ttfb) = match res {
        Ok(mut r) if r.status().is_success() => {
            let mut first = None;
            let mut ok = true;
            loop {
                match r.chunk().await {
                    Ok(Some(_)) => {
                        first.get_or_insert_with(|| due.elapsed());
                    }
                    Ok(None) => break,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            (ok, first)
        }
        _ => (false, None),
    };
    if !record {
        return;
    }
    let mut s = out.lock().expect("lock");
    if ok {
        s.total_us.push(due.elapsed().as_micros() as u64);
        if let Some(t) = ttfb {
            s.ttfb_us.push(t.as_micros() as u64);
        }
    } else {
        s.errors += 1;
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let a = Arc::new(parse());
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let body = bytes::Bytes::from(a.body.clone());
    let out = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(a.warmup);
    let end = warm_end + Duration::from_secs_f64(a.duration);
    if a.rate > 0.0 {
        // A plain thread paces the arrivals: tokio's timer wheel has 1 ms granularity, which would
        // add up to 1 ms of the driver's own lateness to every measured latency.
        let interval = Duration::from_secs_f64(1.0 / a.rate);
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
        let mut tasks = Vec::new();
        while let Some(due) = rx.recv().await {
            let (client, a, body, out) = (client.clone(), Arc::clone(&a), body.clone(), Arc::clone(&out));
            tasks.push(tokio::spawn(async move {
                one(&client, &a, body, due, &out, due >= warm_end).await
            }));
        }
        let _ = pacer.join();
        for t in tasks {
            let _ = t.await;
        }
    } else {
        let mut workers = Vec::new();
        for _ in 0..a.concurrency.max(1) {
            let (client, a, body, out) = (client.clone(), Arc::clone(&a), body.clone(), Arc::clone(&out));
            workers.push(tokio::spawn(async move {
                loop {
                    let due = Instant::now();
                    if due >= end {
                        break;
                    }
                    one(&client, &a, body.clone(), due, &out, due >= warm_end).await;
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
    let achieved = s.total_us.len() as f64 / a.duration;
    let mode = if a.rate > 0.0 {
        format!("{} rps open", a.rate)
    } else {
        format!("c={} closed", a.concurrency)
    };
    let ttfb = if a.stream {
        format!(" | {:.3} | {:.3}", pct(&s.ttfb_us, 50.0), pct(&s.ttfb_us, 99.0))
    } else {
        String::new()
    };
    println!(
        "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {}{} |",
        a.label,
        mode,
        achieved,
        pct(&s.total_us, 50.0),
        pct(&s.total_us, 90.0),
        pct(&s.total_us, 99.0),
        pct(&s.total_us, 99.9),
        s.errors,
        ttfb
    );
}
