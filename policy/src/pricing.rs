//! Prices per million tokens, and the cost of a request from its token usage. The [`Pricing`] trait is
//! what budgets consult; [`PriceTable`] is the built-in implementation (a small versioned table,
//! overridable from config).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tollgate_schemas::TokenUsage;

use crate::money::Usd;

/// USD per million tokens, by token class. Cached and cache-write input default to the input price,
/// reasoning to the output price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: Usd,
    pub output: Usd,
    #[serde(default)]
    pub cached_input: Option<Usd>,
    #[serde(default)]
    pub cache_write_input: Option<Usd>,
    #[serde(default)]
    pub reasoning: Option<Usd>,
}

fn per_million(tokens: u64, price: Usd) -> i128 {
    i128::from(tokens) * i128::from(price.micros())
}

impl Price {
    /// Cost for budgets: [`Price::cost_nanos`] rounded up to the micro-dollar.
    pub fn cost(&self, u: &TokenUsage) -> Usd {
        Usd(i64::try_from((self.cost_nanos(u) + 999) / 1000).unwrap_or(i64::MAX))
    }

    /// Exact cost in nano-dollars (rounded up), for usage events and billing. Cached and cache-write
    /// tokens are part of `input` and billed once, at their own rate; reasoning tokens are part of
    /// `output`.
    pub fn cost_nanos(&self, u: &TokenUsage) -> i128 {
        let cached = u.cached_input.min(u.input);
        let write = u.cache_write_input.min(u.input - cached);
        let plain_in = u.input - cached - write;
        let reasoning = u.reasoning.min(u.output);
        let plain_out = u.output - reasoning;
        let total = per_million(plain_in, self.input)
            + per_million(cached, self.cached_input.unwrap_or(self.input))
            + per_million(write, self.cache_write_input.unwrap_or(self.input))
            + per_million(plain_out, self.output)
            + per_million(reasoning, self.reasoning.unwrap_or(self.output));
        // `total` is micro-dollars per million tokens times tokens: / 1e6 gives micro-dollars,
        // / 1e3 nano-dollars.
        (total + 999) / 1000
    }
}

/// Nano-dollars as a decimal string with up to 9 decimals: `23500` -> `"0.0000235"`.
pub fn format_nanos(n: i128) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let abs = n.unsigned_abs();
    let frac = format!("{:09}", abs % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{}", abs / 1_000_000_000)
    } else {
        format!("{sign}{}.{frac}", abs / 1_000_000_000)
    }
}

/// Looks up the price of a model served by a provider.
pub trait Pricing: Send + Sync {
    /// `None` when the model is unknown: its cost is unknown, never zero.
    fn price(&self, provider_kind: &str, model: &str) -> Option<Price>;
}

/// The built-in table plus config overrides. Keys are `kind/model` or just `model`.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

/// Version of the built-in table; bump when prices change.
pub const TABLE_VERSION: &str = "2026-11-25";

