#!/usr/bin/env python3
"""Validate request bodies that the gateway sent to Google Gemini against Google's own specs.

Usage: validate_gemini.py [--schema-only] NATIVE_SPEC DISCOVERY_SPEC DIR

NATIVE_SPEC is the Gemini API OpenAPI 3.1 document (`gemini-native.openapi.json`), DISCOVERY_SPEC the
OpenAPI 3.0 document generated from Google's discovery document (`openapi.json`). DIR holds JSON
request bodies named `<anything>.generateContent.json` or `<anything>.batchEmbedContents.json`.

- `generateContent` bodies (also those of `streamGenerateContent`) are validated against
  `GenerateContentRequest` of NATIVE_SPEC, the request schema of
  `POST /v1beta/models/{model}:generateContent` (Draft 2020-12, `$ref`s resolved against the whole
  document). That schema says `additionalProperties: false` nearly everywhere, so unknown fields are
  caught by the schema itself.
- `batchEmbedContents` bodies are validated against `BatchEmbedContentsRequest` of DISCOVERY_SPEC,
  because NATIVE_SPEC's `EmbedContentRequest` lacks the `model` field that the discovery document
  (and the API) requires; unknown fields are checked by the rules below.

Rules that the specs state in prose or in the other document (`--schema-only` turns them off):
function `parameters` and `responseSchema` use only the keywords of the discovery document's
`Schema` (so `additionalProperties`, `$schema`, `$ref`, `strict` fail) and its upper-case `type`
values; an OBJECT schema for function parameters has non-empty `properties`; `contents` roles are
`user` or `model`; `toolConfig.functionCallingConfig.mode` is one of the discovery enum; every
embed request names `models/<model>`, has a `content` and no field unknown to the discovery document.

A self-check first proves that validation is real (known-bad bodies must fail, known-good ones
pass, else exit 2). Output: `OK name` / `INVALID name` per file (the latter with its first errors),
then `spec: N passed, M failed`; exit status 0 all valid, 1 some body invalid (or DIR holds no body
file), 2 setup problem. The machinery is shared with the other validators: specval.py.
"""

import sys
import time

import specval

NATIVE_URI = "urn:gemini-native-spec"
CHAT_SCHEMA = "GenerateContentRequest"
EMBED_SCHEMA = "BatchEmbedContentsRequest"
CHAT_PATH = "/v1beta/models/{model}:generateContent"
EMBED_PATH = "/models/{modelsId}:batchEmbedContents"
ENDPOINTS = ("generateContent", "batchEmbedContents")


def build_validators(native, discovery):
    if not specval.request_ref(native, CHAT_PATH).endswith("/" + CHAT_SCHEMA):
        specval.fail_setup("POST %s no longer takes %s" % (CHAT_PATH, CHAT_SCHEMA))
    if not specval.request_ref(discovery, EMBED_PATH).endswith("/" + EMBED_SCHEMA):
        specval.fail_setup("POST %s no longer takes %s" % (EMBED_PATH, EMBED_SCHEMA))
    chat = specval.validators(NATIVE_URI, native, {"chat": "#/components/schemas/" + CHAT_SCHEMA})["chat"]
    # The discovery document is OpenAPI 3.0; its schemas use no keyword 2020-12 reads differently.
    embed = specval.validators("urn:discovery", discovery, {"embed": "#/components/schemas/" + EMBED_SCHEMA})["embed"]
    d = discovery["components"]["schemas"]
    rules = {
        "schema_keys": set(d["Schema"]["properties"]),
        "schema_types": set(d["Schema"]["properties"]["type"]["enum"]),
        "modes": set(d["FunctionCallingConfig"]["properties"]["mode"]["enum"]),
        "embed_keys": set(d["EmbedContentRequest"]["properties"]),
    }
    return chat, embed, rules


def schema_errors(schema, path, rules, top_params=False):
    errors = []
    if not isinstance(schema, dict):
        return [(path, "rule: a Schema must be an object")]
    for key in schema:
        if key not in rules["schema_keys"]:
            errors.append((path + "." + key, "rule: `%s` is not a Gemini Schema keyword" % key))
    if "type" in schema and schema["type"] not in rules["schema_types"]:
        errors.append((path + ".type", "rule: type %r is not one of the Schema types" % (schema["type"],)))
    if top_params and schema.get("type") == "OBJECT" and not schema.get("properties"):
        errors.append((path + ".properties", "rule: an OBJECT schema needs non-empty properties"))
    for name, sub in (schema.get("properties") or {}).items():
        errors.extend(schema_errors(sub, "%s.properties.%s" % (path, name), rules))
    if "items" in schema:
        errors.extend(schema_errors(schema["items"], path + ".items", rules))
    for i, sub in enumerate(schema.get("anyOf") or []):
        errors.extend(schema_errors(sub, "%s.anyOf[%d]" % (path, i), rules))
    return errors


