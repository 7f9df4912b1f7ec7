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
    openai_out::{now_secs, Chunk, ChunkChoice, Delta, FunctionDelta, OpenAiUsage, ToolCallDelta},
    reasoning::ThinkingBlockDelta,
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct AnthropicStream {
    client_wants_usage: bool,
    id: String,
    model: Option<String>,
    created: u64,
    role_sent: bool,
    /// (Anthropic block index, OpenAI tool-call index) of each `tool_use` block seen.
    tool_blocks: Vec<(u64, u32)>,
    /// Block indices of the `tool_use` blocks that streamed some input JSON.
    tool_input_seen: Vec<u64>,
    /// (Anthropic block index, `thinking_blocks` index) of each thinking or redacted block seen.
    thinking_blocks: Vec<(u64, u32)>,
    usage: Option<Usage>,
    done: bool,
}

impl AnthropicStream {
    pub fn new(client_wants_usage: bool) -> Self {
        AnthropicStream {
            client_wants_usage,
            id: String::new(),
            model: None,
            created: now_secs(),
            role_sent: false,
            tool_blocks: Vec::new(),
            tool_input_seen: Vec::new(),
            thinking_blocks: Vec::new(),
            usage: None,
            done: false,
        }
    }

    fn push(
        &mut self,
        mut delta: Delta<'_>,
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
            model: self.model.as_deref().unwrap_or_default(),
            choices,
            usage,
        };
        let bytes = serde_json::to_vec(&chunk).map_err(|e| AdapterError::StreamError(e.to_string()))?;
        out.push(Bytes::from(bytes));
        Ok(())
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

    fn tool_index(&self, block: u64) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }

    fn thinking_index(&self, block: u64) -> Option<u32> {
        self.thinking_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }

    /// Numbers a new thinking (or redacted) block.
    fn start_thinking(&mut self, block: u64) -> u32 {
        let i = u32::try_from(self.thinking_blocks.len()).unwrap_or(u32::MAX);
        self.thinking_blocks.push((block, i));
        i
    }

    /// A thinking text fragment: `reasoning_content` and the block's `thinking_blocks` fragment.
    fn push_thinking(&mut self, block: u32, text: &str, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        let delta = Delta {
            reasoning_content: Some(text),
            thinking_blocks: vec![ThinkingBlockDelta::text(block, text)],
            ..Delta::default()
        };
        self.push(delta, None, out)
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
                self.id = message.id;
                self.model = Some(message.model).filter(|m| !m.is_empty());
                self.merge_usage(message.usage);
            }
            StreamEvent::ContentBlockStart { index, content_block } => match content_block {
                ContentBlock::ToolUse { id, name, .. } => {
                    let tool = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                    self.tool_blocks.push((index, tool));
                    let call = ToolCallDelta {
                        index: tool,
                        id: Some(Cow::Borrowed(&id)),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&name),
                            arguments: Cow::Borrowed(""),
                        },
                    };
                    let delta = Delta {
                        tool_calls: vec![call],
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                ContentBlock::Text { text } if !text.is_empty() => {
                    let delta = Delta {
                        content: Some(&text),
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                ContentBlock::Thinking { thinking, signature } => {
                    let block = self.start_thinking(index);
                    if !thinking.is_empty() {
                        self.push_thinking(block, &thinking, out)?;
                    }
                    if let Some(sig) = signature.as_deref().filter(|s| !s.is_empty()) {
                        let delta = Delta {
                            thinking_blocks: vec![ThinkingBlockDelta::signature(block, sig)],
                            ..Delta::default()
                        };
                        self.push(delta, None, out)?;
                    }
                }
                ContentBlock::RedactedThinking { data } => {
                    let block = self.start_thinking(index);
                    let delta = Delta {
                        thinking_blocks: vec![ThinkingBlockDelta::redacted(block, &data)],
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => {
                    let delta = Delta {
                        content: Some(&text),
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                BlockDelta::ThinkingDelta { thinking } => {
                    // A delta without its block start is numbered as a block of its own.
                    let block = match self.thinking_index(index) {
                        Some(b) => b,
                        None => self.start_thinking(index),
                    };
                    if !thinking.is_empty() {
                        self.push_thinking(block, &thinking, out)?;
                    }
                }
                BlockDelta::SignatureDelta { signature } => {
                    let block = match self.thinking_index(index) {
                        Some(b) => b,
                        None => self.start_thinking(index),
                    };
                    if !signature.is_empty() {
                        let delta = Delta {
                            thinking_blocks: vec![ThinkingBlockDelta::signature(block, &signature)],
                            ..Delta::default()
                        };
                        self.push(delta, None, out)?;
                    }
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    // Server-tool blocks stream input too; only client tool calls are forwarded.
                    let Some(tool) = self.tool_index(index).filter(|_| !partial_json.is_empty()) else {
                        return Ok(());
                    };
                    if !self.tool_input_seen.contains(&index) {
                        self.tool_input_seen.push(index);
                    }
                    let call = ToolCallDelta {
                        index: tool,
                        id: None,
                        kind: None,
                        function: FunctionDelta {
                            name: None,
                            arguments: Cow::Borrowed(&partial_json),
                        },
                    };
                    let delta = Delta {
                        tool_calls: vec![call],
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                BlockDelta::Other => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(u);
                }
                if let Some(reason) = delta.stop_reason.as_deref() {
                    self.push(Delta::default(), Some(finish_reason(reason)), out)?;
                }
            }
            StreamEvent::MessageStop => {
                if self.client_wants_usage {
                    if let Some(u) = self.usage() {
                        self.write(Vec::new(), Some(OpenAiUsage::from(&u)), out)?;
                    }
                }
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
                    .tool_index(index)
                    .filter(|_| !self.tool_input_seen.contains(&index))
                {
                    let call = ToolCallDelta {
                        index: tool,
                        id: None,
                        kind: None,
                        function: FunctionDelta {
                            name: None,
                            arguments: Cow::Borrowed("{}"),
                        },
                    };
                    let delta = Delta {
                        tool_calls: vec![call],
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
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
        self.model.as_deref()
    }

    fn finished(&self) -> bool {
        self.done
    }
}
