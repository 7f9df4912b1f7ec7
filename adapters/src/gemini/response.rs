//! Gemini `GenerateContentResponse` -> OpenAI `chat.completion`, and the usage and finish-reason
//! mappings the stream translator shares.

use std::borrow::Cow;

use serde_json::Value;
use tollgate_schemas::TokenUsage;

use super::types::{GenerateContentResponse, OutPart, UsageMetadata};
pub(crate) use crate::openai_out::ProviderFields;
use crate::{
    openai_out::{completion_bytes, Answer, ToolCall},
    reasoning::ThinkingBlock,
    AdapterError, Parsed,
};

/// OpenAI's `finish_reason` for a Gemini `finishReason` (`tool_calls` is decided by the caller).
pub(crate) fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        // STOP, LANGUAGE, OTHER, MALFORMED_FUNCTION_CALL and reasons added later.
        _ => "stop",
    }
}

/// Gemini's prompt count includes cached tokens; thoughts are billed as output beside the
/// candidates, so OpenAI's completion count is candidates + thoughts.
pub(crate) fn token_usage(u: &UsageMetadata) -> TokenUsage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    TokenUsage {
        input: u.prompt_token_count.unwrap_or(0),
        output: u.candidates_token_count.unwrap_or(0).saturating_add(thoughts),
        cached_input: u.cached_content_token_count.unwrap_or(0),
        cache_write_input: 0,
        reasoning: thoughts,
    }
}

/// The OpenAI id of the `n`th function call of an answer: deterministic within the answer.
pub(crate) fn call_id(n: usize) -> String {
    format!("call_{n}")
}

/// Compact JSON of a function call's `args` (`{}` when absent).
pub(crate) fn arguments(args: Option<&Value>) -> Result<String, serde_json::Error> {
    match args {
        None | Some(Value::Null) => Ok("{}".to_string()),
        Some(v) => serde_json::to_string(v),
    }
}

/// Groups an answer's thought parts and signatures into `thinking_blocks`, the same way for answers
/// and streams: consecutive thought parts make one block until one of them carries a signature (which
/// closes it); the signature of a text part becomes a block of its own with empty `thinking`, so it
/// can be put back on the answer's text. Function calls keep theirs in the tool call instead.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ThoughtBlocks {
    /// Blocks started so far.
    pub count: u32,
    /// The block later thought parts continue, if it is still open.
    pub open: Option<u32>,
}

/// What a part does to the thinking blocks.
pub(crate) enum ThoughtStep<'a> {
    Nothing,
    /// Thought text (maybe empty) for block `block`, then its closing signature if any.
    Thought {
        block: u32,
        text: &'a str,
        signature: Option<&'a str>,
    },
    /// A text part's signature: a new block `block`.
    TextSignature {
        block: u32,
        signature: &'a str,
    },
}

impl ThoughtBlocks {
    pub(crate) fn step<'p>(&mut self, part: &'p OutPart) -> ThoughtStep<'p> {
        let signature = part.thought_signature.as_deref().filter(|s| !s.is_empty());
        if part.function_call.is_some() {
            self.open = None;
            return ThoughtStep::Nothing;
        }
        let text = part.text.as_deref().unwrap_or_default();
        if part.thought && text.is_empty() && signature.is_none() {
            return ThoughtStep::Nothing;
        }
        if part.thought {
            let block = match self.open {
                Some(b) => b,
                None => self.start(),
            };
            self.open = signature.is_none().then_some(block);
            return ThoughtStep::Thought {
                block,
                text,
                signature,
            };
        }
        self.open = None;
        match signature {
            Some(signature) => ThoughtStep::TextSignature {
                block: self.start(),
                signature,
            },
            None => ThoughtStep::Nothing,
        }
    }

    fn start(&mut self) -> u32 {
        let b = self.count;
        self.count = self.count.saturating_add(1);
        b
    }
}

fn bad(e: impl std::fmt::Display) -> AdapterError {
    AdapterError::BadUpstreamBody(e.to_string())
}

/// Converts a non-streaming answer into OpenAI's `chat.completion` bytes. A prompt blocked before
/// any candidate (`promptFeedback.blockReason`) becomes one empty `content_filter` choice.
pub(crate) fn convert(body: &[u8]) -> Result<Parsed, AdapterError> {
    let res: GenerateContentResponse = serde_json::from_slice(body).map_err(bad)?;
    let mut calls = 0;
    let mut choices = Vec::with_capacity(res.candidates.len().max(1));
    for (i, c) in res.candidates.iter().enumerate() {
        let (mut answer, mut grouping) = (Answer::default(), ThoughtBlocks::default());
        for part in c.content.iter().flat_map(|c| &c.parts) {
            match grouping.step(part) {
                ThoughtStep::Nothing => {}
                ThoughtStep::Thought {
                    block,
                    text,
                    signature,
                } => {
                    if block as usize == answer.thinking_blocks.len() {
                        answer.thinking_blocks.push(ThinkingBlock::Thinking {
                            thinking: Cow::Borrowed(""),
                            signature: None,
                        });
                    }
                    if let Some(ThinkingBlock::Thinking {
                        thinking,
                        signature: sig,
                    }) = answer.thinking_blocks.last_mut()
                    {
                        thinking.to_mut().push_str(text);
                        *sig = signature.map(Cow::Borrowed);
                    }
                }
                ThoughtStep::TextSignature { signature, .. } => {
                    answer.thinking_blocks.push(ThinkingBlock::Thinking {
                        thinking: Cow::Borrowed(""),
                        signature: Some(Cow::Borrowed(signature)),
                    });
                }
            }
            match part {
                OutPart {
                    function_call: Some(f),
                    ..
                } => {
                    let call =
                        ToolCall::new(call_id(calls), &f.name, arguments(f.args.as_ref()).map_err(bad)?);
                    let fields = ProviderFields::of(part.thought_signature.as_deref());
                    answer.tool_calls.push(call.with_fields(fields));
                    calls += 1;
                }
                OutPart {
                    text: Some(t),
                    thought: true,
                    ..
                } => answer.push_reasoning(t),
                OutPart { text: Some(t), .. } => answer.text.push_str(t),
                _ => {}
            }
        }
        let reason = c.finish_reason.as_deref().unwrap_or("STOP");
        let finish = match finish_reason(reason) {
            "stop" if !answer.tool_calls.is_empty() => "tool_calls",
            other => other,
        };
        let index = c.index.unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
        choices.push(answer.choice(index, finish));
    }
    let blocked = res.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_ref());
    if choices.is_empty() && res.prompt_feedback.is_none() {
        // Neither an answer nor a blocked prompt: not a GenerateContentResponse.
        return Err(AdapterError::BadUpstreamBody(
            "the answer has no candidates and no promptFeedback".into(),
        ));
    }
    if choices.is_empty() && blocked.is_some() {
        choices.push(Answer::default().choice(0, "content_filter"));
    }
    let usage = token_usage(&res.usage_metadata.unwrap_or_default());
    let model = res.model_version.unwrap_or_default();
    let id = res.response_id.as_deref().unwrap_or_default();
    let body = completion_bytes(id, &model, choices, &usage)?;
    Ok(Parsed {
        body,
        usage: Some(usage),
        model: (!model.is_empty()).then_some(model),
    })
}
