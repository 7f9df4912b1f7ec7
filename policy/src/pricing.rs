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
pub const TABLE_VERSION: &str = "2026-11-01";

const BUILTIN: &[(&str, &str, &str, Option<&str>)] = &[
    // model, input, output, cached input (USD per 1M tokens)
    ("gpt-4o", "2.50", "10.00", Some("1.25")),
    ("gpt-4o-mini", "0.15", "0.60", Some("0.075")),
    ("gpt-4.1", "2.00", "8.00", Some("0.50")),
    ("gpt-4.1-mini", "0.40", "1.60", Some("0.10")),
    ("o3-mini", "1.10", "4.40", Some("0.55")),
    ("text-embedding-3-small", "0.02", "0", None),
    ("text-embedding-3-large", "0.13", "0", None),
    ("mistral-small-latest", "0.20", "0.60", None),
    ("llama-3.1-8b-instant", "0.05", "0.08", None),
];

impl PriceTable {
    pub fn builtin() -> PriceTable {
        let mut t = PriceTable::default();
        for (model, input, output, cached) in BUILTIN {
            if let (Ok(input), Ok(output)) = (Usd::parse(input), Usd::parse(output)) {
                let cached_input = cached.and_then(|c| Usd::parse(c).ok());
                t.insert(
                    model,
                    Price {
                        input,
                        output,
                        cached_input,
                        cache_write_input: None,
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

impl Pricing for PriceTable {
    fn price(&self, provider_kind: &str, model: &str) -> Option<Price> {
        self.prices
            .get(&format!("{provider_kind}/{model}"))
            .or_else(|| self.prices.get(model))
            .copied()
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
