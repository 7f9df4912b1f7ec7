//! OpenAI embeddings <-> Gemini `batchEmbedContents`: one `EmbedContentRequest` per input string
//! (`model` is `models/{model}`, `dimensions` -> `outputDimensionality`), and the answer's vectors as
//! an OpenAI embeddings list.

use bytes::Bytes;
use serde_json::{Map, Value};
use tollgate_schemas::TokenUsage;

use super::{
    request::invalid,
    types::{BatchEmbedContentsRequest, BatchEmbedContentsResponse, Content, EmbedContentRequest, Part},
};
use crate::{AdapterError, Parsed};

/// Builds the `batchEmbedContents` body: one request per input string. `model` is `models/{model}`.
pub(crate) fn convert_request<'a>(
    body: &'a Map<String, Value>,
    model: &'a str,
) -> Result<BatchEmbedContentsRequest<'a>, AdapterError> {
    let inputs = text_inputs(body, "gemini")?;
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

/// The client's `input` as strings (one string or a non-empty array of them); token arrays are
/// refused, naming `provider`.
pub(crate) fn text_inputs<'a>(
    body: &'a Map<String, Value>,
    provider: &str,
) -> Result<Vec<&'a str>, AdapterError> {
    Ok(match body.get("input") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    invalid(
                        format!("{provider} embeds text inputs only (no token arrays)"),
                        "input",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(invalid(
                "`input` must be a string or an array of strings",
                "input",
            ))
        }
    })
}

/// Converts a `batchEmbedContents` answer into OpenAI's embeddings list. Gemini reports no token
/// usage for embeddings, so `usage` is zero (and `model` empty: the answer does not name it).
/// Vectors are always float arrays: the adapter does not see `encoding_format` when parsing.
pub(crate) fn convert_response(body: &[u8]) -> Result<Parsed, AdapterError> {
    let res: BatchEmbedContentsResponse =
        serde_json::from_slice(body).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?;
    let data: Vec<Value> = res
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| serde_json::json!({"object": "embedding", "index": index, "embedding": e.values}))
        .collect();
    let out = serde_json::json!({"object": "list", "data": data, "model": "",
        "usage": {"prompt_tokens": 0, "total_tokens": 0}});
    Ok(Parsed {
        body: Bytes::from(
            serde_json::to_vec(&out).map_err(|e| AdapterError::BadUpstreamBody(e.to_string()))?,
        ),
        usage: Some(TokenUsage::default()),
        model: None,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{json, Value};

    use super::super::{GeminiAdapter, Target};
    use crate::{Adapter, AdapterError, Operation, UpstreamRequest};

    const EMBED_JSON: &str = include_str!("../../../tests/fixtures/gemini/embeddings.json");

    fn build(op: Operation, body: Value, stream: bool) -> Result<UpstreamRequest, AdapterError> {
        let target = Target {
            base_url: "https://generativelanguage.googleapis.com/v1beta/",
            model: "gemini-x",
            api_key: Some("AIza-test"),
            api_version: None,
        };
        GeminiAdapter.build_request(op, body.as_object().cloned().unwrap(), stream, &target)
    }

    fn sent(req: &UpstreamRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    #[test]
    fn embeddings_become_batch_embed_contents() {
        let req = build(
            Operation::Embeddings,
            json!({"input": ["a", "b"], "dimensions": 256, "encoding_format": "float", "user": "u"}),
            false,
        )
        .unwrap();
        assert_eq!(
            req.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-x:batchEmbedContents"
        );
        assert_eq!(
            sent(&req),
            json!({"requests": [
                {"model": "models/gemini-x", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
                {"model": "models/gemini-x", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256}]})
        );
        let one = build(Operation::Embeddings, json!({"input": "solo"}), false).unwrap();
        assert_eq!(
            sent(&one),
            json!({"requests": [{"model": "models/gemini-x", "content": {"parts": [{"text": "solo"}]}}]})
        );
        for bad in [json!({"input": [[1, 2]]}), json!({"input": []}), json!({})] {
            let err = build(Operation::Embeddings, bad, false).unwrap_err();
            assert!(
                matches!(err, AdapterError::InvalidRequest { ref param, .. } if param.as_deref() == Some("input"))
            );
        }

        let parsed = GeminiAdapter
            .parse_response(Operation::Embeddings, Bytes::from(EMBED_JSON))
            .unwrap();
        let v: Value = serde_json::from_slice(&parsed.body).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(
            v["data"][0],
            json!({"object": "embedding", "index": 0, "embedding": [0.013168523, -0.008711934, -0.046782676]})
        );
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"], json!({"prompt_tokens": 0, "total_tokens": 0}));
        assert_eq!(parsed.usage.unwrap().input, 0);
    }
}
