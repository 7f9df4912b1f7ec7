//! Test support for Tollgate's end-to-end tests: a fake OpenAI-compatible provider ([`fake`]) that
//! speaks the real wire format (JSON answers, SSE streams, error bodies), and a harness ([`gateway`])
//! that runs the real `tollgate` binary against it. The fakes share one server start and request
//! recorder ([`fake::serve`], [`fake::Requests`]); the end-to-end tests share SSE reading, spec lookup
//! and the runners of the Python spec validators and SDK scripts ([`e2e`]).

// Test support: failing loudly is the point.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod clickhouse;
pub mod conformance;
pub mod e2e;
pub mod env;
pub mod fake;
pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_cohere;
pub mod fake_gemini;
pub mod fake_vertex;
pub mod gateway;
pub mod redis;
