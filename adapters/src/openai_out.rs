//! The OpenAI shapes native adapters write: the `usage` object, the `chat.completion` (built from an
//! [`Answer`]), `chat.completion.chunk` pieces and
//! the [`ChunkWriter`] every stream translator writes them with (role chunk first, usage chunk only
//! when asked), and the [`Numbering`] of tool calls and thinking blocks. One definition for every
//! translating adapter (Anthropic, Bedrock, Cohere, Gemini).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use tollgate_schemas::TokenUsage;

use serde_json::Value;

use crate::{
    reasoning::{ThinkingBlock, ThinkingBlockDelta},
    AdapterError,
};

/// OpenAI's `usage` object.
#[derive(Debug, Serialize)]
pub(crate) struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

impl From<&TokenUsage> for OpenAiUsage {
    fn from(u: &TokenUsage) -> Self {
        OpenAiUsage {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: PromptDetails {
                cached_tokens: u.cached_input,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

/// Unix seconds for `created`.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One `chat.completion.chunk`.
#[derive(Serialize)]
pub(crate) struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: (),
    pub finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// The `thinking_blocks` extension (see `reasoning.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<crate::reasoning::ThinkingBlockDelta<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta<'a>>,
}

/// A tool call, or a fragment of one: `id`, `type` and `function.name` come with the first
/// fragment only.
#[derive(Serialize)]
pub(crate) struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Serialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: Cow<'a, str>,
}

/// One `chat.completion`; `choices` is an array (or a `Vec`) of [`Choice`]s.
#[derive(Serialize)]
pub(crate) struct Completion<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: C,
    usage: OpenAiUsage,
}

/// The `chat.completion` bytes of an answer with `choices` and `usage`, created now.
pub(crate) fn completion_bytes<C: Serialize>(
    id: &str,
    model: &str,
    choices: C,
    usage: &TokenUsage,
) -> Result<Bytes, AdapterError> {
    let completion = Completion {
        id,
        object: "chat.completion",
        created: now_secs(),
        model,
        choices,
        usage: OpenAiUsage::from(usage),
    };
    let bytes = serde_json::to_vec(&completion).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    Ok(Bytes::from(bytes))
}

/// One choice of a `chat.completion`.
#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    /// Thinking with its signatures, and redacted thinking, for the client to send back (see
    /// `reasoning.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingBlock<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    /// Cohere's citations (an extension field OpenAI clients ignore).
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    citations: &'a [Value],
}

/// A tool call of an answer.
#[derive(Serialize)]
pub(crate) struct ToolCall<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_specific_fields: Option<ProviderFields<'a>>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    arguments: Cow<'a, str>,
}

impl<'a> ToolCall<'a> {
    pub fn new(id: impl Into<Cow<'a, str>>, name: &'a str, arguments: impl Into<Cow<'a, str>>) -> Self {
        ToolCall {
            id: id.into(),
            kind: "function",
            function: FunctionCall {
                name,
                arguments: arguments.into(),
            },
            provider_specific_fields: None,
        }
    }

    /// With LiteLLM's `provider_specific_fields` (a Gemini thought signature), when there are any.
    pub fn with_fields(mut self, fields: Option<ProviderFields<'a>>) -> Self {
        self.provider_specific_fields = fields;
        self
    }
}

/// LiteLLM's `provider_specific_fields` of a tool call: the `thoughtSignature` of its Gemini part.
#[derive(Debug, Serialize)]
pub(crate) struct ProviderFields<'a> {
    pub thought_signature: &'a str,
}

impl<'a> ProviderFields<'a> {
    pub(crate) fn of(signature: Option<&'a str>) -> Option<Self> {
        signature
            .filter(|s| !s.is_empty())
            .map(|thought_signature| ProviderFields { thought_signature })
    }
}

/// An answer's assistant message as the translating adapters collect it, block by block.
#[derive(Default)]
pub(crate) struct Answer<'a> {
    /// The text (`content`).
    pub text: String,
    /// The thinking text (`reasoning_content`), when there is any.
    pub reasoning: Option<String>,
    pub thinking_blocks: Vec<ThinkingBlock<'a>>,
    pub tool_calls: Vec<ToolCall<'a>>,
    pub citations: &'a [Value],
}

impl<'a> Answer<'a> {
    /// Thinking text, added to `reasoning_content`.
    pub fn push_reasoning(&mut self, text: &str) {
        self.reasoning.get_or_insert_with(String::new).push_str(text);
    }

    /// A signed thinking block: its text to `reasoning_content`, and the block (with its
    /// signature, when not empty) to `thinking_blocks`.
    pub fn push_thinking(&mut self, thinking: &'a str, signature: Option<&'a str>) {
        self.push_reasoning(thinking);
        self.thinking_blocks.push(ThinkingBlock::Thinking {
            thinking: Cow::Borrowed(thinking),
            signature: signature.filter(|s| !s.is_empty()).map(Cow::Borrowed),
        });
    }

    /// A redacted thinking block.
    pub fn push_redacted(&mut self, data: &'a str) {
        self.thinking_blocks.push(ThinkingBlock::RedactedThinking {
            data: Cow::Borrowed(data),
        });
    }

