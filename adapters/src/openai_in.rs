//! Reading the OpenAI chat request every translating adapter (Anthropic, Bedrock, Cohere, Gemini)
//! starts from: borrowing, typed views of `messages`, content parts, tool calls, tools and the
//! scalar fields, with the validation errors they share (same message, same `param`). A provider
//! module keeps only its own mapping: which parts it takes where, and what it turns them into.
//!
//! Nothing here clones the client's JSON; only tool call arguments (a JSON string in OpenAI) are
//! parsed into owned values, and only for the providers that want an object.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::AdapterError;

/// The client's request is wrong: a 400 naming the offending field.
pub(crate) fn invalid(message: impl Into<String>, param: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Refuses `n` greater than 1, which `provider` cannot answer.
pub(crate) fn reject_n(body: &Map<String, Value>, provider: &str) -> Result<(), AdapterError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid(
            format!("`n` greater than 1 is not supported by {provider}"),
            "n",
        ));
    }
    Ok(())
}

/// The `messages` array.
pub(crate) fn messages(body: &Map<String, Value>) -> Result<&[Value], AdapterError> {
    match body.get("messages") {
        Some(Value::Array(list)) => Ok(list),
        _ => Err(invalid("`messages` must be an array", "messages")),
    }
}

/// One entry of `messages`.
pub(crate) struct MessageIn<'a> {
    /// The whole message object.
    pub raw: &'a Value,
    /// `role`, empty when missing.
    pub role: &'a str,
    /// `content`, `null` when missing.
    pub content: &'a Value,
    /// `messages[i]`, the prefix of every `param` about this message.
    pub at: String,
}

/// The messages with their roles, contents and positions.
pub(crate) fn each_message(list: &[Value]) -> impl Iterator<Item = MessageIn<'_>> {
    list.iter().enumerate().map(|(i, raw)| MessageIn {
        raw,
        role: raw.get("role").and_then(Value::as_str).unwrap_or_default(),
        content: raw.get("content").unwrap_or(&Value::Null),
        at: format!("messages[{i}]"),
    })
}

impl MessageIn<'_> {
    /// The error for a role `provider` has no equivalent for.
    pub(crate) fn unsupported_role(&self, provider: &str) -> AdapterError {
        let message = format!(
            "messages with role `{}` are not supported by {provider}",
            self.role
        );
        invalid(message, format!("{}.role", self.at))
    }
}

/// A message `content`.
pub(crate) enum ContentIn<'a> {
    /// Absent or `null`.
    Null,
    /// A plain string (possibly empty).
    Text(&'a str),
    /// An array of content parts (see [`each_part`]).
    Parts(&'a [Value]),
}

/// Reads a message `content`: a string, an array of parts, or nothing.
pub(crate) fn content<'a>(content: &'a Value, at: &str) -> Result<ContentIn<'a>, AdapterError> {
    match content {
        Value::Null => Ok(ContentIn::Null),
        Value::String(s) => Ok(ContentIn::Text(s)),
        Value::Array(parts) => Ok(ContentIn::Parts(parts)),
        _ => Err(invalid(
            "`content` must be a string or an array",
            format!("{at}.content"),
        )),
    }
}

/// One content part.
pub(crate) enum PartIn<'a> {
    /// A `text` or `refusal` part: its text (possibly empty).
    Text(&'a str),
    /// An `image_url` part.
    Image(ImagePart<'a>),
    /// Any other part: its `type` (`?` when missing).
    Other(&'a str),
}

impl PartIn<'_> {
    /// The part's `type`, for error messages.
    pub(crate) fn kind(&self) -> &str {
        match self {
            PartIn::Text(_) => "text",
            PartIn::Image(_) => "image_url",
            PartIn::Other(kind) => kind,
        }
    }
}

/// An `image_url` part; its URL is read only where the provider takes images, so that elsewhere
/// the part is refused as unsupported rather than as malformed.
pub(crate) struct ImagePart<'a> {
    image: Option<&'a Value>,
}

