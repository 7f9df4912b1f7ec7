//! The `thinking_blocks` extension: how signed reasoning survives the round trip through an OpenAI
//! client, following LiteLLM's convention so clients written for it work unchanged.
//!
//! Answers carry the reasoning text in `reasoning_content` (for display) and, beside it,
//! `thinking_blocks`: the provider's reasoning blocks in provider order, each
//! `{"type":"thinking","thinking":"...","signature":"..."}` or `{"type":"redacted_thinking","data":"..."}`.
//! Stream deltas carry `thinking_blocks` fragments with an `index` (the block's number among the
//! answer's thinking blocks, 0, 1, ...): a client concatenates the `thinking` texts of one index; the
//! `signature` arrives in its own fragment when the block ends, a redacted block whole in one.
//!
//! Requests: an assistant message that carries `thinking_blocks` has them sent back natively
//! (Anthropic and Bedrock reasoning blocks before the assistant's text and tool calls). A thinking
//! block without a signature cannot be verified by the provider, so it is not sent back.
//!
//! Gemini signs parts rather than blocks; its `thoughtSignature` of a function call travels as the
//! tool call's `provider_specific_fields.thought_signature` (LiteLLM's field), see `gemini/mod.rs`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use crate::AdapterError;

/// One `thinking_blocks` entry of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ThinkingBlock<'a> {
    Thinking {
        thinking: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Cow<'a, str>>,
    },
    RedactedThinking {
        data: Cow<'a, str>,
    },
}

/// One `thinking_blocks` fragment of a stream delta: `index` says which block it continues.
#[derive(Debug, Serialize)]
pub(crate) struct ThinkingBlockDelta<'a> {
    pub index: u32,
    #[serde(flatten)]
    pub block: ThinkingBlock<'a>,
}

impl<'a> ThinkingBlockDelta<'a> {
    /// A text fragment of thinking block `index`.
    pub fn text(index: u32, thinking: &'a str) -> Self {
        ThinkingBlockDelta {
            index,
            block: ThinkingBlock::Thinking {
                thinking: Cow::Borrowed(thinking),
                signature: None,
            },
        }
    }

    /// The signature that closes thinking block `index` (with an empty text fragment).
    pub fn signature(index: u32, signature: &'a str) -> Self {
        ThinkingBlockDelta {
            index,
            block: ThinkingBlock::Thinking {
                thinking: Cow::Borrowed(""),
                signature: Some(Cow::Borrowed(signature)),
            },
        }
    }

    /// A redacted block, whole.
    pub fn redacted(index: u32, data: &'a str) -> Self {
        ThinkingBlockDelta {
            index,
            block: ThinkingBlock::RedactedThinking {
                data: Cow::Borrowed(data),
            },
        }
    }
}

/// A reasoning block a client sent back in an assistant message, ready to be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientThinking<'a> {
    /// Signed thinking (unsigned blocks are left out: no provider accepts them back).
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Redacted {
        data: &'a str,
    },
}

fn invalid(message: &str, param: String) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.to_string(),
        param: Some(param),
    }
}

/// The replayable `thinking_blocks` of assistant message `m` (at `at`, e.g. `messages[2]`), in order.
/// Refuses malformed entries by their path; leaves out thinking blocks without a signature.
pub(crate) fn client_thinking_blocks<'a>(
    m: &'a Value,
    at: &str,
) -> Result<Vec<ClientThinking<'a>>, AdapterError> {
    let list = match m.get("thinking_blocks") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(invalid(
                "`thinking_blocks` must be an array",
                format!("{at}.thinking_blocks"),
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, b) in list.iter().enumerate() {
        let param = format!("{at}.thinking_blocks[{j}]");
        let field = |name: &str| b.get(name).and_then(Value::as_str);
        match field("type") {
            Some("thinking") => {
                let Some(thinking) = field("thinking") else {
                    return Err(invalid("a thinking block needs `thinking`", param));
                };
                match b.get("signature") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s.is_empty() => {}
                    Some(Value::String(signature)) => {
                        out.push(ClientThinking::Thinking { thinking, signature })
                    }
                    Some(_) => {
                        return Err(invalid(
                            "a thinking block's `signature` must be a string",
                            format!("{param}.signature"),
                        ))
                    }
                }
            }
            Some("redacted_thinking") => match field("data").filter(|d| !d.is_empty()) {
                Some(data) => out.push(ClientThinking::Redacted { data }),
                None => return Err(invalid("a redacted_thinking block needs `data`", param)),
            },
            _ => {
                return Err(invalid(
                    "`thinking_blocks` entries must be of type thinking or redacted_thinking",
                    format!("{param}.type"),
                ))
            }
        }
    }
    Ok(out)
}

