//! Azure OpenAI: the OpenAI wire format at a deployment URL,
//! `{base}/openai/deployments/{deployment}/{path}?api-version=...`, authenticated by the `api-key` header.
//! The target's `model` names the deployment; the body carries no `model`.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{
    openai_compat::{base_headers, parse_openai_answer, parse_openai_error, prepare_body, OpenAiStream},
    Adapter, AdapterError, AuthStyle, Operation, Parsed, StreamTranslator, Target, UpstreamError,
    UpstreamRequest,
};

/// Used when a provider entry sets no `api_version`.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Debug, Clone, Copy)]
pub struct AzureAdapter;

impl Adapter for AzureAdapter {
    fn build_request(
        &self,
        op: Operation,
        body: Map<String, Value>,
        stream: bool,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        let base = target.base_url.trim_end_matches('/');
        let version = target.api_version.unwrap_or(DEFAULT_API_VERSION);
        let url = format!(
            "{base}/openai/deployments/{}/{}?api-version={}",
            target.model,
            op.path(),
            version
        );
        Ok(UpstreamRequest {
            url,
            headers: base_headers(AuthStyle::ApiKeyHeader, target.api_key)?,
            body: prepare_body(body, None, stream, true)?,
        })
    }

    fn parse_response(&self, op: Operation, body: Bytes) -> Result<Parsed, AdapterError> {
        parse_openai_answer(op, body)
    }

    fn stream_translator(&self, _op: Operation, client_wants_usage: bool) -> Box<dyn StreamTranslator> {
        Box::new(OpenAiStream::new(client_wants_usage))
    }

    fn parse_error(&self, status: u16, body: &[u8]) -> UpstreamError {
        parse_openai_error(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_deployment_url_with_api_key_header() {
        let t = Target {
            base_url: "https://res.openai.azure.com/",
            model: "gpt4o-prod",
            api_key: Some("azkey"),
            api_version: Some("2024-06-01"),
        };
        let body = serde_json::json!({"messages": []});
        let req = AzureAdapter
            .build_request(Operation::Chat, body.as_object().unwrap().clone(), false, &t)
            .unwrap();
        assert_eq!(
            req.url,
            "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
        );
        assert_eq!(req.headers["api-key"], "azkey");
        assert!(req.headers.get("authorization").is_none());
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(sent.get("model").is_none());
    }
}
