//! OpenAI chat request -> Cohere v2 `POST /v2/chat` body. Borrows from the client's body; only the
//! text of assistant turns that call tools is joined into an owned `tool_plan`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::types::{
    ChatRequest, Content, FunctionCall, ImageUrl, Message, Part, ResponseFormat, Thinking, Tool, ToolCall,
    ToolFunction,
};
pub(crate) use crate::openai_in::invalid;
use crate::{
    openai_in::{
        self, each_message, each_part, each_tool_call, function_tool, tool_call_id, ContentIn, Effort, PartIn,
    },
    AdapterError,
};

/// Builds the v2 chat body for `model` from an OpenAI chat body (without `model`).
pub(crate) fn convert<'a>(
    body: &'a Map<String, Value>,
    model: &'a str,
    stream: bool,
) -> Result<ChatRequest<'a>, AdapterError> {
    openai_in::reject_n(body, "cohere")?;
    let messages = each_message(openai_in::messages(body)?)
        .filter_map(|m| convert_message(&m).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let (tools, strict_tools) = convert_tools(body)?;
    let tool_choice = tool_choice(body.get("tool_choice"), !tools.is_empty())?;

    let number = |field: &str| openai_in::number(body, field);
    let integer = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            invalid(
                format!("`{field}` must be a non-negative integer for cohere"),
                field,
            )
        }),
    };
    let max_tokens = match integer("max_completion_tokens")? {
        Some(n) => Some(n),
        None => integer("max_tokens")?,
    };
    // OpenAI's ranges are wider than Cohere's: temperature 0..2 (Cohere 0..1), penalties -2..2
    // (Cohere 0..1), top_p 0..1 (Cohere 0.01..0.99). Values are clamped into Cohere's range.
    let k = match integer("top_k")? {
        Some(k) => Some(k),
        None => integer("k")?,
    };

    Ok(ChatRequest {
        model,
        messages,
        tools,
        strict_tools,
        tool_choice,
        documents: extension(body, "documents", Value::is_array, "an array")?,
        citation_options: extension(body, "citation_options", Value::is_object, "an object")?,
        response_format: response_format(body.get("response_format"))?,
        safety_mode: extension(body, "safety_mode", Value::is_string, "a string")?.and_then(Value::as_str),
        max_tokens,
        stop_sequences: stop_sequences(body.get("stop"))?,
        temperature: number("temperature")?.map(|t| t.clamp(0.0, 1.0)),
        seed: integer("seed")?,
        frequency_penalty: number("frequency_penalty")?.map(|v| v.clamp(0.0, 1.0)),
        presence_penalty: number("presence_penalty")?.map(|v| v.clamp(0.0, 1.0)),
        k: k.map(|k| k.min(500)),
        p: number("top_p")?.map(|p| p.clamp(0.01, 0.99)),
        thinking: thinking(body.get("reasoning_effort"))?,
        priority: integer("priority")?.map(|p| p.min(999)),
        stream,
    })
}

/// A Cohere-specific field the client may send along (`documents`, `citation_options`,
/// `safety_mode`), passed through when it has the right JSON type.
fn extension<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<Option<&'a Value>, AdapterError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if ok(v) => Ok(Some(v)),
        Some(_) => Err(invalid(format!("`{field}` must be {what}"), field)),
    }
}

fn convert_message<'a>(msg: &openai_in::MessageIn<'a>) -> Result<Option<Message<'a>>, AdapterError> {
    let (m, content, at) = (msg.raw, msg.content, msg.at.as_str());
    let message = match msg.role {
        "system" | "developer" => {
            content_of(content, at, Images::No)?.map(|content| Message::System { content })
        }
        "user" => content_of(content, at, Images::Yes)?.map(|content| Message::User { content }),
        "assistant" => assistant(m, content, at)?,
        "tool" => {
            let tool_call_id = tool_call_id(m, at)?;
            let content = content_of(content, at, Images::No)?.unwrap_or(Content::Text(Cow::Borrowed("")));
            Some(Message::Tool {
                tool_call_id,
                content,
            })
        }
        _ => return Err(msg.unsupported_role("cohere")),
    };
    Ok(message)
}

#[derive(Clone, Copy, PartialEq)]
enum Images {
    Yes,
    No,
}

/// A message `content`: a string, or text (and refusal) parts and, where `images` allows (user
/// turns: the only ones Cohere v2 takes images in), `image_url` parts. `None` when empty.
fn content_of<'a>(content: &'a Value, at: &str, images: Images) -> Result<Option<Content<'a>>, AdapterError> {
    let parts = match openai_in::content(content, at)? {
        ContentIn::Null | ContentIn::Text("") => return Ok(None),
        ContentIn::Text(s) => return Ok(Some(Content::Text(Cow::Borrowed(s)))),
        ContentIn::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    each_part(parts, at, |part, _, param| {
        match part {
            PartIn::Text("") => {}
            PartIn::Text(text) => out.push(Part::Text { text }),
            PartIn::Image(image) if images == Images::Yes => out.push(Part::ImageUrl {
                image_url: ImageUrl {
                    url: image.url(param)?,
                    detail: image.detail(),
                },
            }),
            PartIn::Image(_) => return Err(invalid("cohere takes images in user messages only", param)),
            PartIn::Other(kind) => {
                let message = format!("content parts of type `{kind}` are not supported by cohere");
                return Err(invalid(message, param));
            }
        }
        Ok(())
    })?;
    Ok((!out.is_empty()).then_some(Content::Parts(out)))
}

