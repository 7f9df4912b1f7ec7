//! OpenAI chat request -> Bedrock `ConverseRequest`. Borrows from the client's body; only tool call
//! arguments (a JSON string in OpenAI, a document in Bedrock) and schemas are owned.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::types::{
    Block, CachePoint, ConverseRequest, Empty, Image, ImageSource, InferenceConfig, InputSchema, JsonSchema,
    Message, OutputConfig, OutputFormat, ReasoningIn, Role, ServiceTier, Structure, SystemBlock, Tool,
    ToolChoice, ToolConfig, ToolResult, ToolResultContent, ToolSpec, ToolUse,
};
use super::{
    document::{dedupe_names, document_block},
    types::Document,
};
use crate::{
    reasoning::{client_thinking_blocks, ClientThinking},
    AdapterError,
};

/// Output tokens left for the answer when thinking is on and the client set no limit.
const THINKING_ANSWER_TOKENS: u64 = 4096;

/// Image media types Converse accepts, with their `ImageFormat` names.
const IMAGE_FORMATS: [(&str, &str); 4] = [
    ("image/png", "png"),
    ("image/jpeg", "jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

fn invalid(message: impl Into<String>, param: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Builds the Converse body for `model` (the model id only decides model-specific fields such as
/// Anthropic thinking) from an OpenAI chat body (without `model`).
pub(crate) fn convert<'a>(
    body: &'a Map<String, Value>,
    model: &str,
) -> Result<ConverseRequest<'a>, AdapterError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid("`n` greater than 1 is not supported by bedrock", "n"));
    }
    let list = match body.get("messages") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => return Err(invalid("`messages` must be an array", "messages")),
    };
    let (system, messages) = convert_messages(list)?;
    let uses_tools = messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)))
    });
    let tool_config = convert_tools(body, &messages, uses_tools)?;

    let mut max_tokens = match ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|f| body.get(f).filter(|v| !v.is_null()).map(|v| (f, v)))
    {
        Some((field, v)) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => return Err(invalid(format!("`{field}` must be a positive integer"), field)),
        },
        None => None,
    };

    // Extended thinking exists for Anthropic models only; like the anthropic adapter, it is left out
    // when tool use is forced, or when a turn continues a tool call whose assistant turn does not
    // start with its signed reasoning (the client's `thinking_blocks`), which Anthropic then requires.
    let forced = tool_config
        .as_ref()
        .is_some_and(|t| matches!(t.tool_choice, Some(ToolChoice::Any(_) | ToolChoice::Tool { .. })));
    let continues_tool_call = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| {
            m.content.iter().any(|b| matches!(b, Block::ToolUse(_)))
                && !matches!(m.content.first(), Some(Block::ReasoningContent(_)))
        });
    let thinking = thinking_budget(body.get("reasoning_effort"))?
        .filter(|_| is_anthropic(model) && !forced && !continues_tool_call);
    if let Some(budget) = thinking {
        // Anthropic counts thinking inside max_tokens and wants it larger than the budget: the
        // answer keeps the room the client asked for (or 4096), thinking gets its budget on top.
        max_tokens = Some(match max_tokens {
            Some(max) if max > budget => max,
            Some(max) => max + budget,
            None => THINKING_ANSWER_TOKENS + budget,
        });
    }

    let number = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{field}` must be a number"), field)),
    };
    // OpenAI's temperature goes to 2, Converse's to 1. With thinking, Anthropic refuses sampling changes.
    let (temperature, top_p) = match thinking {
        Some(_) => (None, None),
        None => (
            number("temperature")?.map(|t| t.clamp(0.0, 1.0)),
            number("top_p")?.map(|p| p.clamp(0.0, 1.0)),
        ),
    };
    let inference = InferenceConfig {
        max_tokens,
        temperature,
        top_p,
        stop_sequences: stop_sequences(body.get("stop"))?,
    };

    Ok(ConverseRequest {
        messages,
        system,
        inference_config: (!inference.is_empty()).then_some(inference),
        tool_config,
        additional_model_request_fields: thinking
            .map(|budget| json!({"thinking": {"type": "enabled", "budget_tokens": budget}})),
        output_config: output_config(body.get("response_format"))?,
        service_tier: service_tier(body.get("service_tier"))?,
    })
}

/// Whether `model` (a model id, inference profile id or ARN) is one of Anthropic's.
fn is_anthropic(model: &str) -> bool {
    model.contains("anthropic.")
}

/// Hoists system and developer messages into `system` and converts the rest, merging consecutive
/// turns of the same role: Converse requires user and assistant to alternate, and several `tool`
/// messages in a row answer one assistant turn, so they become one user turn.
fn convert_messages(list: &[Value]) -> Result<(Vec<SystemBlock<'_>>, Vec<Message<'_>>), AdapterError> {
    let mut system = Vec::new();
    let mut out: Vec<Message<'_>> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, mut blocks) = match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => {
                for part in parts(content, &at, Allow::TEXT)? {
                    system.push(match part {
                        Part::Text(t) => SystemBlock::Text(t),
                        Part::Cache(c) => SystemBlock::CachePoint(c),
                        Part::Image(_) | Part::Document(_) => continue,
                    });
                }
                if let Some(c) = cache_point(m, &at)? {
                    system.push(SystemBlock::CachePoint(c));
                }
                continue;
            }
            "user" => (Role::User, user_blocks(content, &at)?),
            "assistant" => (Role::Assistant, assistant_blocks(m, &at)?),
            "tool" => (Role::User, vec![tool_result(m, content, &at)?]),
            other => {
                let message = format!("messages with role `{other}` are not supported by bedrock");
                return Err(invalid(message, format!("{at}.role")));
            }
        };
        if let Some(c) = cache_point(m, &at)? {
            if !blocks.is_empty() {
                blocks.push(Block::CachePoint(c));
            }
        }
        match out.last_mut() {
            _ if blocks.is_empty() => {}
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(Message {
                role,
                content: blocks,
            }),
        }
    }
    // In a user turn, tool results come before any other content (Anthropic models require it).
    for m in out.iter_mut().filter(|m| m.role == Role::User) {
        m.content.sort_by_key(|b| !matches!(b, Block::ToolResult(_)));
    }
    dedupe_names(&mut out);
    Ok((system, out))
}

/// A converted content part.
enum Part<'a> {
    Text(&'a str),
    Image(Image<'a>),
    Document(Document<'a>),
    Cache(CachePoint),
}

#[derive(Clone, Copy)]
struct Allow {
    /// Images and files.
    media: bool,
}

impl Allow {
    const TEXT: Allow = Allow { media: false };
    const MEDIA: Allow = Allow { media: true };
}

/// The parts of a message `content`: a string, or an array of text (and refusal) parts and, where
/// allowed, image and file parts. A part carrying `cache_control` is followed by a cache point. Empty texts
/// are left out (Converse rejects blank text blocks).
fn parts<'a>(content: &'a Value, at: &str, allow: Allow) -> Result<Vec<Part<'a>>, AdapterError> {
    let list = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => return Ok(text(s).into_iter().collect()),
        Value::Array(list) => list,
        _ => {
            return Err(invalid(
                "`content` must be a string or an array",
                format!("{at}.content"),
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, p) in list.iter().enumerate() {
        let param = format!("{at}.content[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
        match kind {
            "text" | "refusal" => match p.get(kind).and_then(Value::as_str) {
                Some(t) => out.extend(text(t)),
                None => return Err(invalid(format!("a {kind} part needs `{kind}`"), param)),
            },
            "file" if allow.media => out.push(Part::Document(document_block(p, &param)?)),
            "image_url" if allow.media => {
                let image = p.get("image_url");
                let url = image.and_then(|i| i.get("url")).or(image).and_then(Value::as_str);
                let url = url.ok_or_else(|| invalid("an image_url part needs `image_url.url`", &param))?;
                out.push(Part::Image(image_block(url, &param)?));
            }
            _ => {
                let message = format!("content parts of type `{kind}` are not supported here by bedrock");
                return Err(invalid(message, param));
            }
        }
        if let Some(c) = cache_point(p, &param)? {
            out.push(Part::Cache(c));
        }
    }
    Ok(out)
}

fn text(t: &str) -> Option<Part<'_>> {
    (!t.trim().is_empty()).then_some(Part::Text(t))
}

/// An OpenAI-style (Anthropic-flavoured) `cache_control: {"type": "ephemeral", "ttl"?}` becomes a
/// `cachePoint` after the part or message carrying it.
fn cache_point(v: &Value, at: &str) -> Result<Option<CachePoint>, AdapterError> {
    let Some(c) = v.get("cache_control").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    if c.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(invalid(
            "`cache_control.type` must be `ephemeral`",
            format!("{at}.cache_control"),
        ));
    }
    let ttl = match c.get("ttl").and_then(Value::as_str) {
        None => None,
        Some("5m") => Some("5m"),
        Some("1h") => Some("1h"),
        Some(_) => {
            return Err(invalid(
                "`cache_control.ttl` must be `5m` or `1h`",
                format!("{at}.cache_control.ttl"),
            ))
        }
    };
    Ok(Some(CachePoint { kind: "default", ttl }))
}

fn user_blocks<'a>(content: &'a Value, at: &str) -> Result<Vec<Block<'a>>, AdapterError> {
    Ok(parts(content, at, Allow::MEDIA)?
        .into_iter()
        .map(|p| match p {
            Part::Text(t) => Block::Text(t),
            Part::Image(i) => Block::Image(i),
            Part::Document(d) => Block::Document(d),
            Part::Cache(c) => Block::CachePoint(c),
        })
        .collect())
}

/// `data:<media>;base64,<data>` becomes an image with inline bytes. Converse cannot fetch URLs.
fn image_block<'a>(url: &'a str, param: &str) -> Result<Image<'a>, AdapterError> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(invalid(
            "bedrock does not fetch image URLs: send the image inline as a base64 data: URL",
            param,
        ));
    };
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("malformed data: URL", param))?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(|| invalid("image data: URLs must be base64", param))?;
    let format = IMAGE_FORMATS
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(media_type))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            invalid(
                format!("image type `{media_type}` is not supported by bedrock (png, jpeg, gif, webp)"),
                param,
            )
        })?;
    if data.is_empty() {
        return Err(invalid("the image data: URL is empty", param));
    }
    Ok(Image {
        format,
        source: ImageSource::Bytes(data),
    })
}

/// An assistant turn: its signed `thinking_blocks` first (as Anthropic models require), then text and
/// tool calls.
fn assistant_blocks<'a>(m: &'a Value, at: &str) -> Result<Vec<Block<'a>>, AdapterError> {
    let mut out: Vec<Block<'a>> = client_thinking_blocks(m, at)?
        .into_iter()
        .map(|b| {
            Block::ReasoningContent(match b {
                ClientThinking::Thinking { thinking, signature } => ReasoningIn::ReasoningText {
                    text: thinking,
                    signature,
                },
                ClientThinking::Redacted { data } => ReasoningIn::RedactedContent(data),
            })
        })
        .collect();
    out.extend(
        parts(m.get("content").unwrap_or(&Value::Null), at, Allow::TEXT)?
            .into_iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(Block::Text(t)),
                Part::Cache(c) => Some(Block::CachePoint(c)),
                Part::Image(_) | Part::Document(_) => None,
            }),
    );
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
        out.push(Block::ToolUse(ToolUse {
            tool_use_id: tool_use_id(id),
            name,
            input,
        }));
    }
    Ok(out)
}

/// Bedrock's tool-use ids match `[a-zA-Z0-9_.:-]{1,64}`; ids made elsewhere (a conversation that
/// began on another provider) may not. Other characters become `_` and long ids are cut, the same
/// way for a call and its result, so the pair still matches.
fn tool_use_id(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if !id.is_empty() && id.len() <= 64 && id.chars().all(ok) {
        return Cow::Borrowed(id);
    }
    let mut out: String = id.chars().map(|c| if ok(c) { c } else { '_' }).take(64).collect();
    if out.is_empty() {
        out.push('_');
    }
    Cow::Owned(out)
}

fn tool_result<'a>(m: &'a Value, content: &'a Value, at: &str) -> Result<Block<'a>, AdapterError> {
    let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "a tool message needs `tool_call_id`",
            format!("{at}.tool_call_id"),
        )
    })?;
    let content = parts(content, at, Allow::MEDIA)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(ToolResultContent::Text(t)),
            Part::Image(i) => Some(ToolResultContent::Image(i)),
            Part::Document(d) => Some(ToolResultContent::Document(d)),
            // A cache point cannot sit inside a tool result.
            Part::Cache(_) => None,
        })
        .collect();
    Ok(Block::ToolResult(ToolResult {
        tool_use_id: tool_use_id(id),
        content,
    }))
}

/// `tools` and `tool_choice` -> `toolConfig`. Converse has no "none": with `tool_choice: "none"` the
/// tools are left out, unless the conversation already holds tool calls or results, which Converse
/// only accepts beside a `toolConfig`; then the tools are sent without a choice (the model decides).
/// The same rule declares the tools a conversation used when the client sent none.
fn convert_tools<'a>(
    body: &'a Map<String, Value>,
    messages: &[Message<'a>],
    uses_tools: bool,
) -> Result<Option<ToolConfig<'a>>, AdapterError> {
    let list: &[Value] = match body.get("tools") {
        None | Some(Value::Null) => &[],
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
                "only function tools with a name are supported by bedrock",
                format!("tools[{i}]"),
            ));
        };
        let schema = match f.get("parameters") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        tools.push(Tool::ToolSpec(ToolSpec {
            name,
            description: f
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty()),
            input_schema: InputSchema::Json(schema),
        }));
    }
    // `None`: the provider's default, which is auto. An explicit `auto` is left out too: every model
    // with tools does auto, while some refuse the `toolChoice` member. `"none"` sets `none`.
    let mut none = false;
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => None,
        Some(Value::String(s)) if s == "none" => {
            none = true;
            None
        }
        Some(Value::String(s)) if s == "required" => Some(ToolChoice::Any(Empty {})),
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Some(ToolChoice::Tool { name }),
            None => return Err(invalid("unknown `tool_choice`", "tool_choice")),
        },
    };
    if let Some(ToolChoice::Tool { name }) = &choice {
        if !tools.iter().any(|Tool::ToolSpec(t)| t.name == *name) {
            return Err(invalid(
                format!("`tool_choice` names `{name}`, which is not in `tools`"),
                "tool_choice",
            ));
        }
    }
    if !tools.is_empty() && !none {
        return Ok(Some(ToolConfig {
            tools,
            tool_choice: choice,
        }));
    }
    if !uses_tools {
        return Ok(None);
    }
    if tools.is_empty() {
        tools = history_tools(messages);
    }
    Ok((!tools.is_empty()).then_some(ToolConfig {
        tools,
        tool_choice: None,
    }))
}

/// Minimal declarations of the tools an earlier assistant turn called.
fn history_tools<'a>(messages: &[Message<'a>]) -> Vec<Tool<'a>> {
    let mut names: Vec<&'a str> = Vec::new();
    for m in messages {
        for b in &m.content {
            if let Block::ToolUse(t) = b {
                if !names.contains(&t.name) {
                    names.push(t.name);
                }
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            Tool::ToolSpec(ToolSpec {
                name,
                description: None,
                input_schema: InputSchema::Json(json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
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

/// OpenAI's `service_tier` -> Bedrock's: `priority`, `flex` and `default` are the same tiers; `auto`
/// (and OpenAI's `scale`) leave the choice to the provider.
fn service_tier(tier: Option<&Value>) -> Result<Option<ServiceTier>, AdapterError> {
    let kind = match tier.filter(|v| !v.is_null()).map(Value::as_str) {
        None | Some(Some("auto" | "scale")) => return Ok(None),
        Some(Some("priority")) => "priority",
        Some(Some("flex")) => "flex",
        Some(Some("default")) => "default",
        Some(_) => {
            return Err(invalid(
                "`service_tier` must be auto, default, flex or priority",
                "service_tier",
            ))
        }
    };
    Ok(Some(ServiceTier { kind }))
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

/// `response_format: json_schema` -> `outputConfig.textFormat` (the schema as a string). `text` and
/// `json_object` have no Converse equivalent and are left to the prompt.
fn output_config(format: Option<&Value>) -> Result<Option<OutputConfig<'_>>, AdapterError> {
    let Some(f) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    if f.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Ok(None);
    }
    let spec = f.get("json_schema");
    let Some(schema) = spec.and_then(|s| s.get("schema")).filter(|s| s.is_object()) else {
        return Err(invalid(
            "`response_format.json_schema.schema` must be an object",
            "response_format.json_schema.schema",
        ));
    };
    let text = |k: &str| {
        spec.and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    Ok(Some(OutputConfig {
        text_format: OutputFormat {
            kind: "json_schema",
            structure: Structure::JsonSchema(JsonSchema {
                schema: schema.to_string(),
                name: text("name"),
                description: text("description"),
            }),
        },
    }))
}
