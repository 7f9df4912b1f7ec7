//! The one table of provider kinds: default base URL, auth style and which adapter converts them.

use serde::{Deserialize, Serialize};

use crate::{
    anthropic::AnthropicAdapter, azure::AzureAdapter, bedrock::BedrockAdapter, cohere::CohereAdapter,
    gemini::GeminiAdapter, openai_compat::OpenAiCompat, Adapter,
};

/// How a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// `api-key: <key>` (Azure OpenAI)
    ApiKeyHeader,
    /// `x-api-key: <key>` (Anthropic)
    XApiKey,
    /// `x-goog-api-key: <key>` (Google Gemini)
    XGoogApiKey,
    /// AWS Signature Version 4, computed by the adapter from its own credentials (Bedrock).
    AwsSigV4,
    /// `Authorization: Bearer <token>` with a short-lived OAuth access token that the gateway mints
    /// from a Google service account (Vertex AI), or a static token from `api_key_env`.
    GoogleOAuth,
}

/// Every provider kind a `[[providers]]` entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Azure,
    Anthropic,
    Gemini,
    Vertex,
    Cohere,
    Bedrock,
    OpenaiCompat,
    Mistral,
    Groq,
    Together,
    Fireworks,
    Deepseek,
    Xai,
    Perplexity,
    Openrouter,
    Ollama,
    Vllm,
    Echo,
}

struct KindInfo {
    name: &'static str,
    default_base_url: Option<&'static str>,
    auth: AuthStyle,
    /// Whether the API accepts `stream_options.include_usage`; the others report usage unasked or never.
    stream_options: bool,
}

const fn info(
    name: &'static str,
    default_base_url: Option<&'static str>,
    auth: AuthStyle,
    stream_options: bool,
) -> KindInfo {
    KindInfo {
        name,
        default_base_url,
        auth,
        stream_options,
    }
}

impl ProviderKind {
    fn info(self) -> KindInfo {
        use AuthStyle::*;
        match self {
            ProviderKind::Openai => info("openai", Some("https://api.openai.com/v1"), Bearer, true),
            ProviderKind::Azure => info("azure", None, ApiKeyHeader, true),
            ProviderKind::Anthropic => {
                info("anthropic", Some("https://api.anthropic.com/v1"), XApiKey, false)
            }
            ProviderKind::Gemini => info(
                "gemini",
                Some("https://generativelanguage.googleapis.com/v1beta"),
                XGoogApiKey,
                false,
            ),
            ProviderKind::Cohere => info("cohere", Some("https://api.cohere.com"), Bearer, false),
            // The base URL depends on `project` and `location` (see `vertex::base_url`).
            ProviderKind::Vertex => info("vertex", None, GoogleOAuth, false),
            // The base URL depends on the region: see `bedrock::default_base_url`.
            ProviderKind::Bedrock => info("bedrock", None, AwsSigV4, false),
            ProviderKind::OpenaiCompat => info("openai_compat", None, Bearer, true),
            ProviderKind::Mistral => info("mistral", Some("https://api.mistral.ai/v1"), Bearer, false),
            ProviderKind::Groq => info("groq", Some("https://api.groq.com/openai/v1"), Bearer, true),
            ProviderKind::Together => info("together", Some("https://api.together.xyz/v1"), Bearer, true),
            ProviderKind::Fireworks => info(
                "fireworks",
                Some("https://api.fireworks.ai/inference/v1"),
                Bearer,
                true,
            ),
            ProviderKind::Deepseek => info("deepseek", Some("https://api.deepseek.com/v1"), Bearer, true),
            ProviderKind::Xai => info("xai", Some("https://api.x.ai/v1"), Bearer, true),
            ProviderKind::Perplexity => info("perplexity", Some("https://api.perplexity.ai"), Bearer, false),
            ProviderKind::Openrouter => {
                info("openrouter", Some("https://openrouter.ai/api/v1"), Bearer, true)
            }
            ProviderKind::Ollama => info("ollama", Some("http://127.0.0.1:11434/v1"), Bearer, true),
            ProviderKind::Vllm => info("vllm", Some("http://127.0.0.1:8000/v1"), Bearer, true),
            ProviderKind::Echo => info("echo", None, Bearer, true),
        }
    }

    /// Every kind, in declaration order (fuzzing and tests walk them all).
    pub const ALL: [ProviderKind; 19] = {
        use ProviderKind::*;
        [
            Openai,
            Azure,
            Anthropic,
            Gemini,
            Vertex,
            Cohere,
            Bedrock,
            OpenaiCompat,
            Mistral,
            Groq,
            Together,
            Fireworks,
            Deepseek,
            Xai,
            Perplexity,
            Openrouter,
            Ollama,
            Vllm,
            Echo,
        ]
    };

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The provider's public API base URL, for kinds that have one.
    pub fn default_base_url(self) -> Option<&'static str> {
        self.info().default_base_url
    }

    pub fn auth_style(self) -> AuthStyle {
        self.info().auth
    }

    /// Whether this kind needs a network upstream at all.
    pub fn is_network(self) -> bool {
        self != ProviderKind::Echo
    }

    /// The adapter converting this kind's API (`None` for the built-in echo provider).
    pub fn adapter(self) -> Option<Box<dyn Adapter>> {
        match self {
            ProviderKind::Echo => None,
            ProviderKind::Azure => Some(Box::new(AzureAdapter)),
            ProviderKind::Anthropic => Some(Box::new(AnthropicAdapter)),
            ProviderKind::Gemini => Some(Box::new(GeminiAdapter)),
            // Without credentials: parses answers, refuses to build requests. The gateway's config
            // builds the signing one.
            ProviderKind::Bedrock => Some(Box::new(BedrockAdapter::default())),
            ProviderKind::Vertex => Some(Box::new(crate::vertex::VertexAdapter)),
            ProviderKind::Cohere => Some(Box::new(CohereAdapter)),
            _ => Some(Box::new(OpenAiCompat {
                auth: self.auth_style(),
                stream_options: self.info().stream_options,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProviderKind;

    #[test]
    fn all_lists_every_kind_once_under_its_config_name() {
        // A new variant must be added here (the match is exhaustive) and to `ALL`.
        fn position(kind: ProviderKind) -> usize {
            use ProviderKind::*;
            match kind {
                Openai => 0,
                Azure => 1,
                Anthropic => 2,
                Gemini => 3,
                Vertex => 4,
                Cohere => 5,
                Bedrock => 6,
                OpenaiCompat => 7,
                Mistral => 8,
                Groq => 9,
                Together => 10,
                Fireworks => 11,
                Deepseek => 12,
                Xai => 13,
                Perplexity => 14,
                Openrouter => 15,
                Ollama => 16,
                Vllm => 17,
                Echo => 18,
            }
        }
        for (i, kind) in ProviderKind::ALL.iter().enumerate() {
            assert_eq!(position(*kind), i, "{kind:?}");
            let parsed: ProviderKind =
                serde_json::from_value(serde_json::Value::from(kind.as_str())).expect("config name");
            assert_eq!(parsed, *kind);
        }
    }
}
