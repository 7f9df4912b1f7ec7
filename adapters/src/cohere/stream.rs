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
    openai_out::{
        now_secs, Chunk, ChunkChoice, Delta as OutDelta, FunctionDelta, OpenAiUsage, ToolCallDelta,
    },
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct CohereStream {
    client_wants_usage: bool,
    id: String,
    /// The model the request went to (Cohere's stream does not name it).
    model: String,
    created: u64,
    role_sent: bool,
    /// (Cohere tool-call index, OpenAI tool-call index) of each call started.
    tool_calls: Vec<(u64, u32)>,
    usage: Option<Usage>,
    done: bool,
}

impl CohereStream {
    pub fn new(client_wants_usage: bool, model: &str) -> Self {
        CohereStream {
            client_wants_usage,
            id: String::new(),
            model: model.to_string(),
            created: now_secs(),
            role_sent: false,
            tool_calls: Vec::new(),
            usage: None,
            done: false,
        }
    }

    fn push(
        &mut self,
        mut delta: OutDelta<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        if !self.role_sent {
            self.role_sent = true;
            delta.role = Some("assistant");
        }
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason,
        };
        self.write(vec![choice], None, out)
    }

    fn write(
        &self,
        choices: Vec<ChunkChoice<'_>>,
        usage: Option<OpenAiUsage>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        let bytes = serde_json::to_vec(&chunk).map_err(|e| AdapterError::StreamError(e.to_string()))?;
        out.push(Bytes::from(bytes));
        Ok(())
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
        self.push(delta, None, out)
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
        let tool = match self.tool_calls.iter().find(|(c, _)| *c == index) {
            Some((_, t)) if !start => *t,
            Some(_) => {
                return Err(AdapterError::BadUpstreamBody(format!(
                    "tool call {index} started twice"
                )))
            }
            None if start => {
                let t = u32::try_from(self.tool_calls.len()).unwrap_or(u32::MAX);
                self.tool_calls.push((index, t));
                t
            }
            None => {
                return Err(AdapterError::BadUpstreamBody(format!(
                    "tool call {index} was never started"
                )))
            }
        };
        let (id, name) = if start {
            let id = call.get("id").and_then(Value::as_str);
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            match (id, name) {
                (Some(id), Some(name)) => (Some(Cow::Borrowed(id)), Some(name)),
                _ => {
                    return Err(AdapterError::BadUpstreamBody(
                        "tool-call-start without id or name".into(),
                    ))
                }
            }
        } else if arguments.is_empty() {
            return Ok(());
        } else {
            (None, None)
        };
        let delta = OutDelta {
            tool_calls: vec![ToolCallDelta {
                index: tool,
                kind: id.as_ref().map(|_| "function"),
                id,
                function: FunctionDelta {
                    name,
                    arguments: Cow::Borrowed(arguments),
                },
            }],
            ..OutDelta::default()
        };
        self.push(delta, None, out)
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
        self.push(OutDelta::default(), Some(finish), out)?;
        if self.client_wants_usage {
            if let Some(usage) = self.usage() {
                self.write(Vec::new(), Some(OpenAiUsage::from(&usage)), out)?;
            }
        }
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
                    self.id = id;
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
        (!self.model.is_empty()).then_some(self.model.as_str())
    }

    fn finished(&self) -> bool {
        self.done
    }
}
