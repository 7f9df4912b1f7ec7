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

Before the directory is validated a self-check makes sure that validation is real: known-bad
bodies must fail and known-good ones must pass, else exit 2.

Output: one `OK name` / `INVALID name` line per file (the latter followed by its first errors
with their JSON paths), then `spec: N passed, M failed`.
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

SPEC_URI = "urn:openai-spec"

ENDPOINT_SCHEMAS = {
    "chat": "CreateChatCompletionRequest",
    "completions": "CreateCompletionRequest",
    "embeddings": "CreateEmbeddingRequest",
}

MAX_ERRORS_SHOWN = 3


def fail_setup(message):
    print("validate_openai: " + message, file=sys.stderr)
    sys.exit(2)


def load_spec(path):
    with open(path, "rb") as f:
        if path.endswith(".json"):
            return json.load(f)
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(f, Loader=loader)


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
        fail_setup("schemas not found in spec: " + ", ".join(missing))
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    validators = {}
    for endpoint, name in ENDPOINT_SCHEMAS.items():
        schema = {"$ref": SPEC_URI + "#/components/schemas/" + name}
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        validators[endpoint] = (validator, declared_properties(schemas, schemas[name]))
    return validators


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


def short(text, limit=220):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


DISCRIMINATORS = ("type", "role", "object")


def wrong_branch(error):
    """True when a oneOf/anyOf branch failed because it is plainly the wrong alternative:
    the value has another JSON type, or its `type`/`role` tag names another variant."""
    if error.validator == "type" and not error.relative_path:
        return True
    return (error.validator in ("enum", "const") and len(error.relative_path) == 1
            and error.relative_path[0] in DISCRIMINATORS)


def deepest(error):
    """For a failed anyOf/oneOf, descend into the one alternative that the body evidently
    meant (all others failing on their type or tag) to give a readable message."""
    while error.context:
        branches = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        plausible = [errs for errs in branches.values() if not any(wrong_branch(e) for e in errs)]
        if len(plausible) != 1:
            break
        error = min(plausible[0], key=relevance)
    return error


def validate(validators, endpoint, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = []
    validator, known_params = validators[endpoint]
    errors = sorted(validator.iter_errors(body), key=relevance)
    for error in errors:
        inner = deepest(error)
        message = short(inner.message)
        if inner is not error:
            message = short(error.message, 100) + " <- " + inner.json_path + ": " + message
        found.append((error.json_path, message))
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


def self_check(validators):
    problems = []
    for endpoint, body, should_be_valid, what in SELF_CHECK:
        errors = validate(validators, endpoint, body)
        if should_be_valid and errors:
            problems.append("%s should pass but failed: %s" % (what, errors[0][1]))
        if not should_be_valid and not errors:
            problems.append("%s should fail but passed" % what)
    if problems:
        fail_setup("self-check failed, validation is not working:\n  " + "\n  ".join(problems))


def endpoint_of(filename):
    parts = filename.split(".")
    return parts[-2] if len(parts) >= 3 else None


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = [a for a in argv[1:] if a.startswith("--")]
    unknown = [f for f in flags if f != "--schema-only"]
    if len(args) != 2 or unknown:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    spec_path, body_dir = args
    schema_only = "--schema-only" in flags
    if not os.path.isdir(body_dir):
        fail_setup("not a directory: " + body_dir)

    started = time.monotonic()
    try:
        spec = nullable_to_json_schema(load_spec(spec_path))
    except Exception as e:  # OSError, JSON or YAML syntax errors
        fail_setup("cannot load spec %s: %s" % (spec_path, e))
    validators = build_validators(spec)
    self_check(validators)
    print("spec loaded and self-checked in %.2fs: %s" % (time.monotonic() - started, spec_path))

    names = sorted(n for n in os.listdir(body_dir) if n.endswith(".json"))
    passed = failed = 0
    for name in names:
        endpoint = endpoint_of(name)
        if endpoint not in ENDPOINT_SCHEMAS:
            print("INVALID %s: name is not <anything>.<%s>.json" % (name, "|".join(ENDPOINT_SCHEMAS)))
            failed += 1
            continue
        try:
            with open(os.path.join(body_dir, name), "rb") as f:
                body = json.load(f)
        except (OSError, ValueError) as e:
            print("INVALID %s: not JSON: %s" % (name, short(e)))
            failed += 1
            continue
        errors = validate(validators, endpoint, body, schema_only)
        if not errors:
            print("OK %s" % name)
            passed += 1
            continue
        failed += 1
        print("INVALID %s (%s, %d error%s)" % (name, ENDPOINT_SCHEMAS[endpoint], len(errors),
                                              "" if len(errors) == 1 else "s"))
        for path, message in errors[:MAX_ERRORS_SHOWN]:
            print("    %s: %s" % (path, message))

    if not names:
        print("no request bodies (*.json) in " + body_dir)
    print("spec: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
