//! Cohere v2 chat stream -> OpenAI `chat.completion.chunk`s, one SSE event at a time.
//!
//! `message-start` gives the id; `content-delta` text becomes `content` and thinking becomes
//! `reasoning_content`; `tool-plan-delta` is text too (see `response.rs`); `tool-call-start` opens a
//! tool call (id, name, any first arguments) and `tool-call-delta` streams its arguments, each under
//! the OpenAI index of its call (numbered 0, 1, ... in the order the calls start); `message-end`
//! gives the finish reason (a chunk with `finish_reason`) and the usage, then a usage-only chunk when
//! the client asked for one. A `message-end` with `ERROR`/`TIMEOUT` (or an `error`) is a stream
//! error. `content-end`, `tool-call-end`, citations and `debug` carry nothing to forward.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;
use tollgate_schemas::TokenUsage;

use super::{
    response::{finish_reason, token_usage},
    types::{Delta, StreamEvent, Usage},
};
use crate::{
    openai_out::{ChunkWriter, Delta as OutDelta, Numbering, ToolCallDelta},
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct CohereStream {
    /// Chunk id, model (the one the request went to: Cohere's stream does not name it) and role.
    chunks: ChunkWriter,
    /// OpenAI tool-call index of each Cohere tool-call index, numbered as the calls start.
    tool_calls: Numbering,
    usage: Option<Usage>,
    done: bool,
}

impl CohereStream {
    pub fn new(client_wants_usage: bool, model: &str) -> Self {
        CohereStream {
            chunks: ChunkWriter::new(client_wants_usage, String::new(), model.to_string()),
            tool_calls: Numbering::default(),
            usage: None,
            done: false,
        }
    }

    fn text(
        &mut self,
        content: Option<&str>,
        reasoning: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let content = content.filter(|t| !t.is_empty());
        let reasoning = reasoning.filter(|t| !t.is_empty());
        if content.is_none() && reasoning.is_none() {
            return Ok(());
        }
        let delta = OutDelta {
            content,
            reasoning_content: reasoning,
            ..OutDelta::default()
        };
        self.chunks.push(delta, None, out)
    }

    fn tool_call(
        &mut self,
        index: u64,
        call: &Value,
        start: bool,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let function = call.get("function");
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tool = match self.tool_calls.get(index) {
            Some(t) if !start => t,
            Some(_) => {
                return Err(AdapterError::BadUpstreamBody(format!(
                    "tool call {index} started twice"
                )))
            }
            None if start => self.tool_calls.assign(index),
            None => {
                return Err(AdapterError::BadUpstreamBody(format!(
                    "tool call {index} was never started"
                )))
            }
        };
        let call = if start {
            let id = call.get("id").and_then(Value::as_str);
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            match (id, name) {
                (Some(id), Some(name)) => {
                    ToolCallDelta::start(tool, Cow::Borrowed(id), name, Cow::Borrowed(arguments))
                }
                _ => {
                    return Err(AdapterError::BadUpstreamBody(
                        "tool-call-start without id or name".into(),
                    ))
                }
            }
        } else if arguments.is_empty() {
            return Ok(());
        } else {
            ToolCallDelta::arguments(tool, arguments)
        };
        self.chunks.push(OutDelta::tool_call(call), None, out)
    }

    fn end(&mut self, delta: Delta, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if let Some(u) = delta.usage {
            self.usage = Some(u);
        }
        let reason = delta.finish_reason.as_deref().unwrap_or("COMPLETE");
        let finish = match (finish_reason(reason), delta.error) {
            (Some(finish), None) => finish,
            (_, Some(error)) if !error.is_empty() => return Err(AdapterError::StreamError(error)),
            _ => {
                return Err(AdapterError::StreamError(format!(
                    "cohere ended the generation with {reason}"
                )))
            }
        };
        self.chunks.push(OutDelta::default(), Some(finish), out)?;
        self.chunks.usage(self.usage(), out)?;
        self.done = true;
        Ok(())
    }
}

impl StreamTranslator for CohereStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if event.data.is_empty() || self.done || &event.data[..] == b"[DONE]" {
            return Ok(());
        }
        let parsed: StreamEvent = serde_json::from_slice(&event.data)
            .map_err(|e| AdapterError::BadUpstreamBody(format!("stream event: {e}")))?;
        let delta = parsed.delta.unwrap_or_default();
        let message = delta.message.as_ref();
        match parsed.kind.as_str() {
            "message-start" => {
                if let Some(id) = parsed.id {
                    self.chunks.id = id;
                }
            }
            "content-start" | "content-delta" => {
                let content = message.and_then(|m| m.content.as_ref());
                let field = |name: &str| content.and_then(|c| c.get(name)).and_then(Value::as_str);
                self.text(field("text"), field("thinking"), out)?;
            }
            "tool-plan-delta" => {
                self.text(message.and_then(|m| m.tool_plan.as_deref()), None, out)?;
            }
            kind @ ("tool-call-start" | "tool-call-delta") => {
                let call = message
                    .and_then(|m| m.tool_calls.as_ref())
                    .unwrap_or(&Value::Null);
                self.tool_call(parsed.index.unwrap_or(0), call, kind == "tool-call-start", out)?;
            }
            "message-end" => self.end(delta, out)?,
            // content-end, tool-call-end, citation-start/end, debug and later additions.
            _ => {}
        }
        Ok(())
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage.as_ref().map(token_usage)
    }

    fn model(&self) -> Option<&str> {
        self.chunks.model()
    }

    fn finished(&self) -> bool {
        self.done
    }
}
