//! Gemini `streamGenerateContent?alt=sse` -> OpenAI `chat.completion.chunk`s, one SSE event at a time.
//!
//! Every `data:` payload is a whole `GenerateContentResponse` (no event names, no `[DONE]`). Text,
//! thought and function-call parts become one chunk each (the first chunk of a choice carries
//! `role: assistant`). A function call arrives whole, so it becomes one `tool_calls` delta with id,
//! name and complete arguments; OpenAI's tool-call index counts the calls across the stream. A
//! `finishReason` gives a chunk with `finish_reason`; once every choice seen has finished the stream
//! is over (after a usage-only chunk when the client asked for one). `usageMetadata` is cumulative:
//! the last one seen is the usage. An `{"error": ...}` payload ends the stream with an error.
//!
//! Thought signatures: a function call's goes out in its tool call delta as
//! `provider_specific_fields.thought_signature`; thought parts go out as `reasoning_content` and as
//! `thinking_blocks` fragments, grouped per choice as `ThoughtBlocks` says (a signature in its own
//! fragment), as does the signature of a text part (often an empty one at the end of the stream).

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;
use tollgate_schemas::TokenUsage;

use super::{
    response::{arguments, call_id, finish_reason, token_usage, ThoughtBlocks, ThoughtStep},
    types::{GenerateContentResponse, UsageMetadata},
};
use crate::{
    openai_out::{ChunkChoice, ChunkWriter, Delta, ToolCallDelta},
    reasoning::ThinkingBlockDelta,
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// Per-choice progress.
#[derive(Debug, Clone, Copy)]
struct ChoiceState {
    index: u32,
    role_sent: bool,
    called_tools: bool,
    finished: bool,
    thoughts: ThoughtBlocks,
}

/// State of one translated stream.
pub struct GeminiStream {
    /// Chunk id and model (from the first response naming them); the role is per choice.
    chunks: ChunkWriter,
    choices: Vec<ChoiceState>,
    /// Function calls seen so far: the next call's OpenAI index.
    calls: u32,
    usage: Option<UsageMetadata>,
    done: bool,
}

impl GeminiStream {
    pub fn new(client_wants_usage: bool) -> Self {
        GeminiStream {
            chunks: ChunkWriter::new(client_wants_usage, String::new(), String::new()),
            choices: Vec::new(),
            calls: 0,
            usage: None,
            done: false,
        }
    }

    fn choice(&mut self, index: u32) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                self.choices.push(ChoiceState {
                    index,
                    role_sent: false,
                    called_tools: false,
                    finished: false,
                    thoughts: ThoughtBlocks::default(),
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    fn push(
        &mut self,
        index: u32,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let choice = self.choice_chunk(index, delta, finish_reason);
        self.chunks.write(vec![choice], None, out)
    }

    fn choice_chunk<'d>(
        &mut self,
        index: u32,
        delta: Delta<'d>,
        finish_reason: Option<&'static str>,
    ) -> ChunkChoice<'d> {
        ChunkWriter::choice_with(&mut self.choice(index).role_sent, index, delta, finish_reason)
    }

    /// A whole function call; its thought signature goes in the tool call's
    /// `provider_specific_fields`, which the shared delta type does not have.
    fn push_call(
        &mut self,
        index: u32,
        delta: Delta<'_>,
        signature: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let Some(signature) = signature.filter(|s| !s.is_empty()) else {
            return self.push(index, delta, None, out);
        };
        let choice = self.choice_chunk(index, delta, None);
        let chunk = self.chunks.chunk(vec![choice], None);
        let err = |e: serde_json::Error| AdapterError::StreamError(e.to_string());
        let mut v = serde_json::to_value(&chunk).map_err(err)?;
        if let Some(Value::Object(call)) = v.pointer_mut("/choices/0/delta/tool_calls/0") {
            call.insert(
                "provider_specific_fields".to_string(),
                serde_json::json!({ "thought_signature": signature }),
            );
        }
        out.push(Bytes::from(serde_json::to_vec(&v).map_err(err)?));
        Ok(())
    }

    /// `thinking_blocks` fragments (and reasoning text) for what `part` did to the thought blocks.
    fn push_thought(
        &mut self,
        index: u32,
        step: ThoughtStep<'_>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let (block, signature) = match step {
            ThoughtStep::Nothing => return Ok(()),
            ThoughtStep::Thought {
                block,
                text,
                signature,
            } => {
                if !text.is_empty() {
                    self.push(index, Delta::reasoning(block, text), None, out)?;
                }
                (block, signature)
            }
            ThoughtStep::TextSignature { block, signature } => (block, Some(signature)),
        };
        match signature {
            Some(sig) => {
                let delta = Delta::thinking(ThinkingBlockDelta::signature(block, sig));
                self.push(index, delta, None, out)
            }
            None => Ok(()),
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if event.data.is_empty() || self.done {
            return Ok(());
        }
        let res: GenerateContentResponse = serde_json::from_slice(&event.data)
            .map_err(|e| AdapterError::BadUpstreamBody(format!("stream event: {e}")))?;
        if let Some(error) = res.error {
            let message = error
                .message
                .or(error.status)
                .unwrap_or_else(|| "upstream stream error".to_string());
            return Err(AdapterError::StreamError(message));
        }
        if self.chunks.id.is_empty() {
            self.chunks.id = res.response_id.unwrap_or_default();
        }
        if let Some(m) = res.model_version.filter(|m| !m.is_empty()) {
            self.chunks.model = m;
        }
        if let Some(u) = res.usage_metadata {
            self.usage = Some(u);
        }
        for (pos, c) in res.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(u32::try_from(pos).unwrap_or(u32::MAX));
            for part in c.content.iter().flat_map(|c| &c.parts) {
                let step = self.choice(index).thoughts.step(part);
                if let Some(f) = &part.function_call {
                    let args =
                        arguments(f.args.as_ref()).map_err(|e| AdapterError::StreamError(e.to_string()))?;
                    let id = Cow::Owned(call_id(self.calls as usize));
                    let call = ToolCallDelta::start(self.calls, id, &f.name, Cow::Owned(args));
                    self.calls += 1;
                    self.choice(index).called_tools = true;
                    let delta = Delta::tool_call(call);
                    self.push_call(index, delta, part.thought_signature.as_deref(), out)?;
                    continue;
                }
                if !part.thought {
                    if let Some(t) = part.text.as_deref().filter(|t| !t.is_empty()) {
                        self.push(index, Delta::content(t), None, out)?;
                    }
                }
                self.push_thought(index, step, out)?;
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let state = self.choice(index);
                state.finished = true;
                let finish = match finish_reason(reason) {
                    "stop" if state.called_tools => "tool_calls",
                    other => other,
                };
                self.push(index, Delta::default(), Some(finish), out)?;
            }
        }
        let blocked = res.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_ref());
        if res.candidates.is_empty() && blocked.is_some() {
            self.choice(0).finished = true;
            self.push(0, Delta::default(), Some("content_filter"), out)?;
        }
        if !self.choices.is_empty() && self.choices.iter().all(|c| c.finished) {
            self.chunks.usage(self.usage(), out)?;
            self.done = true;
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
