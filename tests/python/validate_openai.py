#!/usr/bin/env python3
"""Validate request bodies that the gateway sent upstream against the official OpenAI spec.

Usage: validate_openai.py [--schema-only] SPEC DIR

SPEC is the OpenAI OpenAPI document (YAML, or JSON if it ends in .json).
DIR holds JSON request bodies named `<anything>.<endpoint>.json`, where endpoint is
`chat`, `completions` or `embeddings`. Each body is validated against the matching request
schema (Draft 2020-12, `$ref`s resolved against the whole spec document).

Besides the schema, a few rules that the real API enforces but the schema does not are checked
too (`--schema-only` turns them off): no unknown top-level parameter (the chat and completions
schemas allow any), `stream_options` only with `stream: true`, `top_logprobs` only with
`logprobs: true`. OpenAPI 3.0 `nullable: true`, still used throughout the spec, is honoured.

A self-check first proves that validation is real (known-bad bodies must fail, known-good ones
pass, else exit 2). Output: `OK name` / `INVALID name` per file (the latter with its first errors),
then `spec: N passed, M failed`; exit status 0 all valid, 1 some body invalid (or DIR holds no body
file), 2 setup problem. The machinery is shared with the other validators: specval.py.
"""

import sys
import time

import specval

SPEC_URI = "urn:openai-spec"

ENDPOINT_SCHEMAS = {
    "chat": "CreateChatCompletionRequest",
    "completions": "CreateCompletionRequest",
    "embeddings": "CreateEmbeddingRequest",
}


def load_spec(path):
    if path.endswith(".json"):
        return specval.load_spec(path)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return specval.load_spec(path, lambda f: yaml.load(f, Loader=loader), (OSError, yaml.YAMLError))


def nullable_to_json_schema(node):
    """Rewrite OpenAPI 3.0 `nullable: true` into JSON Schema, in place.

    The spec says `openapi: 3.1.0` but still uses `nullable` on ~110 schemas. JSON Schema
    ignores unknown keywords, so left alone `{"type": "integer", "nullable": true}` would
    reject `null`, which the API accepts. `discriminator`, `example` and `x-*` are plain
    annotations and are left as they are.
    """
    if isinstance(node, list):
        return [nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    for key, value in list(node.items()):
        node[key] = nullable_to_json_schema(value)
    nullable = node.get("nullable")
    if not isinstance(nullable, bool):
        return node  # e.g. a property that happens to be called "nullable"
    del node["nullable"]
    if not nullable:
        return node
    composite = any(k in node for k in ("$ref", "allOf", "anyOf", "oneOf", "not"))
    if isinstance(node.get("type"), str) and not composite:
        node["type"] = [node["type"], "null"]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = node["enum"] + [None]
        return node
    return {"anyOf": [{"type": "null"}, node]}


def build_validators(spec):
    schemas = spec.get("components", {}).get("schemas", {})
    missing = [name for name in ENDPOINT_SCHEMAS.values() if name not in schemas]
    if missing:
        specval.fail_setup("schemas not found in spec: " + ", ".join(missing))
    pointers = {endpoint: "#/components/schemas/" + name for endpoint, name in ENDPOINT_SCHEMAS.items()}
    built = specval.validators(SPEC_URI, spec, pointers)
    return {endpoint: (built[endpoint], declared_properties(schemas, schemas[name]))
            for endpoint, name in ENDPOINT_SCHEMAS.items()}


def declared_properties(schemas, schema):
    """Top-level property names a request schema declares, following $ref and allOf."""
    if "$ref" in schema:
        return declared_properties(schemas, schemas[schema["$ref"].split("/")[-1]])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= declared_properties(schemas, part)
    return names


def rule_errors(endpoint, body, known_params):
    """Constraints the API enforces that the schema does not (or only in prose)."""
    if not isinstance(body, dict):
        return []
    errors = []
    # Only the embeddings schema says additionalProperties: false, but the API answers 400
    # "Unrecognized request argument supplied" for any unknown top-level parameter.
    unknown = set() if endpoint == "embeddings" else set(body) - known_params  # schema says it there
    for name in sorted(unknown):
        errors.append(("$." + name, "rule: unknown parameter %r (not in %s)" % (name, ENDPOINT_SCHEMAS[endpoint])))
    if endpoint in ("chat", "completions"):
        if body.get("stream_options") is not None and body.get("stream") is not True:
            errors.append(("$.stream_options", "rule: stream_options is only allowed when stream is true"))
    if endpoint == "chat":
        if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
            errors.append(("$.top_logprobs", "rule: top_logprobs requires logprobs: true"))
    return errors


deepest = specval.descend(specval.tagged_wrong_branch(("type", "role", "object")))


def validate(validators, endpoint, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    validator, known_params = validators[endpoint]
    found = specval.schema_errors(validator, body, deepest)
    if not schema_only:
        found.extend(rule_errors(endpoint, body, known_params))
    return found


SELF_CHECK = [
    # (endpoint, body, should_be_valid, what)
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, True, "minimal chat"),
    ("chat", {"model": "m", "messages": "not-an-array"}, False, "chat with string messages"),
    ("chat", {"model": "m", "messages": []}, False, "chat with empty messages"),
    ("chat", {"model": "m", "messages": [{"role": "nobody", "content": "hi"}]}, False, "chat with bad role"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": None}, True,
     "chat with null max_tokens (nullable)"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": "2"}, False, "chat with string n"),
    ("embeddings", {"model": "m"}, False, "embeddings without input"),
    ("embeddings", {"model": "m", "input": "hi"}, True, "minimal embeddings"),
    ("completions", {"model": "m"}, False, "completions without prompt"),
    ("completions", {"model": "m", "prompt": "hi"}, True, "minimal completions"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "provider": "x"}, False,
     "chat with an unknown parameter"),
]


def main(argv):
    parsed = specval.parse_args(argv, __doc__, 2)
    if parsed is None:
        return 2
    (spec_path, body_dir), schema_only, _ = parsed
    started = time.monotonic()
    validators = build_validators(nullable_to_json_schema(load_spec(spec_path)))
    specval.self_check(SELF_CHECK, lambda endpoint, body: validate(validators, endpoint, body))
    specval.loaded(started, spec_path)

    def check(name, path):
        endpoint = specval.endpoint_of(name)
        if endpoint not in ENDPOINT_SCHEMAS:
            raise specval.Invalid("name is not <anything>.<%s>.json" % "|".join(ENDPOINT_SCHEMAS))
        return ENDPOINT_SCHEMAS[endpoint], validate(validators, endpoint, specval.read_json(path), schema_only)

    return specval.check_dir(body_dir, check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
