//! OpenAI embeddings <-> Vertex AI text embeddings (`POST {base}/publishers/google/models/{model}:predict`):
//! one instance `{"content": text}` per input string, `dimensions` -> `parameters.outputDimensionality`;
//! the answer's `predictions[].embeddings.values` become the OpenAI list, and the token counts of
//! `statistics.token_count` its `prompt_tokens`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tollgate_schemas::TokenUsage;

use crate::{gemini, AdapterError, Parsed};

#[derive(Debug, Serialize)]
struct PredictRequest<'a> {
    instances: Vec<Instance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Parameters>,
}

#[derive(Debug, Serialize)]
struct Instance<'a> {
    content: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    output_dimensionality: u64,
}

#[derive(Debug, Deserialize)]
struct PredictResponse {
    predictions: Vec<Prediction>,
}

#[derive(Debug, Deserialize)]
struct Prediction {
    embeddings: Embedding,
}

#[derive(Debug, Deserialize)]
struct Embedding {
    values: Vec<f64>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Debug, Deserialize)]
struct Statistics {
    /// A number in the answer (protobuf `Value`), so read as a float.
    #[serde(default)]
    token_count: f64,
}

/// Builds the `predict` body from an OpenAI embeddings body (without `model`).
pub(crate) fn convert_request(body: &Map<String, Value>) -> Result<Bytes, AdapterError> {
    let instances = gemini::embedding_inputs(body, "vertex")?
        .into_iter()
        .map(|content| Instance { content })
        .collect();
    let parameters = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|output_dimensionality| Parameters {
            output_dimensionality,
        });
    serde_json::to_vec(&PredictRequest {
        instances,
        parameters,
    })
    .map(Bytes::from)
    .map_err(|e| AdapterError::InvalidRequest {
        message: e.to_string(),
        param: None,
    })
}

/// Converts a `predict` answer into OpenAI's embeddings list; usage is the sum of the token counts.
pub(crate) fn convert_response(body: &[u8]) -> Result<Parsed, AdapterError> {
    let res: PredictResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let tokens: f64 = res
        .predictions
        .iter()
        .filter_map(|p| p.embeddings.statistics.as_ref())
        .map(|s| s.token_count.max(0.0))
        .sum();
    // Token counts are whole numbers; the float only carries them.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let tokens = tokens.round() as u64;
    let data: Vec<Value> = res
        .predictions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            serde_json::json!({"object": "embedding", "index": index, "embedding": p.embeddings.values})
        })
        .collect();
    let out = serde_json::json!({"object": "list", "data": data, "model": "",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    Ok(Parsed {
        body: Bytes::from(
            serde_json::to_vec(&out).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?,
        ),
        usage: Some(TokenUsage {
            input: tokens,
            ..TokenUsage::default()
        }),
        model: None,
    })
}
