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

Before the directory is validated a self-check makes sure that validation is real: known-bad bodies
must fail and known-good ones must pass, else exit 2.

Output: one `OK name` / `INVALID name` line per file (the latter followed by its first errors with
their JSON paths), then `spec: N passed, M failed`.
Exit status: 0 all valid, 1 some body invalid (or DIR holds no body file), 2 setup problem.
"""

import json
import os
import sys
import time

import jsonschema
from jsonschema.exceptions import relevance
from referencing import Registry
from referencing.jsonschema import DRAFT202012

NATIVE_URI = "urn:gemini-native-spec"
CHAT_SCHEMA = "GenerateContentRequest"
EMBED_SCHEMA = "BatchEmbedContentsRequest"
CHAT_PATH = "/v1beta/models/{model}:generateContent"
EMBED_PATH = "/models/{modelsId}:batchEmbedContents"
ENDPOINTS = ("generateContent", "batchEmbedContents")
MAX_ERRORS_SHOWN = 3


def fail_setup(message):
    print("validate_gemini: " + message, file=sys.stderr)
    sys.exit(2)


def request_ref(spec, path):
    body = spec.get("paths", {}).get(path, {}).get("post", {}).get("requestBody", {})
    return body.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")


def build_validators(native, discovery):
    if not request_ref(native, CHAT_PATH).endswith("/" + CHAT_SCHEMA):
        fail_setup("POST %s no longer takes %s" % (CHAT_PATH, CHAT_SCHEMA))
    if not request_ref(discovery, EMBED_PATH).endswith("/" + EMBED_SCHEMA):
        fail_setup("POST %s no longer takes %s" % (EMBED_PATH, EMBED_SCHEMA))
    registry = Registry().with_resource(NATIVE_URI, DRAFT202012.create_resource(native))
    chat = jsonschema.Draft202012Validator(
        {"$ref": NATIVE_URI + "#/components/schemas/" + CHAT_SCHEMA}, registry=registry)
    # The discovery document is OpenAPI 3.0; its schemas use no keyword 2020-12 reads differently.
    embed_registry = Registry().with_resource("urn:discovery", DRAFT202012.create_resource(discovery))
    embed = jsonschema.Draft202012Validator(
        {"$ref": "urn:discovery#/components/schemas/" + EMBED_SCHEMA}, registry=embed_registry)
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


def short(text, limit=220):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate(validator, body, extra_rules, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = [(e.json_path, short(e.message)) for e in sorted(validator.iter_errors(body), key=relevance)]
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


def self_check(chat, embed, rules):
    problems = []
    for validator, extra, cases in ((chat, lambda b: chat_rules(b, rules), CHAT_SELF_CHECK),
                                    (embed, lambda b: embed_rules(b, rules), EMBED_SELF_CHECK)):
        for body, should_be_valid, what in cases:
            errors = validate(validator, body, extra)
            if should_be_valid and errors:
                problems.append("%s should pass but failed: %s" % (what, errors[0][1]))
            if not should_be_valid and not errors:
                problems.append("%s should fail but passed" % what)
    if problems:
        fail_setup("self-check failed, validation is not working:\n  " + "\n  ".join(problems))


def load(path):
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail_setup("cannot load spec %s: %s" % (path, e))


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = [a for a in argv[1:] if a.startswith("--")]
    if len(args) != 3 or [f for f in flags if f != "--schema-only"]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    native_path, discovery_path, body_dir = args
    schema_only = "--schema-only" in flags
    if not os.path.isdir(body_dir):
        fail_setup("not a directory: " + body_dir)

    started = time.monotonic()
    chat, embed, rules = build_validators(load(native_path), load(discovery_path))
    self_check(chat, embed, rules)
    print("spec loaded and self-checked in %.2fs: %s, %s" % (time.monotonic() - started, native_path, discovery_path))

    names = sorted(n for n in os.listdir(body_dir) if n.endswith(".json"))
    passed = failed = 0
    for name in names:
        parts = name.split(".")
        endpoint = parts[-2] if len(parts) >= 3 else ""
        if endpoint not in ENDPOINTS:
            print("INVALID %s: name is not <anything>.{%s}.json" % (name, ",".join(ENDPOINTS)))
            failed += 1
            continue
        try:
            with open(os.path.join(body_dir, name), "rb") as f:
                body = json.load(f)
        except (OSError, ValueError) as e:
            print("INVALID %s: not JSON: %s" % (name, short(e)))
            failed += 1
            continue
        if endpoint == "generateContent":
            schema, errors = CHAT_SCHEMA, validate(chat, body, lambda b: chat_rules(b, rules), schema_only)
        else:
            schema, errors = EMBED_SCHEMA, validate(embed, body, lambda b: embed_rules(b, rules), schema_only)
        if not errors:
            print("OK %s" % name)
            passed += 1
            continue
        failed += 1
        print("INVALID %s (%s, %d error%s)" % (name, schema, len(errors), "" if len(errors) == 1 else "s"))
        for path, message in errors[:MAX_ERRORS_SHOWN]:
            print("    %s: %s" % (path, message))

    if not names:
        print("no request bodies (*.json) in " + body_dir)
    print("spec: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
