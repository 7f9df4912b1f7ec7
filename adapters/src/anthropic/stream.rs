//! Anthropic Messages stream -> OpenAI `chat.completion.chunk`s, one SSE event at a time.
//!
//! `message_start` gives the id, model and input usage; text, thinking and tool-call argument deltas
//! become one chunk each (the first chunk carries `role: assistant`); `message_delta` gives the stop
//! reason (a chunk with `finish_reason`) and the cumulative output usage; `message_stop` ends the
//! stream, after a usage-only chunk when the client asked for one. OpenAI numbers tool calls 0, 1, ...
//! while Anthropic numbers all content blocks, so the tool-call index is kept per `tool_use` block.
//! Thinking goes out twice: as `reasoning_content` text, and as `thinking_blocks` fragments numbered
//! per thinking block (thinking text, then the `signature_delta` in its own fragment; a redacted
//! block whole), so the client can send the signed blocks back (see `reasoning.rs`).

use std::borrow::Cow;

use bytes::Bytes;
use tollgate_schemas::TokenUsage;

use super::{
    response::{finish_reason, token_usage},
    types::{BlockDelta, ContentBlock, StreamEvent, Usage},
};
use crate::{
    openai_out::{ChunkWriter, Delta, Numbering, ToolCallDelta},
    reasoning::ThinkingBlockDelta,
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct AnthropicStream {
    /// Chunk id and model (from `message_start`) and role.
    chunks: ChunkWriter,
    /// OpenAI tool-call index of each `tool_use` block (by Anthropic block index).
    tool_blocks: Numbering,
    /// Block indices of the `tool_use` blocks that streamed some input JSON.
    tool_input_seen: std::collections::HashSet<u64>,
    /// `thinking_blocks` index of each thinking or redacted block.
    thinking_blocks: Numbering,
    usage: Option<Usage>,
    done: bool,
}

impl AnthropicStream {
    pub fn new(client_wants_usage: bool) -> Self {
        AnthropicStream {
            chunks: ChunkWriter::new(client_wants_usage, String::new(), String::new()),
            tool_blocks: Numbering::default(),
            tool_input_seen: std::collections::HashSet::new(),
            thinking_blocks: Numbering::default(),
            usage: None,
            done: false,
        }
    }

    /// Stream usage is cumulative: later values replace earlier ones, absent ones are kept.
    fn merge_usage(&mut self, u: Usage) {
        let acc = self.usage.get_or_insert_with(Usage::default);
        for (slot, v) in [
            (&mut acc.input_tokens, u.input_tokens),
            (&mut acc.output_tokens, u.output_tokens),
            (
                &mut acc.cache_creation_input_tokens,
                u.cache_creation_input_tokens,
            ),
            (&mut acc.cache_read_input_tokens, u.cache_read_input_tokens),
        ] {
            if v.is_some() {
                *slot = v;
            }
        }
    }

    /// A thinking text fragment: `reasoning_content` and the block's `thinking_blocks` fragment.
    fn push_thinking(&mut self, block: u32, text: &str, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        self.chunks.push(Delta::reasoning(block, text), None, out)
    }
}

impl StreamTranslator for AnthropicStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if event.data.is_empty() || self.done {
            return Ok(());
        }
        let parsed: StreamEvent = serde_json::from_slice(&event.data)
            .map_err(|e| AdapterError::BadUpstreamBody(format!("stream event: {e}")))?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.chunks.id = message.id;
                self.chunks.model = message.model;
                self.merge_usage(message.usage);
            }
            StreamEvent::ContentBlockStart { index, content_block } => match content_block {
                ContentBlock::ToolUse { id, name, .. } => {
                    let tool = self.tool_blocks.assign(index);
                    let call = ToolCallDelta::start(tool, Cow::Borrowed(&id), &name, Cow::Borrowed(""));
                    self.chunks.push(Delta::tool_call(call), None, out)?;
                }
                ContentBlock::Text { text } if !text.is_empty() => {
                    self.chunks.push(Delta::content(&text), None, out)?;
                }
                ContentBlock::Thinking { thinking, signature } => {
                    let block = self.thinking_blocks.assign(index);
                    if !thinking.is_empty() {
                        self.push_thinking(block, &thinking, out)?;
                    }
                    if let Some(sig) = signature.as_deref().filter(|s| !s.is_empty()) {
                        let delta = Delta::thinking(ThinkingBlockDelta::signature(block, sig));
                        self.chunks.push(delta, None, out)?;
                    }
                }
                ContentBlock::RedactedThinking { data } => {
                    let block = self.thinking_blocks.assign(index);
                    let delta = Delta::thinking(ThinkingBlockDelta::redacted(block, &data));
                    self.chunks.push(delta, None, out)?;
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => {
                    self.chunks.push(Delta::content(&text), None, out)?;
                }
                BlockDelta::ThinkingDelta { thinking } => {
                    // A delta without its block start is numbered as a block of its own.
                    let block = self.thinking_blocks.get_or_assign(index);
                    if !thinking.is_empty() {
                        self.push_thinking(block, &thinking, out)?;
                    }
                }
                BlockDelta::SignatureDelta { signature } => {
                    let block = self.thinking_blocks.get_or_assign(index);
                    if !signature.is_empty() {
                        let delta = Delta::thinking(ThinkingBlockDelta::signature(block, &signature));
                        self.chunks.push(delta, None, out)?;
                    }
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    // Server-tool blocks stream input too; only client tool calls are forwarded.
                    let Some(tool) = self.tool_blocks.get(index).filter(|_| !partial_json.is_empty()) else {
                        return Ok(());
                    };
                    self.tool_input_seen.insert(index);
                    let call = ToolCallDelta::arguments(tool, &partial_json);
                    self.chunks.push(Delta::tool_call(call), None, out)?;
                }
                BlockDelta::Other => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(u);
                }
                if let Some(reason) = delta.stop_reason.as_deref() {
                    self.chunks
                        .push(Delta::default(), Some(finish_reason(reason)), out)?;
                }
            }
            StreamEvent::MessageStop => {
                self.chunks.usage(self.usage(), out)?;
                self.done = true;
            }
            StreamEvent::Error { error } => {
                let message = error
                    .message
                    .or(error.kind)
                    .unwrap_or_else(|| "upstream stream error".to_string());
                return Err(AdapterError::StreamError(message));
            }
            StreamEvent::ContentBlockStop { index: Some(index) } => {
                // A tool without parameters streams no input JSON at all (only an empty delta): its
                // arguments must still be `{}`, which is what clients parse.
                if let Some(tool) = self
                    .tool_blocks
                    .get(index)
                    .filter(|_| !self.tool_input_seen.contains(&index))
                {
                    let call = ToolCallDelta::arguments(tool, "{}");
                    self.chunks.push(Delta::tool_call(call), None, out)?;
                }
            }
            StreamEvent::ContentBlockStop { index: None } | StreamEvent::Ping | StreamEvent::Unknown => {}
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