def chat_rules(body, rules):
    if not isinstance(body, dict):
        return []
    errors = []
    for i, content in enumerate(body.get("contents") or []):
        if isinstance(content, dict) and content.get("role") not in ("user", "model"):
            errors.append(("$.contents[%d].role" % i, "rule: role must be user or model"))
    for i, tool in enumerate(body.get("tools") or []):
        for j, decl in enumerate((tool or {}).get("functionDeclarations") or []):
            if "parameters" in decl:
                path = "$.tools[%d].functionDeclarations[%d].parameters" % (i, j)
                errors.extend(schema_errors(decl["parameters"], path, rules, top_params=True))
    gen = body.get("generationConfig") or {}
    if "responseSchema" in gen:
        errors.extend(schema_errors(gen["responseSchema"], "$.generationConfig.responseSchema", rules))
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if mode is not None and mode not in rules["modes"]:
        errors.append(("$.toolConfig.functionCallingConfig.mode", "rule: unknown mode %r" % mode))
    return errors


def embed_rules(body, rules):
    if not isinstance(body, dict):
        return []
    errors = [("$." + k, "rule: unknown field") for k in body if k != "requests"]
    for i, req in enumerate(body.get("requests") or []):
        path = "$.requests[%d]" % i
        if not isinstance(req, dict):
            continue
        errors.extend((path + "." + k, "rule: unknown field") for k in req if k not in rules["embed_keys"])
        if not str(req.get("model", "")).startswith("models/"):
            errors.append((path + ".model", "rule: model must be models/<model>"))
        if "content" not in req:
            errors.append((path + ".content", "rule: content is required"))
    return errors


def validate(validator, body, extra_rules, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = specval.schema_errors(validator, body)
    if not schema_only:
        found.extend(extra_rules(body))
    return found


def user(text):
    return {"role": "user", "parts": [{"text": text}]}


PARAMS = {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}
CHAT_SELF_CHECK = [
    ({"contents": [user("hi")]}, True, "minimal body"),
    ({"contents": [user("hi"), {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"city": "P"}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"t": 1}}}]}],
      "systemInstruction": {"parts": [{"text": "be brief"}]},
      "tools": [{"functionDeclarations": [{"name": "f", "parameters": PARAMS}]}],
      "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
      "generationConfig": {"maxOutputTokens": 5, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}},
     True, "tool round trip"),
    ({"messages": [user("hi")]}, False, "OpenAI messages"),
    ({"contents": [user("hi")], "temperature": 0.5}, False, "top-level sampling field"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, False, "OpenAI role"),
    ({"contents": [user("hi")], "generationConfig": {"max_tokens": 5}}, False, "snake_case config"),
    ({"contents": [user("hi")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": dict(
        PARAMS, additionalProperties=False)}]}]}, False, "additionalProperties in parameters"),
    ({"contents": [user("hi")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {}}}]}]}, False, "empty OBJECT parameters"),
    ({"contents": [user("hi")], "toolConfig": {"functionCallingConfig": {"mode": "required"}}}, False, "OpenAI tool_choice"),
    ({"contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "eA=="}}]}]},
     False, "snake_case part"),
]
EMBED_SELF_CHECK = [
    ({"requests": [{"model": "models/m", "content": {"parts": [{"text": "a"}]}}]}, True, "embed body"),
    ({"requests": [{"content": {"parts": [{"text": "a"}]}}]}, False, "embed request without model"),
    ({"input": ["a"]}, False, "OpenAI embeddings body"),
]


def main(argv):
    parsed = specval.parse_args(argv, __doc__, 3)
    if parsed is None:
        return 2
    (native_path, discovery_path, body_dir), schema_only, _ = parsed
    started = time.monotonic()
    chat, embed, rules = build_validators(specval.load_spec(native_path), specval.load_spec(discovery_path))
    checks = {"generateContent": (CHAT_SCHEMA, chat, lambda b: chat_rules(b, rules)),
              "batchEmbedContents": (EMBED_SCHEMA, embed, lambda b: embed_rules(b, rules))}
    specval.self_check([(chat, checks["generateContent"][2], *case) for case in CHAT_SELF_CHECK]
                       + [(embed, checks["batchEmbedContents"][2], *case) for case in EMBED_SELF_CHECK],
                       lambda validator, extra, body: validate(validator, body, extra))
    specval.loaded(started, native_path, discovery_path)

    def check(name, path):
        endpoint = specval.endpoint_of(name)
        if endpoint not in ENDPOINTS:
            raise specval.Invalid("name is not <anything>.{%s}.json" % ",".join(ENDPOINTS))
        schema, validator, extra = checks[endpoint]
        return schema, validate(validator, specval.read_json(path), extra, schema_only)

    return specval.check_dir(body_dir, check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
