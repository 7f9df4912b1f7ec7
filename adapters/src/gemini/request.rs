//! OpenAI chat request -> Gemini `GenerateContentRequest` (messages and tools; `generationConfig` is
//! built in `generation.rs`). Borrows from the client's body; tool call arguments, tool results and
//! JSON schemas are converted into owned values.

use serde_json::{Map, Value};

use super::{
    generation::generation_config,
    schema::to_schema,
    types::{
        Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse,
        GenerateContentRequest, Part, Role, SignedData, SignedPart, Tool, ToolConfig,
    },
};
use crate::{
    reasoning::{client_thinking_blocks, ClientThinking},
    AdapterError,
};

pub(crate) fn invalid(message: impl Into<String>, param: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Builds the `generateContent` body from an OpenAI chat body (without `model`).
pub(crate) fn convert(body: &Map<String, Value>) -> Result<GenerateContentRequest<'_>, AdapterError> {
    let list = match body.get("messages") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => return Err(invalid("`messages` must be an array", "messages")),
    };
    let (system, contents) = convert_messages(list)?;
    let (tools, tool_config) = convert_tools(body)?;
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools,
        tool_config,
        generation_config: generation_config(body)?,
    })
}

/// Hoists system and developer messages into the system instruction and converts the rest into
/// `user`/`model` turns, merging consecutive turns of the same role.
fn convert_messages(list: &[Value]) -> Result<(Vec<Part<'_>>, Vec<Content<'_>>), AdapterError> {
    let mut system = Vec::new();
    let mut out: Vec<Content<'_>> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, parts) = match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => {
                system.extend(parts(content, &at, false)?);
                continue;
            }
            "user" => (Role::User, parts(content, &at, true)?),
            "assistant" => (Role::Model, model_parts(m, &at)?),
            "tool" => (Role::User, vec![function_response(list, i, m, content, &at)?]),
            other => {
                let message = format!("messages with role `{other}` are not supported by gemini");
                return Err(invalid(message, format!("{at}.role")));
            }
        };
        match out.last_mut() {
            _ if parts.is_empty() => {}
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => out.push(Content {
                role: Some(role),
                parts,
            }),
        }
    }
    Ok((system, out))
}

/// The parts of a message `content`: a string, or text (and refusal) parts and, where `images`
/// allows, image parts. Empty texts are left out.
fn parts<'a>(content: &'a Value, at: &str, images: bool) -> Result<Vec<Part<'a>>, AdapterError> {
    let list = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => return Ok(text_part(s).into_iter().collect()),
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
                Some(text) => out.extend(text_part(text)),
                None => return Err(invalid(format!("a {kind} part needs `{kind}`"), param)),
            },
            "image_url" if images => {
                let image = p.get("image_url");
                let url = image.and_then(|i| i.get("url")).or(image).and_then(Value::as_str);
                let url = url.ok_or_else(|| invalid("an image_url part needs `image_url.url`", &param))?;
                out.push(image_part(url, &param)?);
            }
            _ => {
                let message = format!("content parts of type `{kind}` are not supported here by gemini");
                return Err(invalid(message, param));
            }
        }
    }
    Ok(out)
}

fn text_part(text: &str) -> Option<Part<'_>> {
    (!text.is_empty()).then_some(Part::Text(text))
}

/// `data:<mime>;base64,<data>` becomes `inlineData`, an http(s) URL `fileData` with a mime type
/// guessed from the extension (default `image/jpeg`).
fn image_part<'a>(url: &'a str, param: &str) -> Result<Part<'a>, AdapterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("malformed data: URL", param))?;
        let mime_type = header
            .strip_suffix(";base64")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid("image data: URLs must be base64 with a media type", param))?;
        return Ok(Part::InlineData(Blob { mime_type, data }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let mime_type = match ext.as_deref() {
            Some("png") => "image/png",
            Some("gif") => "image/gif",
            Some("webp") => "image/webp",
            Some("heic") => "image/heic",
            Some("heif") => "image/heif",
            _ => "image/jpeg",
        };
        return Ok(Part::FileData(FileData {
            mime_type,
            file_uri: url,
        }));
    }
    Err(invalid("image URLs must be http(s) or data: URLs", param))
}

