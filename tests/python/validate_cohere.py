#!/usr/bin/env python3
"""Validate request bodies that the gateway sent to Cohere against Cohere's own v2 API spec.

Usage: validate_cohere.py [--schema-only] SPEC DIR

SPEC is Cohere's OpenAPI document (YAML, OpenAPI 3.1). DIR holds JSON request bodies named
`<anything>.chat.json` (validated against the request schema of `POST /v2/chat`) or
`<anything>.embed.json` (`POST /v2/embed`), with Draft 2020-12 and `$ref`s resolved against the
whole spec document. Two adjustments make the schemas say what the API does:
- `oneOf` with a `discriminator` (message roles, content part types, `response_format` types) is
  checked by its mapping: the tag picks the one schema to apply. Plain JSON Schema would reject
  bodies that fit two branches (e.g. `{"type": "json_object"}` fits both response formats).
- Object schemas that list `properties` are closed (`additionalProperties: false` unless the spec
  says otherwise), so a field Cohere does not define (an OpenAI field left in by mistake) fails.
The YAML is read with only `true`/`false` as booleans, so enum values such as `OFF` stay strings.

Besides the schema, rules the API documents but the schema cannot express are checked too
(`--schema-only` turns them off): `tool_choice` needs `tools`; every tool message answers a tool
call of an earlier assistant turn; at most 5 `stop_sequences`; an embed body has `texts`,
`images` or `inputs`.

A self-check first proves that validation is real (known-bad bodies must fail, known-good ones
pass, else exit 2). Output: `OK name` / `INVALID name` per file (the latter with its first errors),
then `spec: N passed, M failed`; exit status 0 all valid, 1 some body invalid (or DIR holds no body
file), 2 setup problem. The machinery is shared with the other validators: specval.py.
"""

import copy
import sys
import time

import yaml

import specval

SPEC_URI = "urn:cohere-spec"
ENDPOINTS = {"chat": "/v2/chat", "embed": "/v2/embed"}


class StrictBoolLoader(yaml.SafeLoader):
    """YAML 1.1 reads on/off/yes/no as booleans; the spec means the strings (`safety_mode: OFF`)."""


StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictBoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def adjust(node, in_all_of=False):
    """Discriminated oneOf -> if/then by tag; close object schemas that list their properties."""
    if isinstance(node, list):
        for item in node:
            adjust(item, in_all_of)
        return
    if not isinstance(node, dict):
        return
    for key, value in list(node.items()):
        adjust(value, key == "allOf")
    mapping = (node.get("discriminator") or {}).get("mapping")
    if mapping and "oneOf" in node:
        prop = node["discriminator"]["propertyName"]
        del node["oneOf"]
        node.pop("discriminator")
        node.setdefault("type", "object")
        node["required"] = sorted(set(node.get("required", [])) | {prop})
        node.setdefault("properties", {})[prop] = {"enum": list(mapping)}
        node["allOf"] = node.get("allOf", []) + [
            {"if": {"properties": {prop: {"const": tag}}, "required": [prop]}, "then": {"$ref": ref}}
            for tag, ref in mapping.items()
        ]
        node["properties"] = {prop: node["properties"][prop]}
        node["additionalProperties"] = True
        return
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node and not in_all_of:
        node["additionalProperties"] = False


def request_schema(spec, path):
    op = spec.get("paths", {}).get(path, {}).get("post", {})
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if not isinstance(schema, dict):
        specval.fail_setup("no JSON request schema for POST " + path)
    return schema


def build_validators(spec):
    spec = copy.deepcopy(spec)
    schemas = {name: request_schema(spec, path) for name, path in ENDPOINTS.items()}
    adjust(spec)
    pointers = {name: "#/paths/" + path.replace("~", "~0").replace("/", "~1")
                + "/post/requestBody/content/application~1json/schema" for name, path in ENDPOINTS.items()}
    return specval.validators(SPEC_URI, spec, pointers), schemas


