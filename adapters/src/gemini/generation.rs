//! OpenAI sampling, length, stop, output-format and reasoning fields -> Gemini `generationConfig`.

use serde_json::{Map, Value};

use super::{
    request::invalid,
    schema::to_schema,
    types::{GenerationConfig, ThinkingConfig},
};
use crate::{
    openai_in::{max_tokens_field, reasoning_effort, stop_sequences, Effort},
    AdapterError,
};

pub(crate) fn generation_config(
    body: &Map<String, Value>,
) -> Result<Option<GenerationConfig<'_>>, AdapterError> {
    let number = |field: &str| crate::openai_in::number(body, field);
    let max_output_tokens = match max_tokens_field(body) {
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

/// `reasoning_effort` -> a thinking budget with thoughts returned; `none` turns thinking off.
fn thinking_config(effort: Option<&Value>) -> Result<Option<ThinkingConfig>, AdapterError> {
    let budget = match reasoning_effort(effort)? {
        None => return Ok(None),
        Some(Effort::None) => 0,
        Some(Effort::Low) => 1024,
        Some(Effort::Medium) => 8192,
        Some(Effort::High) => 24_576,
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
