//! Wire types shared by every Tollgate crate: the OpenAI error body, token usage and the canonical
//! usage event. Serde only, no I/O.
//!
//! Requests are deliberately *not* modelled as closed structs: Tollgate forwards every field a client
//! sends (including ones it does not know) to OpenAI-family upstreams, so requests travel as JSON maps
//! and only the fields Tollgate acts on are read from them.

pub mod error;
pub mod usage;

pub use error::{ErrorBody, ErrorDetail};
pub use usage::{Bodies, TokenUsage, UsageEvent, CLICKHOUSE_SCHEMA};
