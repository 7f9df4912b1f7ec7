//! OpenAI chat request -> Anthropic `CreateMessageParams`. Borrows from the client's body; only tool
//! call arguments (a JSON string in OpenAI, an object in Anthropic) are parsed into owned values.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    types::{
        Block, ImageSource, Message, MessagesRequest, Metadata, OutputConfig, OutputFormat, Role, System,
        Thinking, Tool, ToolChoice, ToolResultContent,
    },
    DEFAULT_MAX_TOKENS,
};
use crate::{
    reasoning::{client_thinking_blocks, ClientThinking},
    AdapterError,
};

/// Image media types the Messages API accepts in a base64 source.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn invalid(message: impl Into<String>, param: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Builds the Messages request for `model` from an OpenAI chat body (without `model`); `model` is
/// `None` where the URL names it (Vertex AI).
pub(crate) fn convert<'a>(
    body: &'a Map<String, Value>,
    model: Option<&'a str>,
    stream: bool,
) -> Result<MessagesRequest<'a>, AdapterError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid("`n` greater than 1 is not supported by anthropic", "n"));
    }
    let list = match body.get("messages") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => return Err(invalid("`messages` must be an array", "messages")),
    };
    let (system, messages) = convert_messages(list)?;
    let (tools, tool_choice) = convert_tools(body)?;
    // With thinking on, Anthropic wants the assistant turn that called tools to start with its signed
    // thinking blocks (the client's `thinking_blocks`); a continuation without them runs without
    // thinking rather than being refused.
    let continues_tool_call = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| {
            m.content.iter().any(|b| matches!(b, Block::ToolUse { .. }))
                && !matches!(
                    m.content.first(),
                    Some(Block::Thinking { .. } | Block::RedactedThinking { .. })
                )
        });
    // Forced tool use is not allowed with thinking either.
    let forced = matches!(
        tool_choice,
        Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. })
    );
    let thinking = thinking_budget(body.get("reasoning_effort"))?.filter(|_| !continues_tool_call && !forced);

    let mut max_tokens = match ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|f| body.get(f).filter(|v| !v.is_null()).map(|v| (f, v)))
    {
        Some((field, v)) => v
            .as_u64()
            .ok_or_else(|| invalid(format!("`{field}` must be a non-negative integer"), field))?,
        None => DEFAULT_MAX_TOKENS,
    };
    // Anthropic counts thinking inside `max_tokens` and requires it to exceed the budget: the
    // answer keeps the room the client asked for, thinking gets its budget on top.
    if let Some(budget) = thinking {
        if max_tokens <= budget {
            max_tokens += budget;
        }
    }

    let number = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{field}` must be a number"), field)),
    };
    // OpenAI's temperature goes up to 2, Anthropic's to 1. With thinking enabled Anthropic rejects
    // any sampling change, so both are left to the provider's defaults.
    let (temperature, top_p) = match thinking {
        Some(_) => (None, None),
        None => (
            number("temperature")?.map(|t| t.clamp(0.0, 1.0)),
            number("top_p")?,
        ),
    };

    let user = ["user", "safety_identifier"]
        .into_iter()
        .find_map(|f| body.get(f).and_then(Value::as_str))
        .filter(|u| !u.is_empty());

    Ok(MessagesRequest {
        anthropic_version: None,
        model,
        max_tokens,
        messages,
        system,
        tools,
        tool_choice,
        stop_sequences: stop_sequences(body.get("stop"))?,
        temperature,
        top_p,
        metadata: user.map(|user_id| Metadata { user_id }),
        thinking: thinking.map(|budget_tokens| Thinking::Enabled { budget_tokens }),
        output_config: output_config(body.get("response_format")),
        stream,
    })
}

/// Hoists system and developer messages into `system` and converts the rest, merging consecutive
/// turns of the same role (Anthropic requires user and assistant to alternate).
fn convert_messages(list: &[Value]) -> Result<(Option<System<'_>>, Vec<Message<'_>>), AdapterError> {
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut out: Vec<Message<'_>> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => {
                system.extend(blocks(content, &at, false)?);
                continue;
            }
            "user" => (Role::User, blocks(content, &at, true)?),
            "assistant" => (Role::Assistant, assistant_blocks(m, &at)?),
            "tool" => (Role::User, vec![tool_result(m, content, &at)?]),
            other => {
                let message = format!("messages with role `{other}` are not supported by anthropic");
                return Err(invalid(message, format!("{at}.role")));
            }
        };
        match out.last_mut() {
            _ if blocks.is_empty() => {}
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(Message {
                role,
                content: blocks,
            }),
        }
    }
    // In a user turn, tool results must come before any other content.
    for m in out.iter_mut().filter(|m| m.role == Role::User) {
        m.content.sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
    }
    let system = match system.as_slice() {
        [] => None,
        [Block::Text { text }] => Some(System::Text(text)),
        _ => Some(System::Blocks(system)),
    };
    Ok((system, out))
}

/// The blocks of a message `content`: a string, or an array of text (and refusal) parts and, where
/// `images` allows, image parts. Empty texts are left out (Anthropic rejects them).
fn blocks<'a>(content: &'a Value, at: &str, images: bool) -> Result<Vec<Block<'a>>, AdapterError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => return Ok(text_block(s).into_iter().collect()),
        Value::Array(parts) => parts,
        _ => {
            return Err(invalid(
                "`content` must be a string or an array",
                format!("{at}.content"),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = format!("{at}.content[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
        let block = match kind {
            "text" | "refusal" => match p.get(kind).and_then(Value::as_str) {
                Some(text) => text_block(text),
                None => return Err(invalid(format!("a {kind} part needs `{kind}`"), param)),
            },
            "image_url" if images => {
                let image = p.get("image_url");
                let url = image.and_then(|i| i.get("url")).or(image).and_then(Value::as_str);
                let url = url.ok_or_else(|| invalid("an image_url part needs `image_url.url`", &param))?;
                Some(Block::Image {
                    source: image_source(url, &param)?,
                })
            }
            _ => {
                let message = format!("content parts of type `{kind}` are not supported here by anthropic");
                return Err(invalid(message, param));
            }
        };
        out.extend(block);
    }
    Ok(out)
}

fn text_block(text: &str) -> Option<Block<'_>> {
    (!text.is_empty()).then_some(Block::Text { text })
}

/// `data:<media>;base64,<data>` becomes a base64 source, an http(s) URL a url source.
fn image_source<'a>(url: &'a str, param: &str) -> Result<ImageSource<'a>, AdapterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("malformed data: URL", param))?;
        let media_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("image data: URLs must be base64", param))?;
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(invalid(
                format!("image type `{media_type}` is not supported by anthropic (jpeg, png, gif, webp)"),
                param,
            ));
        }
        return Ok(ImageSource::Base64 { media_type, data });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    Err(invalid("image URLs must be http(s) or data: URLs", param))
}

/// An assistant turn: its signed `thinking_blocks` first (as Anthropic requires), then text and
/// tool calls.
fn assistant_blocks<'a>(m: &'a Value, at: &str) -> Result<Vec<Block<'a>>, AdapterError> {
    let mut out: Vec<Block<'a>> = client_thinking_blocks(m, at)?
        .into_iter()
        .map(|b| match b {
            ClientThinking::Thinking { thinking, signature } => Block::Thinking { thinking, signature },
            ClientThinking::Redacted { data } => Block::RedactedThinking { data },
        })
        .collect();
    out.extend(blocks(m.get("content").unwrap_or(&Value::Null), at, false)?);
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(invalid(
                "`tool_calls` must be an array",
                format!("{at}.tool_calls"),
            ))
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let param = format!("{at}.tool_calls[{j}]");
        let id = call.get("id").and_then(Value::as_str);
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(invalid("a tool call needs `id` and `function.name`", param));
        };
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let input = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(invalid(
                        "tool call arguments must be a JSON object",
                        format!("{param}.function.arguments"),
                    ))
                }
            }
        };
        out.push(Block::ToolUse { id, name, input });
    }
    Ok(out)
}

fn tool_result<'a>(m: &'a Value, content: &'a Value, at: &str) -> Result<Block<'a>, AdapterError> {
    let tool_use_id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "a tool message needs `tool_call_id`",
            format!("{at}.tool_call_id"),
        )
    })?;
    let content = match content {
        Value::String(s) if !s.is_empty() => Some(ToolResultContent::Text(s)),
        Value::Array(_) => {
            let blocks = blocks(content, at, false)?;
            (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
        }
        _ => None,
    };
    Ok(Block::ToolResult { tool_use_id, content })
}

type ToolsAndChoice<'a> = (Vec<Tool<'a>>, Option<ToolChoice<'a>>);

fn convert_tools(body: &Map<String, Value>) -> Result<ToolsAndChoice<'_>, AdapterError> {
    let list = match body.get("tools") {
        None | Some(Value::Null) => return Ok((Vec::new(), None)),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    };
    let mut tools = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = t
            .get("function")
            .filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let (Some(f), Some(name)) = (f, name) else {
            return Err(invalid(
                "only function tools with a name are supported by anthropic",
                format!("tools[{i}]"),
            ));
        };
        tools.push(Tool {
            name,
            description: f.get("description").and_then(Value::as_str),
            input_schema: match f.get("parameters") {
                Some(p @ Value::Object(_)) => Cow::Borrowed(p),
                _ => Cow::Owned(serde_json::json!({"type": "object", "properties": {}})),
            },
        });
    }
    if tools.is_empty() {
        return Ok((tools, None));
    }
    let no_parallel = (body.get("parallel_tool_calls") == Some(&Value::Bool(false))).then_some(true);
    let auto = ToolChoice::Auto {
        disable_parallel_tool_use: no_parallel,
    };
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => no_parallel.map(|_| auto),
        Some(Value::String(s)) if s == "auto" => Some(auto),
        Some(Value::String(s)) if s == "none" => Some(ToolChoice::None),
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Any {
            disable_parallel_tool_use: no_parallel,
        }),
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Some(ToolChoice::Tool {
                name,
                disable_parallel_tool_use: no_parallel,
            }),
            None => return Err(invalid("unknown `tool_choice`", "tool_choice")),
        },
    };
    Ok((tools, choice))
}

fn stop_sequences(stop: Option<&Value>) -> Result<Vec<&str>, AdapterError> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|v| v.as_str() != Some(""))
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("`stop` must hold strings", "stop"))
            })
            .collect(),
        Some(_) => Err(invalid("`stop` must be a string or an array", "stop")),
    }
}

/// `reasoning_effort` -> an extended-thinking budget (`none` or absent: no thinking).
fn thinking_budget(effort: Option<&Value>) -> Result<Option<u64>, AdapterError> {
    match effort.filter(|v| !v.is_null()).map(Value::as_str) {
        None | Some(Some("none")) => Ok(None),
        Some(Some("minimal" | "low")) => Ok(Some(1024)),
        Some(Some("medium")) => Ok(Some(4096)),
        Some(Some("high")) => Ok(Some(16_384)),
        Some(_) => Err(invalid(
            "`reasoning_effort` must be none, minimal, low, medium or high",
            "reasoning_effort",
        )),
    }
}

/// `response_format: json_schema` -> `output_config.format`; other formats have no equivalent.
fn output_config(format: Option<&Value>) -> Option<OutputConfig<'_>> {
    let f = format?;
    if f.get("type").and_then(Value::as_str) != Some("json_schema") {
        return None;
    }
    let schema = f.get("json_schema")?.get("schema").filter(|s| s.is_object())?;
    Some(OutputConfig {
        format: OutputFormat::JsonSchema { schema },
    })
}
