//! Bedrock `ConverseStream` events -> OpenAI `chat.completion.chunk`s, one decoded event-stream
//! message at a time (the [`Framer`](crate::eventstream::Framer) names each by its `:event-type`).
//!
//! `messageStart` opens the stream; text, reasoning text and tool-input deltas become one chunk each
//! (the first carries `role: assistant`); a `toolUse` block start becomes the tool call's first
//! chunk (id, name, empty arguments). OpenAI numbers tool calls 0, 1, ... while Bedrock numbers all
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
        ContentBlockDeltaEvent, ContentBlockStartEvent, ErrorBody, MessageStopEvent, MetadataEvent, Usage,
    },
};
use crate::{
    eventstream::{ERROR_PREFIX, EXCEPTION_PREFIX},
    openai_out::{now_secs, Chunk, ChunkChoice, Delta, FunctionDelta, OpenAiUsage, ToolCallDelta},
    reasoning::ThinkingBlockDelta,
    stream::SseEvent,
    AdapterError, StreamTranslator,
};

/// State of one translated stream.
pub struct BedrockStream {
    client_wants_usage: bool,
    id: String,
    model: String,
    created: u64,
    role_sent: bool,
    /// (Bedrock block index, OpenAI tool-call index) of each `toolUse` block seen.
    tool_blocks: Vec<(u64, u32)>,
    /// (Bedrock block index, `thinking_blocks` index) of each reasoning block seen.
    thinking_blocks: Vec<(u64, u32)>,
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
            client_wants_usage,
            id: completion_id(),
            model: model.to_string(),
            created: now_secs(),
            role_sent: false,
            tool_blocks: Vec::new(),
            thinking_blocks: Vec::new(),
            stopped: false,
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
            model: &self.model,
            choices,
            usage,
        };
        let bytes = serde_json::to_vec(&chunk).map_err(|e| AdapterError::StreamError(e.to_string()))?;
        out.push(Bytes::from(bytes));
        Ok(())
    }

    fn tool_index(&self, block: u64) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }

    /// The `thinking_blocks` index of Bedrock block `block`, numbering it when new.
    fn thinking_index(&mut self, block: u64) -> u32 {
        if let Some((_, i)) = self.thinking_blocks.iter().find(|(b, _)| *b == block) {
            return *i;
        }
        let i = u32::try_from(self.thinking_blocks.len()).unwrap_or(u32::MAX);
        self.thinking_blocks.push((block, i));
        i
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        if self.client_wants_usage {
            if let Some(u) = self.usage() {
                self.write(Vec::new(), Some(OpenAiUsage::from(&u)), out)?;
            }
        }
        self.done = true;
        Ok(())
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
                    let index = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                    self.tool_blocks.push((start.content_block_index, index));
                    let call = ToolCallDelta {
                        index,
                        id: Some(Cow::Borrowed(&tool.tool_use_id)),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&tool.name),
                            arguments: Cow::Borrowed(""),
                        },
                    };
                    let delta = Delta {
                        tool_calls: vec![call],
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
            }
            "contentBlockDelta" => {
                let d: ContentBlockDeltaEvent = parse(event, name)?;
                if let Some(text) = d.delta.text.as_deref().filter(|t| !t.is_empty()) {
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    self.push(delta, None, out)?;
                }
                if let Some(r) = &d.delta.reasoning_content {
                    let block = self.thinking_index(d.content_block_index);
                    let fragment = match (&r.text, &r.signature, &r.redacted_content) {
                        (Some(t), _, _) if !t.is_empty() => Some(Delta {
                            reasoning_content: Some(t),
                            thinking_blocks: vec![ThinkingBlockDelta::text(block, t)],
                            ..Delta::default()
                        }),
                        (_, Some(sig), _) if !sig.is_empty() => Some(Delta {
                            thinking_blocks: vec![ThinkingBlockDelta::signature(block, sig)],
                            ..Delta::default()
                        }),
                        (_, _, Some(data)) if !data.is_empty() => Some(Delta {
                            thinking_blocks: vec![ThinkingBlockDelta::redacted(block, data)],
                            ..Delta::default()
                        }),
                        _ => None,
                    };
                    if let Some(delta) = fragment {
                        self.push(delta, None, out)?;
                    }
                }
                if let Some(input) = d.delta.tool_use.as_ref().map(|t| t.input.as_str()) {
                    let tool = self.tool_index(d.content_block_index).ok_or_else(|| {
                        AdapterError::BadUpstreamBody(format!(
                            "tool input for block {} that started no tool use",
                            d.content_block_index
                        ))
                    })?;
                    if !input.is_empty() {
                        let call = ToolCallDelta {
                            index: tool,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: Cow::Borrowed(input),
                            },
                        };
                        let delta = Delta {
                            tool_calls: vec![call],
                            ..Delta::default()
                        };
                        self.push(delta, None, out)?;
                    }
                }
            }
            "messageStop" => {
                let stop: MessageStopEvent = parse(event, name)?;
                self.stopped = true;
                self.push(Delta::default(), Some(finish_reason(&stop.stop_reason)), out)?;
            }
            "metadata" => {
                let meta: MetadataEvent = parse(event, name)?;
                if let Some(u) = meta.usage {
                    self.usage = Some(u);
                }
                // Metadata follows messageStop and closes the stream.
                if self.stopped {
                    self.finish(out)?;
                }
            }
            // contentBlockStop, and events added later.
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
