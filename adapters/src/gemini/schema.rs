//! JSON schema -> Gemini's `Schema`, an OpenAPI 3.0 subset (function `parameters`, `responseSchema`).

use serde_json::{Map, Value};

/// The keywords of Gemini's OpenAPI-subset `Schema`; every other JSON-schema keyword
/// (`additionalProperties`, `$schema`, `$ref`, `$defs`, `strict`, `const`, `oneOf`, ...) is dropped.
const SCHEMA_KEYS: [&str; 22] = [
    "anyOf",
    "default",
    "description",
    "enum",
    "example",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "nullable",
    "pattern",
    "properties",
    "propertyOrdering",
    "required",
    "title",
    "type",
];

/// A JSON schema -> Gemini's OpenAPI-subset `Schema`: unknown keywords dropped, `type` upper-cased,
/// `["T", "null"]` types turned into `T` + `nullable`, non-string enums dropped.
pub(crate) fn to_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in map.iter().filter(|(k, _)| SCHEMA_KEYS.contains(&k.as_str())) {
        let v = match (k.as_str(), v) {
            ("properties", Value::Object(props)) => {
                Value::Object(props.iter().map(|(n, s)| (n.clone(), to_schema(s))).collect())
            }
            ("items", _) => to_schema(v),
            ("anyOf", Value::Array(list)) => Value::Array(list.iter().map(to_schema).collect()),
            ("type", Value::String(t)) => Value::String(t.to_ascii_uppercase()),
            ("type", Value::Array(types)) => {
                let mut names = types.iter().filter_map(Value::as_str);
                if types.iter().any(|t| t == "null") {
                    out.insert("nullable".into(), Value::Bool(true));
                }
                match names.find(|t| *t != "null") {
                    Some(t) => Value::String(t.to_ascii_uppercase()),
                    None => continue,
                }
            }
            ("enum", Value::Array(list)) if !list.iter().all(Value::is_string) => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}
