//! OpenAI chat request -> Gemini `GenerateContentRequest` (messages and tools; `generationConfig` is
//! built in `generation.rs`). Borrows from the client's body; tool call arguments, tool results and
//! JSON schemas are converted into owned values.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{
    generation::generation_config,
    schema::to_schema,
    types::{
        Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse,
        GenerateContentRequest, Part, Role, SignedData, SignedPart, Tool, ToolConfig,
    },
};
pub(crate) use crate::openai_in::invalid;
use crate::{
    openai_in::{
        self, content_blocks, each_message, each_tool_call, function_tool, image_url, push_turn,
        tool_call_id, ImageUrl, PartIn, ToolChoiceIn, Turn,
    },
    reasoning::{client_thinking_blocks, ClientThinking},
    AdapterError,
};

/// Builds the `generateContent` body from an OpenAI chat body (without `model`).
pub(crate) fn convert(body: &Map<String, Value>) -> Result<GenerateContentRequest<'_>, AdapterError> {
    let (system, contents) = convert_messages(openai_in::messages(body)?)?;
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
    // The function name of each tool call id so far (a later call reusing an id wins), so a tool
    // message finds its call without searching the history again.
    let mut call_names: HashMap<&str, Option<&str>> = HashMap::new();
    for m in each_message(list) {
        let (content, at) = (m.content, m.at.as_str());
        let (role, parts) = match m.role {
            "system" | "developer" => {
                system.extend(parts(content, at, false)?);
                continue;
            }
            "user" => (Role::User, parts(content, at, true)?),
            "assistant" => {
                let calls = m.raw.get("tool_calls").and_then(Value::as_array);
                // In reverse, so the first of a message's calls with an id wins, as before.
                for c in calls.into_iter().flatten().rev() {
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        let name = c.get("function").and_then(|f| f.get("name")?.as_str());
                        call_names.insert(id, name);
                    }
                }
                (Role::Model, model_parts(m.raw, at)?)
            }
            "tool" => (
                Role::User,
                vec![function_response(&call_names, m.raw, content, at)?],
            ),
            _ => return Err(m.unsupported_role("gemini")),
        };
        push_turn(&mut out, role, parts);
    }
    Ok((system, out))
}

/// The parts of a message `content`: a string, or text (and refusal) parts and, where `images`
/// allows, image parts. Empty texts are left out.
fn parts<'a>(content: &'a Value, at: &str, images: bool) -> Result<Vec<Part<'a>>, AdapterError> {
    content_blocks(content, at, text_part, |part, _, param, out| {
        match part {
            PartIn::Text(text) => out.extend(text_part(text)),
            PartIn::Image(image) if images => out.push(image_part(image.url(param)?, param)?),
            other => return Err(openai_in::unsupported_part(&other, "gemini", param)),
        }
        Ok(())
    })
}

fn text_part(text: &str) -> Option<Part<'_>> {
    (!text.is_empty()).then_some(Part::Text(text))
}

/// `data:<mime>;base64,<data>` becomes `inlineData`, an http(s) URL `fileData` with a mime type
/// guessed from the extension (default `image/jpeg`).
fn image_part<'a>(url: &'a str, param: &str) -> Result<Part<'a>, AdapterError> {
    match image_url(url, param)? {
        ImageUrl::Data { media_type, data } => {
            let mime_type = media_type
                .filter(|m| !m.is_empty())
                .ok_or_else(|| invalid("image data: URLs must be base64 with a media type", param))?;
            Ok(Part::InlineData(Blob { mime_type, data }))
        }
        ImageUrl::Http(url) => Ok(file_part(url)),
        ImageUrl::Other => Err(invalid("image URLs must be http(s) or data: URLs", param)),
    }
}

/// An http(s) image URL as `fileData`, its mime type guessed from the extension.
fn file_part(url: &str) -> Part<'_> {
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
    Part::FileData(FileData {
        mime_type,
        file_uri: url,
    })
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
    for call in each_tool_call(m, at)? {
        let param = call.param.as_str();
        let name = call
            .name
            .ok_or_else(|| invalid("a tool call needs `function.name`", param))?;
        let args = call.arguments_object()?;
        let call_fn = FunctionCall { name, args };
        out.push(match call_signature(call.raw, param)? {
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

/// A `tool` message: the function name comes from the earlier tool call with the same id.
fn function_response<'a>(
    call_names: &HashMap<&'a str, Option<&'a str>>,
    m: &'a Value,
    content: &'a Value,
    at: &str,
) -> Result<Part<'a>, AdapterError> {
    let id = tool_call_id(m, at)?;
    let name = call_names.get(id).copied().flatten().ok_or_else(|| {
        invalid(
            format!("no earlier tool call has the id `{id}`"),
            format!("{at}.tool_call_id"),
        )
    })?;
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
    let list = openai_in::tools(body)?;
    let mut declarations = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = function_tool(t, i, "gemini")?;
        // Gemini rejects an OBJECT schema without properties: a function without parameters.
        let parameters = f
            .raw
            .get("parameters")
            .filter(|p| {
                p.get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty())
            })
            .map(to_schema);
        declarations.push(FunctionDeclaration {
            name: f.name,
            description: f.description,
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
    let choice = match openai_in::tool_choice(body)? {
        ToolChoiceIn::Unset => None,
        ToolChoiceIn::Auto => config("AUTO", Vec::new()),
        ToolChoiceIn::None => config("NONE", Vec::new()),
        ToolChoiceIn::Required => config("ANY", Vec::new()),
        ToolChoiceIn::Function(name) => config("ANY", vec![name]),
    };
    let tools = vec![Tool {
        function_declarations: declarations,
    }];
    Ok((tools, choice))
}

impl<'a> Turn for Content<'a> {
    type Role = Role;
    type Block = Part<'a>;
    fn has_role(&self, role: Role) -> bool {
        self.role == Some(role)
    }
    fn blocks_mut(&mut self) -> &mut Vec<Part<'a>> {
        &mut self.parts
    }
    fn new(role: Role, parts: Vec<Part<'a>>) -> Self {
        Content {
            role: Some(role),
            parts,
        }
    }
}
