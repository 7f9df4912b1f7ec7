//! `baseline-proxy LISTEN UPSTREAM`: the practical limit of a Rust reverse proxy on this machine. It
//! does what any gateway must and nothing else: accept HTTP/1.1, forward the request (method, path,
//! headers, body streamed) to `UPSTREAM` (`http://host:port`) over a keep-alive connection pool, and
//! stream the answer back. `TCP_NODELAY` on both sides. No auth, no parsing, no limits, no logging.
//!
//! Tollgate's figures are compared with this one's: the difference is the cost of Tollgate's features.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};

type Body = BoxBody<Bytes, hyper::Error>;

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = match format!("{upstream}{path}").parse() {
        Ok(u) => u,
        Err(_) => return Ok(bad_gateway()),
    };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.remove(hyper::header::HOST);
    h.remove(hyper::header::CONNECTION);
    match client.request(req).await {
        Ok(res) => Ok(res.map(BodyExt::boxed)),
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<Body> {
    Response::builder()
        .status(502)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from_static(br#"{"error":{"message":"upstream failed","type":"upstream_error","param":null,"code":null}}"#))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:19400".into());
    let upstream: &'static str = Box::leak(
        args.next()
            .unwrap_or_else(|| "http://127.0.0.1:19100".into())
            .trim_end_matches('/')
            .to_string()
            .into_boxed_str(),
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    eprintln!("baseline proxy on {listen} -> {upstream}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