    /// Choice `index` with this message. `content` is `null` only when the answer is tool calls
    /// and nothing else.
    pub fn choice(self, index: u32, finish_reason: &'a str) -> Choice<'a> {
        let content = (!self.text.is_empty() || self.tool_calls.is_empty()).then_some(self.text);
        Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: (),
                reasoning_content: self.reasoning,
                thinking_blocks: self.thinking_blocks,
                tool_calls: self.tool_calls,
                citations: self.citations,
            },
            logprobs: (),
            finish_reason,
        }
    }
}

impl<'a> Delta<'a> {
    /// A `content` fragment.
    pub fn content(text: &'a str) -> Self {
        Delta {
            content: Some(text),
            ..Delta::default()
        }
    }

    /// One `tool_calls` fragment.
    pub fn tool_call(call: ToolCallDelta<'a>) -> Self {
        Delta {
            tool_calls: vec![call],
            ..Delta::default()
        }
    }

    /// One `thinking_blocks` fragment (a signature or a redacted block).
    pub fn thinking(block: ThinkingBlockDelta<'a>) -> Self {
        Delta {
            thinking_blocks: vec![block],
            ..Delta::default()
        }
    }

    /// Thinking text: `reasoning_content`, and the same text as thinking block `block`'s fragment.
    pub fn reasoning(block: u32, text: &'a str) -> Self {
        Delta {
            reasoning_content: Some(text),
            thinking_blocks: vec![ThinkingBlockDelta::text(block, text)],
            ..Delta::default()
        }
    }
}

impl<'a> ToolCallDelta<'a> {
    /// The first fragment of tool call `index`: its id, type and name, and `arguments`.
    pub fn start(index: u32, id: Cow<'a, str>, name: &'a str, arguments: Cow<'a, str>) -> Self {
        ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments,
            },
        }
    }

    /// A later fragment of tool call `index`: more of its arguments.
    pub fn arguments(index: u32, arguments: &'a str) -> Self {
        ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments: Cow::Borrowed(arguments),
            },
        }
    }
}

/// Writes one stream's `chat.completion.chunk`s: every chunk carries the same id, model and
/// `created`; the first chunk of choice 0 carries `role: assistant`; the usage-only chunk goes out
/// only when the client asked for it (`stream_options.include_usage`).
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    client_wants_usage: bool,
    /// The completion id (empty until the provider names one).
    pub id: String,
    /// The model (empty when unknown).
    pub model: String,
    created: u64,
    role_sent: bool,
}

impl ChunkWriter {
    pub fn new(client_wants_usage: bool, id: String, model: String) -> Self {
        ChunkWriter {
            client_wants_usage,
            id,
            model,
            created: now_secs(),
            role_sent: false,
        }
    }

    /// The model, when known.
    pub fn model(&self) -> Option<&str> {
        (!self.model.is_empty()).then_some(self.model.as_str())
    }

    /// A chunk for choice 0 with `delta` and `finish_reason`.
    pub fn push(
        &mut self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let choice = self.choice(0, delta, finish_reason);
        self.write(vec![choice], None, out)
    }

    /// Choice `index` of a chunk; the first choice this writer makes carries the role.
    pub fn choice<'d>(
        &mut self,
        index: u32,
        delta: Delta<'d>,
        finish_reason: Option<&'static str>,
    ) -> ChunkChoice<'d> {
        Self::choice_with(&mut self.role_sent, index, delta, finish_reason)
    }

    /// Choice `index` of a chunk; `role_sent` is the choice's own flag (for streams of several
    /// choices).
    pub fn choice_with<'d>(
        role_sent: &mut bool,
        index: u32,
        mut delta: Delta<'d>,
        finish_reason: Option<&'static str>,
    ) -> ChunkChoice<'d> {
        if !*role_sent {
            *role_sent = true;
            delta.role = Some("assistant");
        }
        ChunkChoice {
            index,
            delta,
            logprobs: (),
            finish_reason,
        }
    }

    /// The chunk as it goes out, before it is written (for a provider that adds fields).
    pub fn chunk<'c>(&'c self, choices: Vec<ChunkChoice<'c>>, usage: Option<OpenAiUsage>) -> Chunk<'c> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }

    /// Writes one chunk of `choices` (and `usage`).
    pub fn write(
        &self,
        choices: Vec<ChunkChoice<'_>>,
        usage: Option<OpenAiUsage>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AdapterError> {
        let bytes = serde_json::to_vec(&self.chunk(choices, usage))
            .map_err(|e| AdapterError::StreamError(e.to_string()))?;
        out.push(Bytes::from(bytes));
        Ok(())
    }

    /// The usage-only chunk at the end of the stream, when the client asked for it and the usage
    /// is known.
    pub fn usage(&self, usage: Option<TokenUsage>, out: &mut Vec<Bytes>) -> Result<(), AdapterError> {
        match usage {
            Some(u) if self.client_wants_usage => self.write(Vec::new(), Some(OpenAiUsage::from(&u)), out),
            _ => Ok(()),
        }
    }
}