impl<'a> ImagePart<'a> {
    /// `image_url.url` (or a bare `image_url` string).
    pub(crate) fn url(&self, param: &str) -> Result<&'a str, AdapterError> {
        let url = self.image.and_then(|i| i.get("url")).or(self.image);
        url.and_then(Value::as_str)
            .ok_or_else(|| invalid("an image_url part needs `image_url.url`", param))
    }

    /// `image_url.detail`, when it is one OpenAI defines.
    pub(crate) fn detail(&self) -> Option<&'a str> {
        self.image
            .and_then(|i| i.get("detail"))
            .and_then(Value::as_str)
            .filter(|d| matches!(*d, "auto" | "low" | "high"))
    }
}

/// Calls `f` with each part of `parts`, typed and as sent, and its `param` (`{at}.content[j]`). A
/// `text` or `refusal` part without its text is refused here.
pub(crate) fn each_part<'a>(
    parts: &'a [Value],
    at: &str,
    mut f: impl FnMut(PartIn<'a>, &'a Value, &str) -> Result<(), AdapterError>,
) -> Result<(), AdapterError> {
    for (j, p) in parts.iter().enumerate() {
        let param = format!("{at}.content[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
        let part = match kind {
            "text" | "refusal" => match p.get(kind).and_then(Value::as_str) {
                Some(text) => PartIn::Text(text),
                None => return Err(invalid(format!("a {kind} part needs `{kind}`"), param)),
            },
            "image_url" => PartIn::Image(ImagePart {
                image: p.get("image_url"),
            }),
            _ => PartIn::Other(kind),
        };
        f(part, p, &param)?;
    }
    Ok(())
}

/// Converts a message `content` into a provider's blocks: a string becomes `text(s)` (when that
/// gives a block), each part of an array goes to `part`, which pushes what it makes onto `out`.
pub(crate) fn content_blocks<'a, B>(
    content: &'a Value,
    at: &str,
    text: impl Fn(&'a str) -> Option<B>,
    mut part: impl FnMut(PartIn<'a>, &'a Value, &str, &mut Vec<B>) -> Result<(), AdapterError>,
) -> Result<Vec<B>, AdapterError> {
    let parts = match self::content(content, at)? {
        ContentIn::Null => return Ok(Vec::new()),
        ContentIn::Text(s) => return Ok(text(s).into_iter().collect()),
        ContentIn::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    each_part(parts, at, |p, raw, param| part(p, raw, param, &mut out))?;
    Ok(out)
}

/// The error for a part `provider` does not take in this place.
pub(crate) fn unsupported_part(part: &PartIn<'_>, provider: &str, param: &str) -> AdapterError {
    let message = format!(
        "content parts of type `{}` are not supported here by {provider}",
        part.kind()
    );
    invalid(message, param)
}

/// An image URL: `data:<header>,<data>`, http(s), or something else.
pub(crate) enum ImageUrl<'a> {
    /// A data: URL; `media_type` is the header without `;base64`, `None` when it is not base64.
    Data {
        media_type: Option<&'a str>,
        data: &'a str,
    },
    Http(&'a str),
    Other,
}

/// Splits an image URL; a data: URL without a comma is refused.
pub(crate) fn image_url<'a>(url: &'a str, param: &str) -> Result<ImageUrl<'a>, AdapterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("malformed data: URL", param))?;
        return Ok(ImageUrl::Data {
            media_type: header.strip_suffix(";base64"),
            data,
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageUrl::Http(url));
    }
    Ok(ImageUrl::Other)
}

/// An assistant message's `tool_calls` (empty when absent or `null`).
pub(crate) fn tool_calls<'a>(m: &'a Value, at: &str) -> Result<&'a [Value], AdapterError> {
    match m.get("tool_calls") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(calls)) => Ok(calls),
        Some(_) => Err(invalid(
            "`tool_calls` must be an array",
            format!("{at}.tool_calls"),
        )),
    }
}

/// One entry of an assistant message's `tool_calls`.
pub(crate) struct ToolCallIn<'a> {
    /// The whole tool call object.
    pub raw: &'a Value,
    pub id: Option<&'a str>,
    /// `function.name`.
    pub name: Option<&'a str>,
    /// `function.arguments`, empty when missing.
    pub arguments: &'a str,
    /// `{at}.tool_calls[j]`.
    pub param: String,
}

