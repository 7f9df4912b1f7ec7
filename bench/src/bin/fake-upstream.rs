//! `fake-upstream ADDR`: serves the fake OpenAI provider (see `tollgate_tests::fake`) until killed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let fake = tollgate_tests::fake::FakeProvider::start_on(&addr).await;
    eprintln!("fake upstream on {}", fake.addr);
    // Keep the request log from growing without bound during long runs.
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        fake.state.requests.lock().expect("lock").clear();
        fake.state.cancellations.lock().expect("lock").clear();
    }
}
