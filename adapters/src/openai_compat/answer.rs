//! Reading an OpenAI-shaped answer in one pass, without building `Value` trees: the gateway only needs
//! its `model`, its `usage` and whether it has its `choices`/`data` array; everything else is skipped
//! (and so still validated as JSON) by `IgnoredAny`.
//!
//! `usage` is read with exactly the leniency of [`TokenUsage::from_openai`] on a parsed value: any
//! JSON is accepted there, an object gives a usage (fields it lacks count 0), anything else none;
//! counts that are not unsigned integers count 0; a repeated key counts its last value.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tollgate_schemas::TokenUsage;

/// `usage` as [`TokenUsage::from_openai`] reads it (for `#[serde(deserialize_with)]`).
pub(crate) fn loose_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TokenUsage>, D::Error> {
    AnyJson(UsageReader).deserialize(d)
}

/// What to make of a JSON object; every other JSON value gives `Out::default()`.
trait ObjectReader<'de> {
    type Out: Default;
    fn read<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
}

/// Accepts any JSON value, handing objects to the reader.
struct AnyJson<R>(R);

impl<'de, R: ObjectReader<'de>> DeserializeSeed<'de> for AnyJson<R> {
    type Value = R::Out;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<R::Out, D::Error> {
        d.deserialize_any(self)
    }
}

/// The non-object cases of [`AnyJson`] and [`Count`]: `$value` for every scalar, arrays skipped.
macro_rules! other_json_values {
    ($value:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

impl<'de, R: ObjectReader<'de>> Visitor<'de> for AnyJson<R> {
    type Value = R::Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    other_json_values!(R::Out::default());
    fn visit_i64<E>(self, _: i64) -> Result<R::Out, E> {
        Ok(R::Out::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<R::Out, E> {
        Ok(R::Out::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Out, A::Error> {
        self.0.read(map)
    }
}

/// A token count: `Value::as_u64` of any JSON value, 0 when it is none.
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    other_json_values!(0);
    fn visit_i64<E>(self, v: i64) -> Result<u64, E> {
        Ok(u64::try_from(v).unwrap_or(0))
    }
    fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(0)
    }
}

/// A map key, as its index in a list of wanted names (`None` for any other key); no allocation.
struct Key<'k>(&'k [&'k str]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
}

/// The `usage` object.
struct UsageReader;

impl<'de> ObjectReader<'de> for UsageReader {
    type Out = Option<TokenUsage>;
    fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<TokenUsage>, A::Error> {
        const KEYS: [&str; 6] = [
            "prompt_tokens",
            "input_tokens",
            "completion_tokens",
            "output_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        ];
        // The first four are counts; present (even as null) or not decides which of a pair counts.
        let mut counts: [Option<u64>; 4] = [None; 4];
        let (mut cached_input, mut reasoning) = (0, 0);
        while let Some(key) = map.next_key_seed(Key(&KEYS))? {
            match key {
                Some(i @ 0..=3) => counts[i] = Some(map.next_value_seed(Count)?),
                Some(4) => cached_input = map.next_value_seed(AnyJson(FieldCount("cached_tokens")))?,
                Some(5) => reasoning = map.next_value_seed(AnyJson(FieldCount("reasoning_tokens")))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(TokenUsage {
            input: counts[0].or(counts[1]).unwrap_or(0),
            output: counts[2].or(counts[3]).unwrap_or(0),
            cached_input,
            cache_write_input: 0,
            reasoning,
        }))
    }
}

/// One count inside a details object (`prompt_tokens_details.cached_tokens`, ...).
struct FieldCount(&'static str);

impl<'de> ObjectReader<'de> for FieldCount {
    type Out = u64;
    fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut count = 0;
        while let Some(key) = map.next_key_seed(Key(&[self.0]))? {
            match key {
                Some(_) => count = map.next_value_seed(Count)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "loose_usage")]
        usage: Option<TokenUsage>,
    }

    fn typed(usage: &Value) -> Option<TokenUsage> {
        let body = serde_json::to_vec(&json!({ "usage": usage })).unwrap();
        serde_json::from_slice::<Holder>(&body).unwrap().usage
    }

    #[test]
    fn reads_usage_exactly_as_from_openai() {
        let cases = [
            json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
            json!({"input_tokens": 7, "output_tokens": 1}),
            json!({"prompt_tokens": null, "input_tokens": 7, "completion_tokens": 2.0, "output_tokens": 4}),
            json!({"prompt_tokens": -1, "completion_tokens": "2"}),
            json!({"prompt_tokens": 10, "completion_tokens": 5,
                   "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 3, "x": [1, {"a": 2}]}}),
            json!({"prompt_tokens_details": [1], "completion_tokens_details": "x"}),
            json!({"prompt_tokens_details": {"cached_tokens": {"n": 1}}, "extra": {"deep": [[]]}}),
            json!({"prompt_tokens": 18446744073709551615u64}),
            json!({}),
            json!(null),
            json!(3),
            json!("usage"),
            json!([{"prompt_tokens": 1}]),
            json!(true),
        ];
        for usage in cases {
            assert_eq!(typed(&usage), TokenUsage::from_openai(&usage), "{usage}");
        }
    }

    #[test]
    fn repeated_and_escaped_keys_read_like_a_parsed_value() {
        let body = br#"{"usage":{"prompt_tokens":1,"prompt\u005ftokens":9,"completion_tokens":2,"completion_tokens":5}}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        let typed = serde_json::from_slice::<Holder>(body).unwrap().usage;
        assert_eq!(typed, TokenUsage::from_openai(&v["usage"]));
        assert_eq!(typed.map(|u| (u.input, u.output)), Some((9, 5)));
    }

    #[test]
    fn missing_usage_is_none() {
        assert_eq!(serde_json::from_slice::<Holder>(b"{}").unwrap().usage, None);
    }
}