/// The tool calls of assistant message `m` (see [`tool_calls`]).
pub(crate) fn each_tool_call<'a: 'b, 'b>(
    m: &'a Value,
    at: &'b str,
) -> Result<impl Iterator<Item = ToolCallIn<'a>> + 'b, AdapterError> {
    let calls = tool_calls(m, at)?;
    Ok(calls.iter().enumerate().map(move |(j, raw)| {
        let function = raw.get("function");
        ToolCallIn {
            raw,
            id: raw.get("id").and_then(Value::as_str),
            name: function.and_then(|f| f.get("name")).and_then(Value::as_str),
            arguments: function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or_default(),
            param: format!("{at}.tool_calls[{j}]"),
        }
    }))
}

impl<'a> ToolCallIn<'a> {
    /// `id` and `function.name`, both required.
    pub(crate) fn id_and_name(&self) -> Result<(&'a str, &'a str), AdapterError> {
        match (self.id, self.name) {
            (Some(id), Some(name)) => Ok((id, name)),
            _ => Err(invalid(
                "a tool call needs `id` and `function.name`",
                self.param.as_str(),
            )),
        }
    }

    /// The arguments as a JSON object (`{}` when blank); anything but an object is refused.
    pub(crate) fn arguments_object(&self) -> Result<Value, AdapterError> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        match serde_json::from_str::<Value>(self.arguments) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(invalid(
                "tool call arguments must be a JSON object",
                format!("{}.function.arguments", self.param),
            )),
        }
    }
}

/// A `tool` message's `tool_call_id`.
pub(crate) fn tool_call_id<'a>(m: &'a Value, at: &str) -> Result<&'a str, AdapterError> {
    m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "a tool message needs `tool_call_id`",
            format!("{at}.tool_call_id"),
        )
    })
}

/// Conversation turns that [`push_turn`] can merge: providers that want user and assistant turns
/// to alternate get consecutive turns of the same role as one.
pub(crate) trait Turn {
    type Role: Copy;
    type Block;
    fn has_role(&self, role: Self::Role) -> bool;
    fn blocks_mut(&mut self) -> &mut Vec<Self::Block>;
    fn new(role: Self::Role, blocks: Vec<Self::Block>) -> Self;
}

/// Implements [`Turn`] for a provider message struct `$message<'a>` with a `role: $role` field
/// and a `$blocks: Vec<$block<'a>>` field.
macro_rules! impl_turn {
    ($message:ident, $role:ty, $block:ident, $blocks:ident) => {
        impl<'a> $crate::openai_in::Turn for $message<'a> {
            type Role = $role;
            type Block = $block<'a>;
            fn has_role(&self, role: $role) -> bool {
                self.role == role
            }
            fn blocks_mut(&mut self) -> &mut Vec<$block<'a>> {
                &mut self.$blocks
            }
            fn new(role: $role, $blocks: Vec<$block<'a>>) -> Self {
                $message { role, $blocks }
            }
        }
    };
}
pub(crate) use impl_turn;

/// Appends `blocks` as a `role` turn, to the last turn when it has the same role; nothing when
/// `blocks` is empty.
pub(crate) fn push_turn<T: Turn>(out: &mut Vec<T>, role: T::Role, blocks: Vec<T::Block>) {
    match out.last_mut() {
        _ if blocks.is_empty() => {}
        Some(last) if last.has_role(role) => last.blocks_mut().extend(blocks),
        _ => out.push(T::new(role, blocks)),
    }
}

/// The `tools` array (empty when absent or `null`).
pub(crate) fn tools(body: &Map<String, Value>) -> Result<&[Value], AdapterError> {
    match body.get("tools") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(list)) => Ok(list),
        Some(_) => Err(invalid("`tools` must be an array", "tools")),
    }
}

/// A function tool of `tools`.
pub(crate) struct FunctionIn<'a> {
    /// The `function` object.
    pub raw: &'a Value,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

/// `tools[i]` as a function tool; other tool types (and a function without a name) are refused.
pub(crate) fn function_tool<'a>(
    t: &'a Value,
    i: usize,
    provider: &str,
) -> Result<FunctionIn<'a>, AdapterError> {
    let f = t
        .get("function")
        .filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
    let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
    let (Some(raw), Some(name)) = (f, name) else {
        return Err(invalid(
            format!("only function tools with a name are supported by {provider}"),
            format!("tools[{i}]"),
        ));
    };
    Ok(FunctionIn {
        raw,
        name,
        description: raw.get("description").and_then(Value::as_str),
    })
}