/// Test helper: the chunks' `thinking_blocks` fragments of choice 0 joined per `index`.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
// What a client concatenating the `thinking_blocks` fragments of `chunks` rebuilds: texts and
// signatures joined per `index`, in index order.
pub(crate) fn rebuild_thinking_blocks(chunks: &[serde_json::Value]) -> serde_json::Value {
    let mut blocks: Vec<serde_json::Value> = Vec::new();
    for frag in chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["thinking_blocks"].as_array())
        .flatten()
    {
        let i = frag["index"].as_u64().unwrap() as usize;
        if i == blocks.len() {
            let mut start = frag.clone();
            start.as_object_mut().unwrap().remove("index");
            blocks.push(start);
            continue;
        }
        assert!(
            i < blocks.len(),
            "fragment for block {i} before block {}",
            blocks.len()
        );
        let block = blocks[i].as_object_mut().unwrap();
        assert_eq!(block["type"], frag["type"]);
        for key in ["thinking", "signature"] {
            if let Some(more) = frag[key].as_str() {
                let joined = format!(
                    "{}{more}",
                    block.get(key).and_then(serde_json::Value::as_str).unwrap_or("")
                );
                block.insert(key.to_string(), serde_json::Value::String(joined));
            }
        }
    }
    serde_json::Value::Array(blocks)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn signed_and_redacted_blocks_are_read_in_order_and_unsigned_ones_left_out() {
        let m = json!({"role": "assistant", "thinking_blocks": [
            {"type": "redacted_thinking", "data": "enc"},
            {"type": "thinking", "thinking": "no signature"},
            {"type": "thinking", "thinking": "empty signature", "signature": ""},
            {"type": "thinking", "thinking": "t", "signature": "sig", "index": 0}
        ]});
        assert_eq!(
            client_thinking_blocks(&m, "messages[1]").unwrap(),
            vec![
                ClientThinking::Redacted { data: "enc" },
                ClientThinking::Thinking {
                    thinking: "t",
                    signature: "sig"
                }
            ]
        );
        assert!(client_thinking_blocks(&json!({"role": "assistant"}), "m")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_blocks_are_refused_by_path() {
        let param = |m: Value| match client_thinking_blocks(&m, "messages[1]") {
            Err(AdapterError::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            param(json!({"thinking_blocks": "x"})),
            "messages[1].thinking_blocks"
        );
        assert_eq!(
            param(json!({"thinking_blocks": [{"type": "other"}]})),
            "messages[1].thinking_blocks[0].type"
        );
        assert_eq!(
            param(json!({"thinking_blocks": [{"type": "thinking", "signature": "s"}]})),
            "messages[1].thinking_blocks[0]"
        );
        assert_eq!(
            param(json!({"thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": 1}]})),
            "messages[1].thinking_blocks[0].signature"
        );
        assert_eq!(
            param(json!({"thinking_blocks": [{"type": "redacted_thinking"}]})),
            "messages[1].thinking_blocks[0]"
        );
    }

    #[test]
    fn stream_fragments_carry_their_block_index() {
        let v = serde_json::to_value([
            ThinkingBlockDelta::text(0, "a"),
            ThinkingBlockDelta::signature(0, "s"),
            ThinkingBlockDelta::redacted(1, "d"),
        ])
        .unwrap();
        assert_eq!(
            v,
            json!([
                {"index": 0, "type": "thinking", "thinking": "a"},
                {"index": 0, "type": "thinking", "thinking": "", "signature": "s"},
                {"index": 1, "type": "redacted_thinking", "data": "d"}
            ])
        );
    }
}
