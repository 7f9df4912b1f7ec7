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

A self-check first proves that validation is real (known-bad bodies must fail, known-good ones
pass, else exit 2). Output: `OK name` / `INVALID name` per file (the latter with its first errors),
then `spec: N passed, M failed`; exit status 0 all valid, 1 some body invalid (or DIR holds no body
file), 2 setup problem. The machinery is shared with the other validators: specval.py.
"""

import sys
import time

import specval

SPEC_URI = "urn:anthropic-spec"
REQUEST_SCHEMA = "CreateMessageParams"
ENDPOINT = "messages"


def build_validator(spec):
    if REQUEST_SCHEMA not in spec.get("components", {}).get("schemas", {}):
        specval.fail_setup("schema not found in spec: " + REQUEST_SCHEMA)
    ref = specval.request_ref(spec, "/v1/messages")
    if not ref.endswith("/" + REQUEST_SCHEMA):
        specval.fail_setup("POST /v1/messages no longer takes %s (it takes %r)" % (REQUEST_SCHEMA, ref))
    pointers = {REQUEST_SCHEMA: "#/components/schemas/" + REQUEST_SCHEMA}
    return specval.validators(SPEC_URI, spec, pointers)[REQUEST_SCHEMA]


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


deepest = specval.descend(specval.tagged_wrong_branch(("type", "role")))


def validate(validator, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = specval.schema_errors(validator, body, deepest)
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


def main(argv):
    parsed = specval.parse_args(argv, __doc__, 2)
    if parsed is None:
        return 2
    (spec_path, body_dir), schema_only, _ = parsed
    started = time.monotonic()
    validator = build_validator(specval.load_spec(spec_path))
    specval.self_check(SELF_CHECK, lambda body: validate(validator, body))
    specval.loaded(started, spec_path)

    def check(name, path):
        if specval.endpoint_of(name) != ENDPOINT:
            raise specval.Invalid("name is not <anything>.%s.json" % ENDPOINT)
        return REQUEST_SCHEMA, validate(validator, specval.read_json(path), schema_only)

    return specval.check_dir(body_dir, check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