def rule_errors(endpoint, body):
    """Constraints the API documents that the schema does not express."""
    if not isinstance(body, dict):
        return []
    errors = []
    if endpoint == "embed":
        if not any(body.get(k) for k in ("texts", "images", "inputs")):
            errors.append(("$", "rule: an embed request needs texts, images or inputs"))
        return errors
    if "tool_choice" in body and not body.get("tools"):
        errors.append(("$.tool_choice", "rule: tool_choice needs tools"))
    if len(body.get("stop_sequences") or []) > 5:
        errors.append(("$.stop_sequences", "rule: at most 5 stop sequences"))
    called = set()
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            called |= {c.get("id") for c in message.get("tool_calls") or [] if isinstance(c, dict)}
        if message.get("role") == "tool" and message.get("tool_call_id") not in called:
            errors.append(("$.messages[%d].tool_call_id" % i,
                           "rule: tool message answers no tool call of an earlier assistant turn"))
    return errors


def validate(validators, endpoint, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = specval.schema_errors(validators[endpoint], body, specval.most_relevant)
    if not schema_only:
        found.extend(rule_errors(endpoint, body))
    return found


def user(text):
    return {"role": "user", "content": text}


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TOOL_TURNS = [
    user("weather?"),
    {"role": "assistant", "tool_plan": "I will check.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
]

SELF_CHECK = [
    # (endpoint, body, should_be_valid, what)
    ("chat", {"model": "m", "messages": [user("hi")]}, True, "minimal chat"),
    ("chat", {"model": "m", "messages": [{"role": "system", "content": "be brief"}] + TOOL_TURNS, "tools": [TOOL],
              "tool_choice": "REQUIRED", "strict_tools": True, "stream": True, "max_tokens": 5, "stop_sequences": ["x"],
              "temperature": 0.3, "p": 0.5, "k": 10, "seed": 1, "frequency_penalty": 0.1, "presence_penalty": 0.2,
              "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
              "documents": ["doc", {"id": "d", "data": {"text": "t"}}], "citation_options": {"mode": "FAST"},
              "safety_mode": "OFF", "thinking": {"type": "enabled", "token_budget": 100}}, True, "everything at once"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
              {"type": "image_url", "image_url": {"url": "https://e/x.png", "detail": "low"}}]}]}, True, "user image"),
    ("embed", {"model": "m", "texts": ["a"], "input_type": "search_document", "embedding_types": ["float"]}, True,
     "minimal embed"),
    ("chat", {"messages": [user("hi")]}, False, "chat without model"),
    ("chat", {"model": "m", "messages": [user("hi")], "n": 1}, False, "unknown field"),
    ("chat", {"model": "m", "messages": [user("hi")], "tools": [TOOL], "tool_choice": "auto"}, False,
     "OpenAI tool_choice"),
    ("chat", {"model": "m", "messages": [user("hi")], "response_format": {"type": "json_schema", "json_schema": {}}},
     False, "OpenAI response_format"),
    ("chat", {"model": "m", "messages": [{"role": "developer", "content": "x"}]}, False, "developer role"),
    ("chat", {"model": "m", "messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://e/x.png"}}]}]}, False, "image in a system message"),
    ("chat", {"model": "m", "messages": [user("hi")], "temperature": 1.5}, False, "temperature above 1"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]}, False,
     "unknown message field"),
    ("chat", {"model": "m", "messages": TOOL_TURNS[:1] + TOOL_TURNS[2:]}, False, "tool result answering no call"),
    ("embed", {"model": "m", "texts": ["a"]}, False, "embed without input_type"),
    ("embed", {"model": "m", "texts": ["a"], "input_type": "search_query", "encoding_format": "float"}, False,
     "OpenAI embed field"),
]


def main(argv):
    parsed = specval.parse_args(argv, __doc__, 2)
    if parsed is None:
        return 2
    (spec_path, body_dir), schema_only, _ = parsed
    started = time.monotonic()
    spec = specval.load_spec(spec_path, lambda f: yaml.load(f, Loader=StrictBoolLoader), (OSError, yaml.YAMLError))
    validators, _ = build_validators(spec)
    specval.self_check(SELF_CHECK, lambda endpoint, body: validate(validators, endpoint, body))
    specval.loaded(started, spec_path)

    def check(name, path):
        endpoint = specval.endpoint_of(name)
        if endpoint not in ENDPOINTS:
            raise specval.Invalid("name is not <anything>.chat.json or <anything>.embed.json")
        return "POST " + ENDPOINTS[endpoint], validate(validators, endpoint, specval.read_json(path), schema_only)

    return specval.check_dir(body_dir, check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