/// (model, input, output, cached input, cache write) in USD per million tokens, from the providers'
/// public price lists as of [`TABLE_VERSION`]. Models served under another name by a provider
/// (Bedrock, Vertex) are keyed `kind/model`.
/// One row of the built-in table.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const BUILTIN: &[Row] = &[
    ("gpt-4o", "2.50", "10.00", Some("1.25"), None),
    ("gpt-4o-mini", "0.15", "0.60", Some("0.075"), None),
    ("gpt-4.1", "2.00", "8.00", Some("0.50"), None),
    ("gpt-4.1-mini", "0.40", "1.60", Some("0.10"), None),
    ("o3-mini", "1.10", "4.40", Some("0.55"), None),
    ("text-embedding-3-small", "0.02", "0", None, None),
    ("text-embedding-3-large", "0.13", "0", None, None),
    (
        "claude-sonnet-4-20250514",
        "3.00",
        "15.00",
        Some("0.30"),
        Some("3.75"),
    ),
    (
        "claude-opus-4-20250514",
        "15.00",
        "75.00",
        Some("1.50"),
        Some("18.75"),
    ),
    (
        "claude-3-5-haiku-20241022",
        "0.80",
        "4.00",
        Some("0.08"),
        Some("1.00"),
    ),
    // Claude on Vertex AI: Vertex ids name the version after `@`; same list prices.
    (
        "vertex/claude-sonnet-4@20250514",
        "3.00",
        "15.00",
        Some("0.30"),
        Some("3.75"),
    ),
    (
        "vertex/claude-opus-4@20250514",
        "15.00",
        "75.00",
        Some("1.50"),
        Some("18.75"),
    ),
    (
        "vertex/claude-3-5-haiku@20241022",
        "0.80",
        "4.00",
        Some("0.08"),
        Some("1.00"),
    ),
    ("gemini-2.5-pro", "1.25", "10.00", Some("0.31"), None),
    ("gemini-2.5-flash", "0.30", "2.50", Some("0.075"), None),
    (
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "3.00",
        "15.00",
        Some("0.30"),
        Some("3.75"),
    ),
    (
        "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
        "3.00",
        "15.00",
        Some("0.30"),
        Some("3.75"),
    ),
    (
        "bedrock/anthropic.claude-sonnet-4-20250514-v1:0",
        "3.00",
        "15.00",
        Some("0.30"),
        Some("3.75"),
    ),
    (
        "bedrock/anthropic.claude-opus-4-20250514-v1:0",
        "15.00",
        "75.00",
        Some("1.50"),
        Some("18.75"),
    ),
    (
        "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
        "0.80",
        "4.00",
        Some("0.08"),
        Some("1.00"),
    ),
    ("bedrock/amazon.nova-pro-v1:0", "0.80", "3.20", Some("0.20"), None),
    (
        "bedrock/amazon.nova-lite-v1:0",
        "0.06",
        "0.24",
        Some("0.015"),
        None,
    ),
    (
        "bedrock/amazon.nova-micro-v1:0",
        "0.035",
        "0.14",
        Some("0.00875"),
        None,
    ),
    (
        "bedrock/meta.llama3-3-70b-instruct-v1:0",
        "0.72",
        "0.72",
        None,
        None,
    ),
    ("command-a-03-2025", "2.50", "10.00", None, None),
    ("command-r-plus-08-2024", "2.50", "10.00", None, None),
    ("command-r-08-2024", "0.15", "0.60", None, None),
    ("embed-english-v3.0", "0.10", "0", None, None),
    ("embed-multilingual-v3.0", "0.10", "0", None, None),
    ("mistral-small-latest", "0.20", "0.60", None, None),
    ("llama-3.1-8b-instant", "0.05", "0.08", None, None),
];

impl PriceTable {
    pub fn builtin() -> PriceTable {
        let mut t = PriceTable::default();
        for (model, input, output, cached, write) in BUILTIN {
            if let (Ok(input), Ok(output)) = (Usd::parse(input), Usd::parse(output)) {
                let cached_input = cached.and_then(|c| Usd::parse(c).ok());
                let cache_write_input = write.and_then(|c| Usd::parse(c).ok());
                t.insert(
                    model,
                    Price {
                        input,
                        output,
                        cached_input,
                        cache_write_input,
                        reasoning: None,
                    },
                );
            }
        }
        t
    }

    pub fn insert(&mut self, name: &str, price: Price) {
        self.prices.insert(name.to_string(), price);
    }
}

/// Bedrock's cross-region inference profiles put a geography before the model id
/// (`us.anthropic.claude-...`); they are billed at the model's price.
const BEDROCK_GEOGRAPHIES: [&str; 6] = ["us.", "eu.", "apac.", "us-gov.", "jp.", "global."];