/// An assistant turn. When it calls tools, its text is what Cohere calls the `tool_plan` (the
/// answer converter puts a `tool_plan` into `content`, so the round trip is exact).
fn assistant<'a>(m: &'a Value, content: &'a Value, at: &str) -> Result<Option<Message<'a>>, AdapterError> {
    let content = content_of(content, at, Images::No)?;
    let calls = each_tool_call(m, at)?;
    let mut tool_calls = Vec::with_capacity(calls.size_hint().0);
    for call in calls {
        let (id, name) = call.id_and_name()?;
        // Cohere takes the arguments as the JSON string they are; they only have to be an object.
        call.arguments_object()?;
        let arguments = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments
        };
        tool_calls.push(ToolCall {
            id,
            kind: "function",
            function: FunctionCall { name, arguments },
        });
    }
    if tool_calls.is_empty() {
        return Ok(content.map(|c| Message::Assistant {
            content: Some(c),
            tool_plan: None,
            tool_calls,
        }));
    }
    let tool_plan = match content {
        None => None,
        Some(Content::Text(t)) => Some(t),
        Some(Content::Parts(parts)) => {
            let text: String = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text } => Some(*text),
                    Part::ImageUrl { .. } => None,
                })
                .collect();
            Some(Cow::Owned(text))
        }
    };
    Ok(Some(Message::Assistant {
        content: None,
        tool_plan,
        tool_calls,
    }))
}

/// `tools` -> `ToolV2`s (the same shape as OpenAI's, without `strict`); any `strict: true` tool
/// turns on `strict_tools`, which applies to all tools.
fn convert_tools(body: &Map<String, Value>) -> Result<(Vec<Tool<'_>>, Option<bool>), AdapterError> {
    let list = openai_in::tools(body)?;
    let mut strict = false;
    let mut tools = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = function_tool(t, i, "cohere")?;
        strict |= f.raw.get("strict") == Some(&Value::Bool(true));
        tools.push(Tool {
            kind: "function",
            function: ToolFunction {
                name: f.name,
                description: f.description,
                parameters: f.object_schema(),
            },
        });
    }
    Ok((tools, strict.then_some(true)))
}

/// `auto` is Cohere's default; `none` and `required` map to `NONE` and `REQUIRED`. Cohere cannot be
/// made to call one named tool.
fn tool_choice(choice: Option<&Value>, has_tools: bool) -> Result<Option<&'static str>, AdapterError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(None),
            "none" => Ok(has_tools.then_some("NONE")),
            "required" if has_tools => Ok(Some("REQUIRED")),
            "required" => Err(invalid("`tool_choice: required` needs `tools`", "tool_choice")),
            _ => Err(invalid("unknown `tool_choice`", "tool_choice")),
        },
        Some(v) if v.get("type").and_then(Value::as_str) == Some("function") => Err(invalid(
            "cohere cannot be made to call one named tool: send `tool_choice: \"required\"` \
             with only that tool in `tools` instead",
            "tool_choice",
        )),
        Some(_) => Err(invalid(
            "`tool_choice` must be auto, none or required for cohere",
            "tool_choice",
        )),
    }
}

fn stop_sequences(stop: Option<&Value>) -> Result<Vec<&str>, AdapterError> {
    let stops: Vec<&str> = match stop {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("`stop` must hold strings", "stop"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("`stop` must be a string or an array", "stop")),
    };
    let stops: Vec<&str> = stops.into_iter().filter(|s| !s.is_empty()).collect();
    if stops.len() > 5 {
        return Err(invalid("cohere takes at most 5 stop sequences", "stop"));
    }
    Ok(stops)
}

/// `json_object` as is; `json_schema` -> `json_object` with the schema; `text` is the default.
fn response_format(format: Option<&Value>) -> Result<Option<ResponseFormat<'_>>, AdapterError> {
    let Some(f) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat {
            kind: "json_object",
            json_schema: None,
        })),
        Some("json_schema") => Ok(Some(ResponseFormat {
            kind: "json_object",
            json_schema: f
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object()),
        })),
        _ => Err(invalid(
            "`response_format` must be text, json_object or json_schema",
            "response_format",
        )),
    }
}

/// `reasoning_effort` -> `thinking` (`none`: thinking off; otherwise on with a token budget).
fn thinking(effort: Option<&Value>) -> Result<Option<Thinking>, AdapterError> {
    let budget = match openai_in::reasoning_effort(effort)? {
        None => return Ok(None),
        Some(Effort::None) => return Ok(Some(Thinking::Disabled)),
        Some(Effort::Low) => 1024,
        Some(Effort::Medium) => 4096,
        Some(Effort::High) => 16_384,
    };
    Ok(Some(Thinking::Enabled {
        token_budget: Some(budget),
    }))
}
