//! OpenAI embeddings <-> Cohere `POST /v2/embed`. `input` (a string or strings; at most 96, Cohere's
//! limit) becomes `texts`; `dimensions` -> `output_dimension`; `input_type` defaults to
//! `search_document` and may be set by the client as an extension field (as may `truncate`).
//!
//! `encoding_format: base64` is honoured: the adapter asks Cohere for `["float", "base64"]` and, seeing
//! `base64` in the answer, encodes the float vectors itself as OpenAI does (little-endian `f32`
//! bytes), so the answer never depends on how Cohere packs its own base64 type. (Parsing an answer
//! does not see the request, so the requested types are the signal.)

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tollgate_schemas::TokenUsage;

use super::{
    request::invalid,
    response::count,
    types::{EmbedRequest, EmbedResponse, Embeddings},
};
use crate::{AdapterError, Parsed};

/// Cohere's limit of texts per request.
pub const MAX_TEXTS: usize = 96;

const INPUT_TYPES: [&str; 4] = ["search_document", "search_query", "classification", "clustering"];

pub(crate) fn convert_request<'a>(
    body: &'a Map<String, Value>,
    model: &'a str,
) -> Result<EmbedRequest<'a>, AdapterError> {
    let texts: Vec<&str> = match body.get("input") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("cohere embeds text inputs only (no token arrays)", "input"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                "`input` must be a string or a non-empty array of strings",
                "input",
            ))
        }
    };
    if texts.len() > MAX_TEXTS {
        return Err(invalid(
            format!("cohere embeds at most {MAX_TEXTS} inputs per request"),
            "input",
        ));
    }
    let input_type = match body.get("input_type") {
        None | Some(Value::Null) => "search_document",
        Some(Value::String(t)) if INPUT_TYPES.contains(&t.as_str()) => t,
        Some(_) => {
            return Err(invalid(
                "`input_type` must be search_document, search_query, classification or clustering",
                "input_type",
            ))
        }
    };
    let embedding_types: &'static [&'static str] = match body.get("encoding_format") {
        None | Some(Value::Null) => &["float"],
        Some(Value::String(f)) if f == "float" => &["float"],
        Some(Value::String(f)) if f == "base64" => &["float", "base64"],
        Some(_) => {
            return Err(invalid(
                "`encoding_format` must be float or base64",
                "encoding_format",
            ))
        }
    };
    let truncate = match body.get("truncate") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if matches!(t.as_str(), "NONE" | "START" | "END") => Some(t.as_str()),
        Some(_) => return Err(invalid("`truncate` must be NONE, START or END", "truncate")),
    };
    let positive = |field: &str| match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| invalid(format!("`{field}` must be a positive integer"), field)),
    };
    Ok(EmbedRequest {
        model,
        texts,
        input_type,
        embedding_types,
        output_dimension: positive("dimensions")?,
        truncate,
        max_tokens: None,
        priority: body.get("priority").and_then(Value::as_u64).map(|p| p.min(999)),
    })
}

/// Converts an embed answer from `model` into OpenAI's embeddings list, with the billed (else
/// counted) input tokens as usage.
pub(crate) fn convert_response(body: &[u8], model: &str) -> Result<Parsed, AdapterError> {
    let res: EmbedResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let (vectors, as_base64) = match res.embeddings {
        Embeddings::Floats(v) => (v, false),
        Embeddings::ByType {
            float: Some(v),
            base64,
        } => (v, base64.is_some()),
        Embeddings::ByType { float: None, .. } => {
            return Err(AdapterError::BadUpstreamBody(
                "embed answer without float embeddings".into(),
            ))
        }
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if as_base64 { json!(f32_base64(v)) } else { json!(v) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let meta = res.meta.unwrap_or_default();
    let input = meta
        .billed_units
        .and_then(|u| u.input_tokens)
        .or_else(|| meta.tokens.and_then(|u| u.input_tokens))
        .map_or(0, count);
    let out = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": input, "total_tokens": input}});
    let bytes = serde_json::to_vec(&out).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    Ok(Parsed {
        body: Bytes::from(bytes),
        usage: Some(TokenUsage {
            input,
            ..TokenUsage::default()
        }),
        model: (!model.is_empty()).then(|| model.to_string()),
    })
}

/// OpenAI's base64 embedding: the vector as little-endian `f32` bytes, standard base64 with padding.
pub(crate) fn f32_base64(v: &[f64]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
