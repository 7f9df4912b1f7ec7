//! OpenAI chat request -> Anthropic `CreateMessageParams`. Borrows from the client's body; only tool
//! call arguments (a JSON string in OpenAI, an object in Anthropic) are parsed into owned values.

use serde_json::{Map, Value};

use super::{
    types::{
        Block, ImageSource, Message, MessagesRequest, Metadata, OutputConfig, OutputFormat, Role, System,
        Thinking, Tool, ToolChoice, ToolResultContent,
    },
    DEFAULT_MAX_TOKENS,
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

/// Image media types the Messages API accepts in a base64 source.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Builds the Messages request for `model` from an OpenAI chat body (without `model`); `model` is
/// `None` where the URL names it (Vertex AI).
pub(crate) fn convert<'a>(
    body: &'a Map<String, Value>,
    model: Option<&'a str>,
    stream: bool,
) -> Result<MessagesRequest<'a>, AdapterError> {
    openai_in::reject_n(body, "anthropic")?;
    let (system, messages) = convert_messages(openai_in::messages(body)?)?;
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
    let thinking =
        anthropic_thinking_budget(body.get("reasoning_effort"))?.filter(|_| !continues_tool_call && !forced);

    let mut max_tokens = match max_tokens_field(body) {
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

    // OpenAI's temperature goes up to 2, Anthropic's to 1. With thinking enabled Anthropic rejects
    // any sampling change, so both are left to the provider's defaults.
    let (temperature, top_p) = match thinking {
        Some(_) => (None, None),
        None => (
            number(body, "temperature")?.map(|t| t.clamp(0.0, 1.0)),
            number(body, "top_p")?,
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
    for m in each_message(list) {
        let (role, blocks) = match m.role {
            "system" | "developer" => {
                system.extend(blocks(m.content, &m.at, false)?);
                continue;
            }
            "user" => (Role::User, blocks(m.content, &m.at, true)?),
            "assistant" => (Role::Assistant, assistant_blocks(m.raw, &m.at)?),
            "tool" => (Role::User, vec![tool_result(m.raw, m.content, &m.at)?]),
            _ => return Err(m.unsupported_role("anthropic")),
        };
        push_turn(&mut out, role, blocks);
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
    content_blocks(content, at, text_block, |part, _, param, out| {
        match part {
            PartIn::Text(text) => out.extend(text_block(text)),
            PartIn::Image(image) if images => out.push(Block::Image {
                source: image_source(image.url(param)?, param)?,
            }),
            other => return Err(openai_in::unsupported_part(&other, "anthropic", param)),
        }
        Ok(())
    })
}

fn text_block(text: &str) -> Option<Block<'_>> {
    (!text.is_empty()).then_some(Block::Text { text })
}

/// `data:<media>;base64,<data>` becomes a base64 source, an http(s) URL a url source.
fn image_source<'a>(url: &'a str, param: &str) -> Result<ImageSource<'a>, AdapterError> {
    match image_url(url, param)? {
        ImageUrl::Data { media_type, data } => {
            let media_type = media_type.ok_or_else(|| invalid("image data: URLs must be base64", param))?;
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(invalid(
                    format!("image type `{media_type}` is not supported by anthropic (jpeg, png, gif, webp)"),
                    param,
                ));
            }
            Ok(ImageSource::Base64 { media_type, data })
        }
        ImageUrl::Http(url) => Ok(ImageSource::Url { url }),
        ImageUrl::Other => Err(invalid("image URLs must be http(s) or data: URLs", param)),
    }
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
    for call in each_tool_call(m, at)? {
        let (id, name) = call.id_and_name()?;
        let input = call.arguments_object()?;
        out.push(Block::ToolUse { id, name, input });
    }
    Ok(out)
}

fn tool_result<'a>(m: &'a Value, content: &'a Value, at: &str) -> Result<Block<'a>, AdapterError> {
    let tool_use_id = tool_call_id(m, at)?;
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
    let list = openai_in::tools(body)?;
    let mut tools = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = function_tool(t, i, "anthropic")?;
        tools.push(Tool {
            name: f.name,
            description: f.description,
            input_schema: f.object_schema(),
        });
    }
    if tools.is_empty() {
        return Ok((tools, None));
    }
    let no_parallel = (body.get("parallel_tool_calls") == Some(&Value::Bool(false))).then_some(true);
    let auto = ToolChoice::Auto {
        disable_parallel_tool_use: no_parallel,
    };
    let choice = match openai_in::tool_choice(body)? {
        ToolChoiceIn::Unset => no_parallel.map(|_| auto),
        ToolChoiceIn::Auto => Some(auto),
        ToolChoiceIn::None => Some(ToolChoice::None),
        ToolChoiceIn::Required => Some(ToolChoice::Any {
            disable_parallel_tool_use: no_parallel,
        }),
        ToolChoiceIn::Function(name) => Some(ToolChoice::Tool {
            name,
            disable_parallel_tool_use: no_parallel,
        }),
    };
    Ok((tools, choice))
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

impl_turn!(Message, Role, Block, content);
