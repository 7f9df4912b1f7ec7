//! Provider adapters: pure conversion between the OpenAI request/response shapes Tollgate speaks to
//! clients and each provider's own API. No sockets here: an adapter builds the upstream request (URL,
//! headers, body), parses the upstream answer, converts one stream event at a time, and classifies
//! upstream errors. The gateway does the I/O, retries and accounting.
//!
//! Adding a provider: add a [`ProviderKind`] row in `registry.rs` and, if its API is not
//! OpenAI-compatible, a module implementing [`Adapter`] and [`StreamTranslator`].

mod adapter;
pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod echo;
pub mod eventstream;
pub mod gemini;
pub mod openai_compat;
mod openai_in;
mod openai_out;
mod reasoning;
mod registry;
pub mod stream;
#[cfg(test)]
mod testing;
pub mod vertex;

pub use adapter::{
    Adapter, AdapterError, Framing, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};
pub use registry::{AuthStyle, ProviderKind};