/// A model turn as Gemini answered it: signed thoughts (`thinking_blocks` with text) first, then the
/// text, carrying the signature of a `thinking_blocks` entry without text, then the `tool_calls`
/// (arguments parsed into `args`), each with its `thoughtSignature` from
/// `provider_specific_fields.thought_signature` (or Google's `extra_content.google.thought_signature`).
/// Redacted thinking has no Gemini equivalent and is left out.
fn model_parts<'a>(m: &'a Value, at: &str) -> Result<Vec<Part<'a>>, AdapterError> {
    let mut text_signatures = Vec::new();
    let mut out = Vec::new();
    for block in client_thinking_blocks(m, at)? {
        match block {
            ClientThinking::Thinking {
                thinking: "",
                signature,
            } => {
                text_signatures.push(signature);
            }
            ClientThinking::Thinking { thinking, signature } => out.push(Part::Signed(SignedPart {
                data: SignedData::Text(thinking),
                thought: true,
                thought_signature: Some(signature),
            })),
            ClientThinking::Redacted { .. } => {}
        }
    }
    out.extend(parts(m.get("content").unwrap_or(&Value::Null), at, false)?);
    let mut text_signatures = text_signatures.into_iter();
    if let Some(last_text) = out.iter_mut().rev().find(|p| matches!(p, Part::Text(_))) {
        if let (Part::Text(text), Some(signature)) = (&*last_text, text_signatures.next()) {
            *last_text = Part::Signed(SignedPart {
                data: SignedData::Text(text),
                thought: false,
                thought_signature: Some(signature),
            });
        }
    }
    // Signatures Gemini put on an empty closing text part go back the same way.
    out.extend(text_signatures.map(|signature| {
        Part::Signed(SignedPart {
            data: SignedData::Text(""),
            thought: false,
            thought_signature: Some(signature),
        })
    }));
    for (j, call) in tool_calls(m, at)?.iter().enumerate() {
        let param = format!("{at}.tool_calls[{j}]");
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let name = name.ok_or_else(|| invalid("a tool call needs `function.name`", &param))?;
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let args = if arguments.trim().is_empty() {
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
        let call_fn = FunctionCall { name, args };
        out.push(match call_signature(call, &param)? {
            Some(signature) => Part::Signed(SignedPart {
                data: SignedData::FunctionCall(call_fn),
                thought: false,
                thought_signature: Some(signature),
            }),
            None => Part::FunctionCall(call_fn),
        });
    }
    Ok(out)
}

/// The `thoughtSignature` a client sent back on a tool call.
fn call_signature<'a>(call: &'a Value, param: &str) -> Result<Option<&'a str>, AdapterError> {
    let places = [
        (
            "provider_specific_fields",
            call.pointer("/provider_specific_fields/thought_signature"),
        ),
        (
            "extra_content.google",
            call.pointer("/extra_content/google/thought_signature"),
        ),
    ];
    for (place, v) in places {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s)),
            Some(_) => {
                return Err(invalid(
                    "`thought_signature` must be a string",
                    format!("{param}.{place}.thought_signature"),
                ))
            }
        }
    }
    Ok(None)
}

fn tool_calls<'a>(m: &'a Value, at: &str) -> Result<&'a [Value], AdapterError> {
    match m.get("tool_calls") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(calls)) => Ok(calls),
        Some(_) => Err(invalid(
            "`tool_calls` must be an array",
            format!("{at}.tool_calls"),
        )),
    }
}

/// A `tool` message: the function name comes from the earlier tool call with the same id.
fn function_response<'a>(
    list: &'a [Value],
    i: usize,
    m: &'a Value,
    content: &'a Value,
    at: &str,
) -> Result<Part<'a>, AdapterError> {
    let param = format!("{at}.tool_call_id");
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a tool message needs `tool_call_id`", &param))?;
    let name = list[..i]
        .iter()
        .rev()
        .filter(|p| p.get("role").and_then(Value::as_str) == Some("assistant"))
        .filter_map(|p| p.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|c| c.get("function")?.get("name")?.as_str())
        .ok_or_else(|| invalid(format!("no earlier tool call has the id `{id}`"), &param))?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "content": text }),
    };
    Ok(Part::FunctionResponse(FunctionResponse { name, response }))
}

type ToolsAndConfig<'a> = (Vec<Tool<'a>>, Option<ToolConfig<'a>>);

fn convert_tools(body: &Map<String, Value>) -> Result<ToolsAndConfig<'_>, AdapterError> {
    let list = match body.get("tools") {
        None | Some(Value::Null) => return Ok((Vec::new(), None)),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("`tools` must be an array", "tools")),
    };
    let mut declarations = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = t
            .get("function")
            .filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let (Some(f), Some(name)) = (f, name) else {
            return Err(invalid(
                "only function tools with a name are supported by gemini",
                format!("tools[{i}]"),
            ));
        };
        // Gemini rejects an OBJECT schema without properties: a function without parameters.
        let parameters = f
            .get("parameters")
            .filter(|p| {
                p.get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty())
            })
            .map(to_schema);
        declarations.push(FunctionDeclaration {
            name,
            description: f.get("description").and_then(Value::as_str),
            parameters,
        });
    }
    if declarations.is_empty() {
        return Ok((Vec::new(), None));
    }
    let config = |mode, allowed_function_names| {
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names,
            },
        })
    };
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => config("AUTO", Vec::new()),
        Some(Value::String(s)) if s == "none" => config("NONE", Vec::new()),
        Some(Value::String(s)) if s == "required" => config("ANY", Vec::new()),
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => config("ANY", vec![name]),
            None => return Err(invalid("unknown `tool_choice`", "tool_choice")),
        },
    };
    let tools = vec![Tool {
        function_declarations: declarations,
    }];
    Ok((tools, choice))
}
