//! OpenAI chat and embeddings requests -> Gemini `GenerateContentRequest` / `BatchEmbedContentsRequest`.
//! Borrows from the client's body; tool call arguments, tool results and JSON schemas are converted
//! into owned values.

use serde_json::{Map, Value};

use super::types::{
    BatchEmbedContentsRequest, Blob, Content, EmbedContentRequest, FileData, FunctionCall,
    FunctionCallingConfig, FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerationConfig,
    Part, Role, ThinkingConfig, Tool, ToolConfig,
};
use crate::AdapterError;

/// The keywords of Gemini's OpenAPI-subset `Schema`; every other JSON-schema keyword
/// (`additionalProperties`, `$schema`, `$ref`, `$defs`, `strict`, `const`, `oneOf`, ...) is dropped.
const SCHEMA_KEYS: [&str; 22] = [
    "anyOf",
    "default",
    "description",
    "enum",
    "example",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "nullable",
    "pattern",
    "properties",
    "propertyOrdering",
    "required",
    "title",
    "type",
];

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

/// Assistant text and `tool_calls` (arguments parsed into `args`).
fn model_parts<'a>(m: &'a Value, at: &str) -> Result<Vec<Part<'a>>, AdapterError> {
    let mut out = parts(m.get("content").unwrap_or(&Value::Null), at, false)?;
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
        out.push(Part::FunctionCall(FunctionCall { name, args }));
    }
    Ok(out)
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

/// A JSON schema -> Gemini's OpenAPI-subset `Schema`: unknown keywords dropped, `type` upper-cased,
/// `["T", "null"]` types turned into `T` + `nullable`, non-string enums dropped.
pub(crate) fn to_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in map.iter().filter(|(k, _)| SCHEMA_KEYS.contains(&k.as_str())) {
        let v = match (k.as_str(), v) {
            ("properties", Value::Object(props)) => {
                Value::Object(props.iter().map(|(n, s)| (n.clone(), to_schema(s))).collect())
            }
            ("items", _) => to_schema(v),
            ("anyOf", Value::Array(list)) => Value::Array(list.iter().map(to_schema).collect()),
            ("type", Value::String(t)) => Value::String(t.to_ascii_uppercase()),
            ("type", Value::Array(types)) => {
                let mut names = types.iter().filter_map(Value::as_str);
                if types.iter().any(|t| t == "null") {
                    out.insert("nullable".into(), Value::Bool(true));
                }
                match names.find(|t| *t != "null") {
                    Some(t) => Value::String(t.to_ascii_uppercase()),
                    None => continue,
                }
            }
            ("enum", Value::Array(list)) if !list.iter().all(Value::is_string) => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn generation_config(body: &Map<String, Value>) -> Result<Option<GenerationConfig<'_>>, AdapterError> {
    let number = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{field}` must be a number"), field)),
    };
    let max_output_tokens = match ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|f| body.get(f).filter(|v| !v.is_null()).map(|v| (f, v)))
    {
        Some((field, v)) => Some(
            v.as_u64()
                .ok_or_else(|| invalid(format!("`{field}` must be a non-negative integer"), field))?,
        ),
        None => None,
    };
    let candidate_count = match body.get("n") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid("`n` must be a positive integer", "n"))?,
        ),
    };
    let (response_mime_type, response_schema) = response_format(body.get("response_format"));
    let config = GenerationConfig {
        stop_sequences: stop_sequences(body.get("stop"))?,
        response_mime_type,
        response_schema,
        candidate_count: candidate_count.filter(|n| *n > 1),
        max_output_tokens,
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        seed: body.get("seed").and_then(Value::as_i64),
        thinking_config: thinking_config(body.get("reasoning_effort"))?,
    };
    let empty = serde_json::to_value(&config).is_ok_and(|v| v.as_object().is_some_and(Map::is_empty));
    Ok((!empty).then_some(config))
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

/// `reasoning_effort` -> a thinking budget with thoughts returned; `none` turns thinking off.
fn thinking_config(effort: Option<&Value>) -> Result<Option<ThinkingConfig>, AdapterError> {
    let budget = match effort.filter(|v| !v.is_null()).map(Value::as_str) {
        None => return Ok(None),
        Some(Some("none")) => 0,
        Some(Some("minimal" | "low")) => 1024,
        Some(Some("medium")) => 8192,
        Some(Some("high")) => 24_576,
        Some(_) => {
            return Err(invalid(
                "`reasoning_effort` must be none, minimal, low, medium or high",
                "reasoning_effort",
            ))
        }
    };
    Ok(Some(ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: budget > 0,
    }))
}

/// `json_schema` -> JSON output with a response schema; `json_object` -> JSON output.
fn response_format(format: Option<&Value>) -> (Option<&'static str>, Option<Value>) {
    let Some(f) = format else {
        return (None, None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("json_object") => (Some("application/json"), None),
        Some("json_schema") => {
            let schema = f
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .filter(|s| s.is_object());
            (Some("application/json"), schema.map(to_schema))
        }
        _ => (None, None),
    }
}

/// Builds the `batchEmbedContents` body: one request per input string. `model` is `models/{model}`.
pub(crate) fn convert_embeddings<'a>(
    body: &'a Map<String, Value>,
    model: &'a str,
) -> Result<BatchEmbedContentsRequest<'a>, AdapterError> {
    let inputs: Vec<&str> = match body.get("input") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("gemini embeds text inputs only (no token arrays)", "input"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                "`input` must be a string or an array of strings",
                "input",
            ))
        }
    };
    let output_dimensionality = body.get("dimensions").and_then(Value::as_u64);
    let requests = inputs
        .into_iter()
        .map(|text| EmbedContentRequest {
            model,
            content: Content {
                role: None,
                parts: vec![Part::Text(text)],
            },
            output_dimensionality,
        })
        .collect();
    Ok(BatchEmbedContentsRequest { requests })
}