impl<'a> FunctionIn<'a> {
    /// `parameters` when it is an object, else the schema of a function without parameters.
    pub(crate) fn object_schema(&self) -> Cow<'a, Value> {
        match self.raw.get("parameters") {
            Some(p @ Value::Object(_)) => Cow::Borrowed(p),
            _ => Cow::Owned(serde_json::json!({"type": "object", "properties": {}})),
        }
    }
}

/// `tool_choice`.
pub(crate) enum ToolChoiceIn<'a> {
    /// Absent or `null`.
    Unset,
    Auto,
    None,
    Required,
    /// `{"type": "function", "function": {"name": ...}}`.
    Function(&'a str),
}

/// Reads `tool_choice`: `auto`, `none`, `required` or a named function.
pub(crate) fn tool_choice(body: &Map<String, Value>) -> Result<ToolChoiceIn<'_>, AdapterError> {
    Ok(match body.get("tool_choice") {
        None | Some(Value::Null) => ToolChoiceIn::Unset,
        Some(Value::String(s)) if s == "auto" => ToolChoiceIn::Auto,
        Some(Value::String(s)) if s == "none" => ToolChoiceIn::None,
        Some(Value::String(s)) if s == "required" => ToolChoiceIn::Required,
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => ToolChoiceIn::Function(name),
            None => return Err(invalid("unknown `tool_choice`", "tool_choice")),
        },
    })
}

/// A numeric field (`temperature`, `top_p`, ...); `null` counts as absent.
pub(crate) fn number(body: &Map<String, Value>, field: &str) -> Result<Option<f64>, AdapterError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{field}` must be a number"), field)),
    }
}

/// The output limit the client set: `max_completion_tokens`, else the older `max_tokens`, with
/// the field's name for errors. `null` counts as absent.
pub(crate) fn max_tokens_field(body: &Map<String, Value>) -> Option<(&'static str, &Value)> {
    ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|f| body.get(f).filter(|v| !v.is_null()).map(|v| (f, v)))
}

/// `stop`: a string or an array of strings; empty strings are left out.
pub(crate) fn stop_sequences(stop: Option<&Value>) -> Result<Vec<&str>, AdapterError> {
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

/// OpenAI's `reasoning_effort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effort {
    None,
    /// `minimal` or `low`.
    Low,
    Medium,
    High,
}

/// Reads `reasoning_effort` (`None` when absent or `null`).
pub(crate) fn reasoning_effort(effort: Option<&Value>) -> Result<Option<Effort>, AdapterError> {
    match effort.filter(|v| !v.is_null()).map(Value::as_str) {
        None => Ok(None),
        Some(Some("none")) => Ok(Some(Effort::None)),
        Some(Some("minimal" | "low")) => Ok(Some(Effort::Low)),
        Some(Some("medium")) => Ok(Some(Effort::Medium)),
        Some(Some("high")) => Ok(Some(Effort::High)),
        Some(_) => Err(invalid(
            "`reasoning_effort` must be none, minimal, low, medium or high",
            "reasoning_effort",
        )),
    }
}

