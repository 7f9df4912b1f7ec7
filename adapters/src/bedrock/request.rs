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
    openai_in::{
        self, anthropic_thinking_budget, content_blocks, each_message, each_tool_call, function_tool,
        image_url, impl_turn, invalid, max_tokens_field, number, push_turn, stop_sequences, tool_call_id,
        ImageUrl, PartIn, ToolChoiceIn,
    },
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

/// Builds the Converse body for `model` (the model id only decides model-specific fields such as
/// Anthropic thinking) from an OpenAI chat body (without `model`).
pub(crate) fn convert<'a>(
    body: &'a Map<String, Value>,
    model: &str,
) -> Result<ConverseRequest<'a>, AdapterError> {
    openai_in::reject_n(body, "bedrock")?;
    let (system, messages) = convert_messages(openai_in::messages(body)?)?;
    let uses_tools = messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)))
    });
    let tool_config = convert_tools(body, &messages, uses_tools)?;

    let mut max_tokens = match max_tokens_field(body) {
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
    let thinking = anthropic_thinking_budget(body.get("reasoning_effort"))?
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

    // OpenAI's temperature goes to 2, Converse's to 1. With thinking, Anthropic refuses sampling changes.
    let (temperature, top_p) = match thinking {
        Some(_) => (None, None),
        None => (
            number(body, "temperature")?.map(|t| t.clamp(0.0, 1.0)),
            number(body, "top_p")?.map(|p| p.clamp(0.0, 1.0)),
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
    for msg in each_message(list) {
        let (m, content, at) = (msg.raw, msg.content, &msg.at);
        let (role, mut blocks) = match msg.role {
            "system" | "developer" => {
                for part in parts(content, at, Allow::TEXT)? {
                    system.push(match part {
                        Part::Text(t) => SystemBlock::Text(t),
                        Part::Cache(c) => SystemBlock::CachePoint(c),
                        Part::Image(_) | Part::Document(_) => continue,
                    });
                }
                if let Some(c) = cache_point(m, at)? {
                    system.push(SystemBlock::CachePoint(c));
                }
                continue;
            }
            "user" => (Role::User, user_blocks(content, at)?),
            "assistant" => (Role::Assistant, assistant_blocks(m, at)?),
            "tool" => (Role::User, vec![tool_result(m, content, at)?]),
            _ => return Err(msg.unsupported_role("bedrock")),
        };
        if let Some(c) = cache_point(m, at)? {
            if !blocks.is_empty() {
                blocks.push(Block::CachePoint(c));
            }
        }
        push_turn(&mut out, role, blocks);
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
    content_blocks(content, at, text, |part, p, param, out| {
        match part {
            PartIn::Text(t) => out.extend(text(t)),
            PartIn::Other("file") if allow.media => out.push(Part::Document(document_block(p, param)?)),
            PartIn::Image(image) if allow.media => {
                out.push(Part::Image(image_block(image.url(param)?, param)?));
            }
            other => return Err(openai_in::unsupported_part(&other, "bedrock", param)),
        }
        if let Some(c) = cache_point(p, param)? {
            out.push(Part::Cache(c));
        }
        Ok(())
    })
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
    let ImageUrl::Data { media_type, data } = image_url(url, param)? else {
        return Err(invalid(
            "bedrock does not fetch image URLs: send the image inline as a base64 data: URL",
            param,
        ));
    };
    let media_type = media_type.ok_or_else(|| invalid("image data: URLs must be base64", param))?;
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
    for call in each_tool_call(m, at)? {
        let (id, name) = call.id_and_name()?;
        let input = call.arguments_object()?;
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
    let id = tool_call_id(m, at)?;
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
    let list = openai_in::tools(body)?;
    let mut tools = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = function_tool(t, i, "bedrock")?;
        tools.push(Tool::ToolSpec(ToolSpec {
            name: f.name,
            description: f.description.filter(|d| !d.is_empty()),
            input_schema: InputSchema::Json(f.object_schema().into_owned()),
        }));
    }
    // `None`: the provider's default, which is auto. An explicit `auto` is left out too: every model
    // with tools does auto, while some refuse the `toolChoice` member. `"none"` sets `none`.
    let mut none = false;
    let choice = match openai_in::tool_choice(body)? {
        ToolChoiceIn::Unset | ToolChoiceIn::Auto => None,
        ToolChoiceIn::None => {
            none = true;
            None
        }
        ToolChoiceIn::Required => Some(ToolChoice::Any(Empty {})),
        ToolChoiceIn::Function(name) => Some(ToolChoice::Tool { name }),
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
    // A set as well: the client decides how many distinct names its history holds.
    let mut seen: std::collections::HashSet<&'a str> = std::collections::HashSet::new();
    for m in messages {
        for b in &m.content {
            if let Block::ToolUse(t) = b {
                if seen.insert(t.name) {
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

impl_turn!(Message, Role, Block, content);
