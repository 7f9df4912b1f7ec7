#!/usr/bin/env python3
"""Validate request bodies that the gateway sent to Anthropic against the official Anthropic spec.

Usage: validate_anthropic.py [--schema-only] SPEC DIR

SPEC is Anthropic's OpenAPI document (JSON). DIR holds JSON request bodies named
`<anything>.messages.json`; each is validated against `CreateMessageParams`, the request schema of
`POST /v1/messages` (Draft 2020-12, `$ref`s resolved against the whole spec document). That schema
says `additionalProperties: false` nearly everywhere, so unknown fields are caught by the schema itself.

Besides the schema, rules that the API documents but the schema cannot express are checked too
(`--schema-only` turns them off): `thinking.budget_tokens` below `max_tokens`; with thinking enabled
no `temperature`/`top_k` and no forced tool use, and the assistant turn a tool loop continues
starts with its (signed) thinking blocks; in a user turn, `tool_result` blocks come before any
other block and answer `tool_use` ids of the assistant turn just before it.

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

SPEC_URI = "urn:anthropic-spec"
REQUEST_SCHEMA = "CreateMessageParams"
ENDPOINT = "messages"
MAX_ERRORS_SHOWN = 3


def fail_setup(message):
    print("validate_anthropic: " + message, file=sys.stderr)
    sys.exit(2)


def build_validator(spec):
    schemas = spec.get("components", {}).get("schemas", {})
    if REQUEST_SCHEMA not in schemas:
        fail_setup("schema not found in spec: " + REQUEST_SCHEMA)
    ref = spec.get("paths", {}).get("/v1/messages", {}).get("post", {}).get("requestBody", {})
    ref = ref.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    if not ref.endswith("/" + REQUEST_SCHEMA):
        fail_setup("POST /v1/messages no longer takes %s (it takes %r)" % (REQUEST_SCHEMA, ref))
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    schema = {"$ref": SPEC_URI + "#/components/schemas/" + REQUEST_SCHEMA}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def blocks_of(message):
    content = message.get("content")
    return content if isinstance(content, list) else []


def rule_errors(body):
    """Constraints the API documents that the schema does not express."""
    if not isinstance(body, dict):
        return []
    errors = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget, max_tokens = thinking.get("budget_tokens"), body.get("max_tokens")
        if isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
            errors.append(("$.thinking.budget_tokens", "rule: budget_tokens must be less than max_tokens"))
        if body.get("temperature") not in (None, 1, 1.0):
            errors.append(("$.temperature", "rule: temperature cannot be changed with thinking enabled"))
        if "top_k" in body:
            errors.append(("$.top_k", "rule: top_k cannot be set with thinking enabled"))
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            errors.append(("$.tool_choice", "rule: forced tool use is not allowed with thinking enabled"))
    messages = body.get("messages")
    if not isinstance(messages, list):
        return errors
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        assistant = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
        if assistant and assistant[-1] + 1 < len(messages):
            i = assistant[-1]
            calls = [b for b in blocks_of(messages[i]) if isinstance(b, dict) and b.get("type") == "tool_use"]
            results = [b for b in blocks_of(messages[i + 1]) if isinstance(b, dict) and b.get("type") == "tool_result"]
            first = (blocks_of(messages[i]) or [{}])[0]
            if calls and results and not (isinstance(first, dict)
                                          and first.get("type") in ("thinking", "redacted_thinking")):
                errors.append(("$.messages[%d].content[0]" % i,
                               "rule: with thinking enabled, the assistant turn a tool loop continues must "
                               "start with its thinking blocks"))
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        blocks = blocks_of(message)
        kinds = [b.get("type") if isinstance(b, dict) else None for b in blocks]
        if "tool_result" not in kinds:
            continue
        first_other = next((j for j, k in enumerate(kinds) if k != "tool_result"), len(kinds))
        if any(k == "tool_result" for k in kinds[first_other:]):
            errors.append(("$.messages[%d].content" % i, "rule: tool_result blocks must come first"))
        previous = messages[i - 1] if i > 0 and isinstance(messages[i - 1], dict) else {}
        asked = {b.get("id") for b in blocks_of(previous) if isinstance(b, dict) and b.get("type") == "tool_use"}
        if previous.get("role") != "assistant":
            asked = set()
        for j, block in enumerate(blocks):
            if kinds[j] == "tool_result" and block.get("tool_use_id") not in asked:
                errors.append(("$.messages[%d].content[%d].tool_use_id" % (i, j),
                               "rule: tool_result answers no tool_use of the previous assistant turn"))
    return errors


def short(text, limit=220):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


DISCRIMINATORS = ("type", "role")


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


def validate(validator, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = []
    for error in sorted(validator.iter_errors(body), key=relevance):
        inner = deepest(error)
        message = short(inner.message)
        if inner is not error:
            message = short(error.message, 100) + " <- " + inner.json_path + ": " + message
        found.append((error.json_path, message))
    if not schema_only:
        found.extend(rule_errors(body))
    return found


def user(text):
    return {"role": "user", "content": [{"type": "text", "text": text}]}


TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOL_TURNS = [
    user("weather?"),
    {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                                 {"type": "text", "text": "thanks"}]},
]

SELF_CHECK = [
    # (body, should_be_valid, what)
    ({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}, True, "minimal body"),
    ({"model": "m", "max_tokens": 10, "messages": TOOL_TURNS, "tools": [TOOL], "system": "be brief",
      "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}, "stop_sequences": ["x"],
      "metadata": {"user_id": "u"}, "stream": True}, True, "tool round trip"),
    ({"model": "m", "messages": [user("hi")]}, False, "body without max_tokens"),
    ({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "hi"}]}, False, "system role"),
    ({"model": "m", "max_tokens": 10, "messages": [user("hi")], "n": 1}, False, "unknown parameter"),
    ({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
     False, "empty text block"),
    ({"model": "m", "max_tokens": 10, "messages": [user("hi")], "tools": [TOOL], "tool_choice": {"type": "required"}},
     False, "OpenAI tool_choice"),
    ({"model": "m", "max_tokens": 10, "messages": [user("hi")], "tools": [{"type": "function", "function": TOOL}]},
     False, "OpenAI tool shape"),
    ({"model": "m", "max_tokens": 1024, "messages": [user("hi")], "thinking": {"type": "enabled", "budget_tokens": 1024}},
     False, "thinking budget not below max_tokens"),
    ({"model": "m", "max_tokens": 2048, "messages": TOOL_TURNS, "tools": [TOOL],
      "thinking": {"type": "enabled", "budget_tokens": 1024}}, False, "tool loop with thinking but no thinking blocks"),
    ({"model": "m", "max_tokens": 2048, "messages": [TOOL_TURNS[0], {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "call it", "signature": "c2ln"}, {"type": "redacted_thinking", "data": "ZW5j"}]
        + TOOL_TURNS[1]["content"]}, TOOL_TURNS[2]], "tools": [TOOL],
      "thinking": {"type": "enabled", "budget_tokens": 1024}}, True, "tool loop with its signed thinking blocks"),
    ({"model": "m", "max_tokens": 10, "messages": TOOL_TURNS[:2] + [{"role": "user", "content": list(
        reversed(TOOL_TURNS[2]["content"]))}], "tools": [TOOL]}, False, "tool_result after text"),
]


def self_check(validator):
    problems = []
    for body, should_be_valid, what in SELF_CHECK:
        errors = validate(validator, body)
        if should_be_valid and errors:
            problems.append("%s should pass but failed: %s" % (what, errors[0][1]))
        if not should_be_valid and not errors:
            problems.append("%s should fail but passed" % what)
    if problems:
        fail_setup("self-check failed, validation is not working:\n  " + "\n  ".join(problems))


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = [a for a in argv[1:] if a.startswith("--")]
    if len(args) != 2 or [f for f in flags if f != "--schema-only"]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    spec_path, body_dir = args
    schema_only = "--schema-only" in flags
    if not os.path.isdir(body_dir):
        fail_setup("not a directory: " + body_dir)

    started = time.monotonic()
    try:
        with open(spec_path, "rb") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        fail_setup("cannot load spec %s: %s" % (spec_path, e))
    validator = build_validator(spec)
    self_check(validator)
    print("spec loaded and self-checked in %.2fs: %s" % (time.monotonic() - started, spec_path))

    names = sorted(n for n in os.listdir(body_dir) if n.endswith(".json"))
    passed = failed = 0
    for name in names:
        if not name.endswith("." + ENDPOINT + ".json") or name.count(".") < 2:
            print("INVALID %s: name is not <anything>.%s.json" % (name, ENDPOINT))
            failed += 1
            continue
        try:
            with open(os.path.join(body_dir, name), "rb") as f:
                body = json.load(f)
        except (OSError, ValueError) as e:
            print("INVALID %s: not JSON: %s" % (name, short(e)))
            failed += 1
            continue
        errors = validate(validator, body, schema_only)
        if not errors:
            print("OK %s" % name)
            passed += 1
            continue
        failed += 1
        print("INVALID %s (%s, %d error%s)" % (name, REQUEST_SCHEMA, len(errors), "" if len(errors) == 1 else "s"))
        for path, message in errors[:MAX_ERRORS_SHOWN]:
            print("    %s: %s" % (path, message))

    if not names:
        print("no request bodies (*.json) in " + body_dir)
    print("spec: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