/// The extended-thinking budget for Anthropic models (direct or on Bedrock); `None`: no thinking.
pub(crate) fn anthropic_thinking_budget(effort: Option<&Value>) -> Result<Option<u64>, AdapterError> {
    Ok(match reasoning_effort(effort)? {
        None | Some(Effort::None) => None,
        Some(Effort::Low) => Some(1024),
        Some(Effort::Medium) => Some(4096),
        Some(Effort::High) => Some(16_384),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn param_of(e: AdapterError) -> Option<String> {
        match e {
            AdapterError::InvalidRequest { param, .. } => param,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn parts_are_typed_and_text_parts_need_their_text() {
        let parts = json!([
            {"type": "text", "text": "a"},
            {"type": "refusal", "refusal": "b"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            {"type": "input_audio"}
        ]);
        let mut seen = Vec::new();
        each_part(parts.as_array().unwrap(), "messages[0]", |p, raw, param| {
            assert!(raw.is_object());
            let what = match &p {
                PartIn::Text(t) => (*t).to_string(),
                PartIn::Image(i) => format!("{}|{:?}", i.url(param)?, i.detail()),
                PartIn::Other(kind) => (*kind).to_string(),
            };
            seen.push(format!("{param}={what}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "messages[0].content[0]=a",
                "messages[0].content[1]=b",
                "messages[0].content[2]=https://x/y.png|Some(\"low\")",
                "messages[0].content[3]=input_audio",
            ]
        );
        let bad = json!([{"type": "text"}]);
        let e = each_part(bad.as_array().unwrap(), "messages[2]", |_, _, _| Ok(())).unwrap_err();
        assert_eq!(param_of(e).as_deref(), Some("messages[2].content[0]"));
    }

    #[test]
    fn image_urls_split_into_data_http_and_other() {
        match image_url("data:image/png;base64,AAAA", "p").unwrap() {
            ImageUrl::Data { media_type, data } => {
                assert_eq!((media_type, data), (Some("image/png"), "AAAA"));
            }
            _ => panic!("not a data URL"),
        }
        assert!(matches!(
            image_url("data:text/plain,hi", "p").unwrap(),
            ImageUrl::Data { media_type: None, .. }
        ));
        assert!(matches!(
            image_url("http://h/i.gif", "p").unwrap(),
            ImageUrl::Http(_)
        ));
        assert!(matches!(
            image_url("ftp://h/i.gif", "p").unwrap(),
            ImageUrl::Other
        ));
        assert!(image_url("data:image/png;base64", "p").is_err());
    }

    #[test]
    fn tool_call_arguments_must_be_an_object() {
        let m = json!({"tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": " "}},
            {"id": "b", "function": {"name": "g", "arguments": "[1]"}},
            {"function": {"name": "h"}}
        ]});
        let calls: Vec<_> = each_tool_call(&m, "messages[1]").unwrap().collect();
        assert_eq!(calls[0].arguments_object().unwrap(), json!({}));
        let e = calls[1].arguments_object().unwrap_err();
        assert_eq!(
            param_of(e).as_deref(),
            Some("messages[1].tool_calls[1].function.arguments")
        );
        assert!(calls[2].id_and_name().is_err());
        assert!(each_tool_call(&json!({"tool_calls": 1}), "m").is_err());
    }

    #[derive(Debug, PartialEq)]
    struct T(u8, Vec<u8>);

    impl Turn for T {
        type Role = u8;
        type Block = u8;
        fn has_role(&self, role: u8) -> bool {
            self.0 == role
        }
        fn blocks_mut(&mut self) -> &mut Vec<u8> {
            &mut self.1
        }
        fn new(role: u8, blocks: Vec<u8>) -> Self {
            T(role, blocks)
        }
    }

    #[test]
    fn same_role_turns_merge_and_empty_ones_vanish() {
        let mut out: Vec<T> = Vec::new();
        push_turn(&mut out, 1, vec![1]);
        push_turn(&mut out, 1, vec![2]);
        push_turn(&mut out, 2, vec![]);
        push_turn(&mut out, 2, vec![3]);
        push_turn(&mut out, 1, vec![4]);
        assert_eq!(out, [T(1, vec![1, 2]), T(2, vec![3]), T(1, vec![4])]);
    }

    #[test]
    fn scalars() {
        let body = json!({"temperature": null, "top_p": "x", "max_tokens": 5, "stop": ["", "a"],
            "reasoning_effort": "minimal"});
        let body = body.as_object().unwrap();
        assert_eq!(number(body, "temperature").unwrap(), None);
        assert!(number(body, "top_p").is_err());
        assert_eq!(max_tokens_field(body).map(|(f, _)| f), Some("max_tokens"));
        assert_eq!(stop_sequences(body.get("stop")).unwrap(), ["a"]);
        assert_eq!(
            anthropic_thinking_budget(body.get("reasoning_effort")).unwrap(),
            Some(1024)
        );
        assert!(reasoning_effort(Some(&json!("max"))).is_err());
    }
}