impl Pricing for PriceTable {
    fn price(&self, provider_kind: &str, model: &str) -> Option<Price> {
        let lookup = |model: &str| {
            let mut key = String::with_capacity(provider_kind.len() + 1 + model.len());
            for part in [provider_kind, "/", model] {
                key.push_str(part);
            }
            self.prices.get(&key).or_else(|| self.prices.get(model)).copied()
        };
        lookup(model).or_else(|| {
            let base = BEDROCK_GEOGRAPHIES
                .iter()
                .find_map(|g| model.strip_prefix(g))
                .filter(|_| provider_kind == "bedrock")?;
            lookup(base)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_billed_once_at_their_rate() {
        let p = PriceTable::builtin().price("openai", "gpt-4o").unwrap();
        let u = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            cached_input: 400_000,
            ..Default::default()
        };
        // 600k * 2.50 + 400k * 1.25 + 1M * 10.00 = 1.5 + 0.5 + 10 = 12.00
        assert_eq!(p.cost(&u), Usd::parse("12.00").unwrap());
    }

    #[test]
    fn rounds_up_to_the_micro_dollar_and_unknown_is_none() {
        let p = Price {
            input: Usd::parse("0.15").unwrap(),
            output: Usd(0),
            cached_input: None,
            cache_write_input: None,
            reasoning: None,
        };
        assert_eq!(
            p.cost(&TokenUsage {
                input: 1,
                ..Default::default()
            }),
            Usd(1)
        );
        assert!(PriceTable::builtin().price("openai", "no-such-model").is_none());
    }

    fn usd(nanos: i128) -> String {
        format_nanos(nanos)
    }

    #[test]
    fn golden_anthropic_cache_reads_and_writes_are_each_billed_once() {
        let p = PriceTable::builtin()
            .price("anthropic", "claude-sonnet-4-20250514")
            .unwrap();
        // 3500 input tokens of which 2000 read from the cache and 500 written to it; 100 out.
        let u = TokenUsage {
            input: 3500,
            output: 100,
            cached_input: 2000,
            cache_write_input: 500,
            reasoning: 0,
        };
        // 1000 * 3.00 + 2000 * 0.30 + 500 * 3.75 + 100 * 15.00 = 6975 per million
        assert_eq!(usd(p.cost_nanos(&u)), "0.006975");
    }

    #[test]
    fn golden_gemini_thinking_tokens_are_output_billed_once() {
        let p = PriceTable::builtin().price("gemini", "gemini-2.5-flash").unwrap();
        let u = TokenUsage {
            input: 100,
            output: 200,
            reasoning: 150,
            ..Default::default()
        };
        // 100 * 0.30 + (50 + 150) * 2.50 = 530 per million
        assert_eq!(usd(p.cost_nanos(&u)), "0.00053");
    }

    #[test]
    fn golden_bedrock_models_are_priced_by_kind_and_unknown_models_are_not_zero() {
        let t = PriceTable::builtin();
        let p = t
            .price("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
            .unwrap();
        let u = TokenUsage {
            input: 1_000_000,
            output: 1_000_000,
            ..Default::default()
        };
        assert_eq!(usd(p.cost_nanos(&u)), "18");
        assert!(
            t.price("openai", "anthropic.claude-3-5-sonnet-20240620-v1:0")
                .is_none(),
            "kind-specific"
        );
        let profile = t
            .price("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0")
            .expect("a cross-region inference profile is priced as its model");
        assert_eq!(usd(profile.cost_nanos(&u)), "18");
        assert!(
            t.price("openai", "us.gpt-4o").is_none(),
            "geographies are Bedrock's only"
        );
        let cohere = t.price("cohere", "command-r-08-2024").unwrap();
        assert_eq!(usd(cohere.cost_nanos(&u)), "0.75");
        assert!(
            t.price("openai", "gpt-9-unknown").is_none(),
            "unknown: no price, never a guessed zero"
        );
    }

    #[test]
    fn golden_openai_cached_tokens() {
        let p = PriceTable::builtin().price("openai", "gpt-4o-mini").unwrap();
        let u = TokenUsage {
            input: 2000,
            output: 500,
            cached_input: 1024,
            ..Default::default()
        };
        // 976 * 0.15 + 1024 * 0.075 + 500 * 0.60 = 146.4 + 76.8 + 300 = 523.2 per million
        assert_eq!(usd(p.cost_nanos(&u)), "0.0005232");
    }

    #[test]
    fn nano_dollar_costs_are_exact_decimals() {
        let p = Price {
            input: Usd::parse("1.00").unwrap(),
            output: Usd::parse("2.00").unwrap(),
            cached_input: Some(Usd::parse("0.50").unwrap()),
            cache_write_input: None,
            reasoning: None,
        };
        let u = TokenUsage {
            input: 11,
            output: 7,
            cached_input: 3,
            ..Default::default()
        };
        assert_eq!(p.cost_nanos(&u), 23_500);
        assert_eq!(format_nanos(23_500), "0.0000235");
        assert_eq!(format_nanos(2_000_000_000), "2");
        assert_eq!(p.cost(&u), Usd(24), "budgets round up to the micro-dollar");
    }
}
