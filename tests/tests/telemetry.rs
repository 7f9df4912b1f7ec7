//! OpenTelemetry traces: a real OTLP/HTTP receiver (JSON encoding) in the test gets one SERVER span
//! per request and one CLIENT span per upstream attempt, with GenAI attributes, continuing the
//! client's W3C traceparent and propagating it upstream.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{routing::post, Json, Router};
use serde_json::{json, Value};
use tollgate_tests::{
    fake::FakeProvider,
    gateway::{Gateway, PROVIDER_KEY},
};

/// Collects every span posted to `/v1/traces`.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&spans);
    let app = Router::new().route(
        "/v1/traces",
        post(move |Json(body): Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                    assert_eq!(
                        rs["resource"]["attributes"][0]["value"]["stringValue"],
                        "tollgate-test"
                    );
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        sink.lock()
                            .unwrap()
                            .extend(ss["spans"].as_array().cloned().unwrap_or_default());
                    }
                }
                Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test]
async fn requests_and_upstream_attempts_are_traced_with_gen_ai_attributes() {
    let (endpoint, spans) = receiver().await;
    let fake = FakeProvider::start().await;
    let extra = format!(
        "[[models]]\nname = \"flaky\"\ntargets = [{{ provider = \"fake\", model = \"fail-500\" }}, {{ provider = \"fake\", model = \"up-gpt\" }}]\n\
         [telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"tollgate-test\"\n"
    );
    let gw = Gateway::start_standard(&fake.base_url(), &extra).await;
    let key = gw.create_key(&[]).await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{client_trace}-00f067aa0ba902b7-01"))
        .json(&json!({"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let mut all = Vec::new();
    for _ in 0..60 {
        all = spans.lock().unwrap().clone();
        if all.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 3, "one server span and two attempts: {all:#?}");
    let server = all.iter().find(|s| s["kind"] == 2).expect("server span");
    assert_eq!(server["name"], "chat flaky");
    assert_eq!(server["traceId"], client_trace);
    assert_eq!(
        server["parentSpanId"], "00f067aa0ba902b7",
        "continues the client's trace"
    );
    assert_eq!(
        attr(server, "gen_ai.operation.name").unwrap()["stringValue"],
        "chat"
    );
    assert_eq!(
        attr(server, "gen_ai.request.model").unwrap()["stringValue"],
        "flaky"
    );
    assert_eq!(
        attr(server, "gen_ai.response.model").unwrap()["stringValue"],
        "up-gpt"
    );
    assert_eq!(
        attr(server, "gen_ai.provider.name").unwrap()["stringValue"],
        "openai_compat"
    );
    assert_eq!(
        attr(server, "gen_ai.usage.input_tokens").unwrap()["intValue"],
        "11"
    );
    assert_eq!(
        attr(server, "gen_ai.usage.output_tokens").unwrap()["intValue"],
        "7"
    );
    assert_eq!(
        attr(server, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    let attempts: Vec<&Value> = all.iter().filter(|s| s["kind"] == 3).collect();
    assert!(attempts
        .iter()
        .all(|a| a["parentSpanId"] == server["spanId"] && a["traceId"] == client_trace));
    let failed = attempts
        .iter()
        .find(|a| a["name"] == "chat fail-500")
        .expect("first attempt");
    assert_eq!(failed["status"]["code"], 2);
    assert_eq!(
        attr(failed, "http.response.status_code").unwrap()["intValue"],
        "502"
    );
    let served = attempts
        .iter()
        .find(|a| a["name"] == "chat up-gpt")
        .expect("second attempt");
    // Each upstream request carried its attempt's traceparent.
    let sent: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1],
        format!("00-{client_trace}-{}-01", served["spanId"].as_str().unwrap())
    );
    // No secret in any span.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&key) && !text.contains(PROVIDER_KEY));
}
