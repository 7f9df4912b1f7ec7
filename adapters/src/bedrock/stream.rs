//! Bedrock `ConverseStream` events -> OpenAI `chat.completion.chunk`s, one decoded event-stream
//! message at a time (the [`Framer`](crate::eventstream::Framer) names each by its `:event-type`).
//!
//! `messageStart` opens the stream; text, reasoning text and tool-input deltas become one chunk each
//! (the first carries `role: assistant`); a `toolUse` block start becomes the tool call's first
//! chunk (id, name, empty arguments), and one that stops without having streamed input gets `{}`
//! arguments, as in a non-streamed answer. OpenAI numbers tool calls 0, 1, ... while Bedrock numbers all
//! content blocks, so the tool-call index is kept per block. Reasoning goes out twice: as
//! `reasoning_content` text, and as `thinking_blocks` fragments numbered per reasoning block (text,
//! then the signature in its own fragment; redacted reasoning whole), so the client can send the
//! signed blocks back (see `reasoning.rs`). `messageStop` gives the finish reason;
//! `metadata`, the last event, gives the usage (a usage-only chunk when the client asked) and ends the
//! stream. Exceptions (`throttlingException`, `modelStreamErrorException`, ...) and `error` messages
//! are stream errors.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tollgate_schemas::TokenUsage;

use super::{
    response::{completion_id, finish_reason, token_usage},
    types::{
        ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent, ErrorBody, MessageStopEvent,
        MetadataEvent, Usage,
    },
};
use crate::{
    eventstream::{ERROR_PREFIX, EXCEPTION_PREFIX},
    openai_out::{ChunkWriter, Delta, Numbering, ToolCallDelta},
    reasoning::ThinkingBlockDelta,
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct BedrockStream {
    /// Chunk id (made up: Converse has none), model (the one the request went to) and role.
    chunks: ChunkWriter,
    /// OpenAI tool-call index of each `toolUse` block (by Bedrock block index).
    tool_blocks: Numbering,
    /// The `toolUse` blocks that streamed some input (the others get `{}` when they stop).
    tool_input_seen: std::collections::HashSet<u64>,
    /// `thinking_blocks` index of each reasoning block.
    thinking_blocks: Numbering,
    stopped: bool,
    usage: Option<Usage>,
    done: bool,
}

fn parse<T: DeserializeOwned>(event: &SseEvent, name: &str) -> Result<T, AdapterError> {
    serde_json::from_slice(&event.data)
        .map_err(|e| AdapterError::BadUpstreamBody(format!("{name} event: {e}")))
}

impl BedrockStream {
    /// `model` is the model id the request went to (Converse streams do not name it).
    pub fn new(client_wants_usage: bool, model: &str) -> Self {
        BedrockStream {
            chunks: ChunkWriter::new(client_wants_usage, completion_id(), model.to_string()),
            tool_blocks: Numbering::default(),
            tool_input_seen: std::collections::HashSet::new(),
            thinking_blocks: Numbering::default(),
            stopped: false,
            usage: None,
            done: false,
        }
    }
}

impl StreamTranslator for BedrockStream {
    fn on_event(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if self.done {
            return Ok(());
        }
        let name = event.event.as_deref().unwrap_or_default();
        if let Some(kind) = name
            .strip_prefix(EXCEPTION_PREFIX)
            .or_else(|| name.strip_prefix(ERROR_PREFIX))
        {
            let body: ErrorBody = serde_json::from_slice(&event.data).unwrap_or_default();
            let message = match body.message {
                Some(m) => format!("{kind}: {m}"),
                None => kind.to_string(),
            };
            return Err(AdapterError::StreamError(message));
        }
        match name {
            "messageStart" => {}
            "contentBlockStart" => {
                let start: ContentBlockStartEvent = parse(event, name)?;
                if let Some(tool) = start.start.tool_use {
                    let index = self.tool_blocks.assign(start.content_block_index);
                    let id = Cow::Borrowed(tool.tool_use_id.as_str());
                    let call = ToolCallDelta::start(index, id, &tool.name, Cow::Borrowed(""));
                    self.chunks.push(Delta::tool_call(call), None, out)?;
                }
            }
            "contentBlockDelta" => {
                let d: ContentBlockDeltaEvent = parse(event, name)?;
                if let Some(text) = d.delta.text.as_deref().filter(|t| !t.is_empty()) {
                    self.chunks.push(Delta::content(text), None, out)?;
                }
                if let Some(r) = &d.delta.reasoning_content {
                    let block = self.thinking_blocks.get_or_assign(d.content_block_index);
                    let fragment = match (&r.text, &r.signature, &r.redacted_content) {
                        (Some(t), _, _) if !t.is_empty() => Some(Delta::reasoning(block, t)),
                        (_, Some(sig), _) if !sig.is_empty() => {
                            Some(Delta::thinking(ThinkingBlockDelta::signature(block, sig)))
                        }
                        (_, _, Some(data)) if !data.is_empty() => {
                            Some(Delta::thinking(ThinkingBlockDelta::redacted(block, data)))
                        }
                        _ => None,
                    };
                    if let Some(delta) = fragment {
                        self.chunks.push(delta, None, out)?;
                    }
                }
                if let Some(input) = d.delta.tool_use.as_ref().map(|t| t.input.as_str()) {
                    let tool = self.tool_blocks.get(d.content_block_index).ok_or_else(|| {
                        AdapterError::BadUpstreamBody(format!(
                            "tool input for block {} that started no tool use",
                            d.content_block_index
                        ))
                    })?;
                    if !input.is_empty() {
                        self.tool_input_seen.insert(d.content_block_index);
                        let call = ToolCallDelta::arguments(tool, input);
                        self.chunks.push(Delta::tool_call(call), None, out)?;
                    }
                }
            }
            "messageStop" => {
                let stop: MessageStopEvent = parse(event, name)?;
                self.stopped = true;
                let finish = Some(finish_reason(&stop.stop_reason));
                self.chunks.push(Delta::default(), finish, out)?;
            }
            "metadata" => {
                let meta: MetadataEvent = parse(event, name)?;
                if let Some(u) = meta.usage {
                    self.usage = Some(u);
                }
                // Metadata follows messageStop and closes the stream.
                if self.stopped {
                    self.chunks.usage(self.usage(), out)?;
                    self.done = true;
                }
            }
            "contentBlockStop" => {
                // A tool without parameters streams no input: its arguments must still be `{}`
                // (as in a non-streamed answer), which is what clients parse.
                let stop: ContentBlockStopEvent = parse(event, name)?;
                let index = stop.content_block_index;
                if let Some(tool) = self
                    .tool_blocks
                    .get(index)
                    .filter(|_| !self.tool_input_seen.contains(&index))
                {
                    self.tool_input_seen.insert(index);
                    let call = ToolCallDelta::arguments(tool, "{}");
                    self.chunks.push(Delta::tool_call(call), None, out)?;
                }
            }
            // Events added later.
            _ => {}
        }
        Ok(())
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage.as_ref().map(token_usage)
    }

    fn model(&self) -> Option<&str> {
        None
    }

    fn finished(&self) -> bool {
        self.done
    }
}
