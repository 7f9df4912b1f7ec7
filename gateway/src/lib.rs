//! Tollgate, the gateway: configuration, the HTTP server, the upstream client, usage recording and the
//! admin API. `main.rs` only parses the command line and calls [`cli::run`]; tests build the app
//! in-process with [`app::build_state`] and [`app::router`].

pub mod admin;
pub mod analytics;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clickhouse;
pub mod config;
pub mod error;
pub mod gcp_auth;
pub mod jwt;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod routing;
pub mod spool;
pub mod telemetry;
pub mod tls;
pub mod usage;