/// Numbers provider items (content blocks, tool calls) 0, 1, ... in the order they first appear,
/// as OpenAI numbers tool calls and thinking blocks, while providers number all their blocks.
/// A map, not a list: the provider decides how many items a stream has, and every delta looks its
/// item up.
#[derive(Debug, Default)]
pub(crate) struct Numbering {
    numbers: std::collections::HashMap<u64, u32>,
    assigned: u32,
}

impl Numbering {
    /// The number of provider item `item`, if it has one.
    pub fn get(&self, item: u64) -> Option<u32> {
        self.numbers.get(&item).copied()
    }

    /// Gives provider item `item` the next number (an item started twice keeps its first number
    /// for [`Numbering::get`]).
    pub fn assign(&mut self, item: u64) -> u32 {
        let i = self.assigned;
        self.assigned = self.assigned.saturating_add(1);
        self.numbers.entry(item).or_insert(i);
        i
    }

    /// The number of `item`, given now when it has none yet.
    pub fn get_or_assign(&mut self, item: u64) -> u32 {
        match self.get(item) {
            Some(i) => i,
            None => self.assign(item),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
    use serde_json::Value;

    use super::*;

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn numbering_many_items_is_linear() {
        // A provider decides how many blocks a stream has; each lookup used to scan them all.
        let n: u64 = 200_000;
        let started = std::time::Instant::now();
        let mut numbers = Numbering::default();
        for item in 0..n {
            assert_eq!(u64::from(numbers.assign(item * 3)), item);
        }
        for item in 0..n {
            assert_eq!(numbers.get(item * 3).map(u64::from), Some(item));
            assert_eq!(numbers.get_or_assign(item * 3), u32::try_from(item).unwrap());
        }
        assert_eq!(numbers.get(1), None);
        assert_eq!(u64::from(numbers.get_or_assign(1)), n);
        // A block started twice keeps its first number for its deltas.
        assert_eq!(u64::from(numbers.assign(0)), n + 1);
        assert_eq!(numbers.get(0), Some(0));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    }

    #[test]
    fn the_first_chunk_has_the_role_and_usage_goes_out_only_when_asked() {
        let mut out = Vec::new();
        let mut w = ChunkWriter::new(false, "id-1".into(), String::new());
        w.push(Delta::content("a"), None, &mut out).unwrap();
        w.push(Delta::default(), Some("stop"), &mut out).unwrap();
        let usage = TokenUsage {
            input: 3,
            output: 4,
            ..TokenUsage::default()
        };
        w.usage(Some(usage), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let first = json(&out[0]);
        assert_eq!(first["id"], "id-1");
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["delta"]["content"], "a");
        let second = json(&out[1]);
        assert!(second["choices"][0]["delta"].get("role").is_none());
        assert_eq!(second["choices"][0]["finish_reason"], "stop");
        assert_eq!(w.model(), None);

        let w = ChunkWriter::new(true, "id-2".into(), "m".into());
        w.usage(None, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        w.usage(Some(usage), &mut out).unwrap();
        let last = json(&out[2]);
        assert_eq!(last["choices"], serde_json::json!([]));
        assert_eq!(last["usage"]["total_tokens"], 7);
        assert_eq!(last["model"], "m");
    }

    #[test]
    fn an_answer_of_tool_calls_only_has_null_content() {
        let mut answer = Answer::default();
        answer.push_thinking("hm", Some(""));
        answer.push_redacted("xx");
        answer.tool_calls.push(ToolCall::new("c1", "f", "{}"));
        let usage = TokenUsage::default();
        let body = completion_bytes("id", "m", [answer.choice(0, "tool_calls")], &usage).unwrap();
        let v = json(&body);
        assert_eq!(v["object"], "chat.completion");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "hm");
        assert_eq!(
            message["thinking_blocks"],
            serde_json::json!([{"type": "thinking", "thinking": "hm"}, {"type": "redacted_thinking", "data": "xx"}])
        );
        assert_eq!(message["tool_calls"][0]["function"]["name"], "f");
        assert!(message.get("citations").is_none());
        let empty =
            json(&completion_bytes("id", "m", [Answer::default().choice(0, "stop")], &usage).unwrap());
        assert_eq!(empty["choices"][0]["message"]["content"], "");
        assert!(empty["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn numbering_counts_in_order_of_first_appearance() {
        let mut n = Numbering::default();
        assert_eq!(n.get(5), None);
        assert_eq!(n.assign(5), 0);
        assert_eq!(n.get_or_assign(2), 1);
        assert_eq!(n.get_or_assign(5), 0);
        assert_eq!(n.get(2), Some(1));
    }

    #[test]
    fn tool_call_fragments() {
        let start = serde_json::to_value(ToolCallDelta::start(
            1,
            Cow::Borrowed("c"),
            "f",
            Cow::Borrowed(""),
        ))
        .unwrap();
        assert_eq!(
            start,
            serde_json::json!({"index": 1, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        let more = serde_json::to_value(ToolCallDelta::arguments(1, "{}")).unwrap();
        assert_eq!(
            more,
            serde_json::json!({"index": 1, "function": {"arguments": "{}"}})
        );
    }
}
