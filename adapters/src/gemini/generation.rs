//! OpenAI sampling, length, stop, output-format and reasoning fields -> Gemini `generationConfig`.

use serde_json::{Map, Value};

use super::{
    request::invalid,
    schema::to_schema,
    types::{GenerationConfig, ThinkingConfig},
};
use crate::AdapterError;

pub(crate) fn generation_config(
    body: &Map<String, Value>,
) -> Result<Option<GenerationConfig<'_>>, AdapterError> {
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
