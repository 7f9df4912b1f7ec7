#!/usr/bin/env python3
"""Validate request bodies that the gateway sent to AWS Bedrock against the Bedrock Runtime spec.

Usage: validate_bedrock.py [--schema-only] [--service-model=SERVICE_JSON] SPEC DIR

SPEC is the Bedrock Runtime OpenAPI document (`bedrock-runtime.openapi.json`, converted from the
service model). DIR holds JSON request bodies named `<anything>.converse.json` or
`<anything>.converse-stream.json`; each is validated against the request schema of its operation,
`ConverseRequest` (`POST /model/{modelId}/converse`) or `ConverseStreamRequest`
(`POST /model/{modelId}/converse-stream`), Draft 2020-12 with `$ref`s resolved against the whole
document. The model id is a path parameter, not part of the body. The schemas say
`additionalProperties: false` and model unions as one-member objects (`oneOf`), so unknown members
and malformed unions are caught by the schema itself.

Rules that the API documents in prose (`--schema-only` turns them off): messages alternate between
`user` and `assistant`, starting with `user`; text blocks are not blank; image `bytes` are base64;
`toolUse`/`toolResult` blocks need a `toolConfig`; a `toolResult` answers a `toolUse` of the
assistant turn just before it; `toolChoice.tool.name` names a declared tool; tool names are unique;
a JSON schema in `outputConfig` is a JSON object serialized as a string; with Anthropic extended
thinking (`additionalModelRequestFields.thinking`), `budget_tokens` is below `maxTokens` and
`temperature`/`topP` are not set.

With `--service-model` (botocore's `service-2.json`), DIR may also hold what Bedrock answers, checked
against the service model's shapes (structures with their required and only their known members,
unions with exactly one member, enums, number and blob types): `<anything>.response.json` is a
`ConverseResponse`; `<anything>.events.jsonl` is a ConverseStream, one decoded event-stream message per
line, `{"message-type": "event" | "exception", "type": <:event-type or :exception-type>, "payload": ...}`,
each type a member of `ConverseStreamOutput` and its payload that member's shape;
`[<anything>.]<ExceptionName>.error.json` is an error body, that exception's shape.

A self-check first proves that validation is real (known-bad bodies must fail, known-good ones
pass, else exit 2). Output: `OK name` / `INVALID name` per file (the latter with its first errors),
then `spec: N passed, M failed`; exit status 0 all valid, 1 some body invalid (or DIR holds no body
file), 2 setup problem. The machinery is shared with the other validators: specval.py.
"""

import base64
import binascii
import json
import sys
import time

import specval

SPEC_URI = "urn:bedrock-runtime-spec"
OPERATIONS = {
    # file suffix: (path, request schema)
    "converse": ("/model/{modelId}/converse", "ConverseRequest"),
    "converse-stream": ("/model/{modelId}/converse-stream", "ConverseStreamRequest"),
}


def build_validators(spec):
    schemas = spec.get("components", {}).get("schemas", {})
    for suffix, (path, name) in OPERATIONS.items():
        if name not in schemas:
            specval.fail_setup("schema not found in spec: " + name)
        ref = specval.request_ref(spec, path)
        if not ref.endswith("/" + name):
            specval.fail_setup("POST %s no longer takes %s (it takes %r)" % (path, name, ref))
    pointers = {suffix: "#/components/schemas/" + name for suffix, (_, name) in OPERATIONS.items()}
    built = specval.validators(SPEC_URI, spec, pointers)
    return {suffix: (name, built[suffix]) for suffix, (_, name) in OPERATIONS.items()}


def blocks_of(message):
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def is_base64(text):
    try:
        base64.b64decode(text, validate=True)
        return True
    except (binascii.Error, ValueError, TypeError):
        return False


def rule_errors(body):
    """Constraints the API documents that the schema does not express."""
    if not isinstance(body, dict):
        return []
    errors = []
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    tool_config = body.get("toolConfig") if isinstance(body.get("toolConfig"), dict) else None
    uses_tools = False
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        at = "$.messages[%d]" % i
        if role not in ("user", "assistant"):
            errors.append((at + ".role", "rule: roles are user or assistant"))
        if i == 0 and role != "user":
            errors.append((at + ".role", "rule: the conversation starts with a user message"))
        if previous is not None and previous.get("role") == role:
            errors.append((at + ".role", "rule: user and assistant messages alternate"))
        asked = set()
        if previous is not None and previous.get("role") == "assistant":
            asked = {b["toolUse"].get("toolUseId") for b in blocks_of(previous) if isinstance(b.get("toolUse"), dict)}
        for j, block in enumerate(blocks_of(message)):
            bat = "%s.content[%d]" % (at, j)
            if isinstance(block.get("text"), str) and not block["text"].strip():
                errors.append((bat + ".text", "rule: text blocks must not be blank"))
            image = block.get("image")
            if isinstance(image, dict):
                data = (image.get("source") or {}).get("bytes")
                if isinstance(data, str) and not is_base64(data):
                    errors.append((bat + ".image.source.bytes", "rule: image bytes must be base64"))
            if "toolUse" in block or "toolResult" in block:
                uses_tools = True
            result = block.get("toolResult")
            if isinstance(result, dict) and result.get("toolUseId") not in asked:
                errors.append((bat + ".toolResult.toolUseId",
                               "rule: toolResult answers no toolUse of the previous assistant turn"))
        previous = message
    if uses_tools and tool_config is None:
        errors.append(("$.toolConfig", "rule: toolUse/toolResult blocks need a toolConfig"))
    if tool_config is not None:
        names = [t["toolSpec"].get("name") for t in tool_config.get("tools") or []
                 if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)]
        if len(names) != len(set(names)):
            errors.append(("$.toolConfig.tools", "rule: tool names must be unique"))
        choice = tool_config.get("toolChoice")
        if isinstance(choice, dict) and isinstance(choice.get("tool"), dict):
            if choice["tool"].get("name") not in names:
                errors.append(("$.toolConfig.toolChoice.tool.name", "rule: names no declared tool"))
    fmt = ((body.get("outputConfig") or {}).get("textFormat") or {}) if isinstance(body.get("outputConfig"), dict) else {}
    schema_text = ((fmt.get("structure") or {}).get("jsonSchema") or {}).get("schema") if isinstance(fmt, dict) else None
    if isinstance(schema_text, str):
        try:
            if not isinstance(json.loads(schema_text), dict):
                raise ValueError("not an object")
        except ValueError:
            errors.append(("$.outputConfig.textFormat.structure.jsonSchema.schema",
                           "rule: the schema must be a JSON object serialized as a string"))
    extra = body.get("additionalModelRequestFields")
    thinking = extra.get("thinking") if isinstance(extra, dict) else None
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        inference = body.get("inferenceConfig") if isinstance(body.get("inferenceConfig"), dict) else {}
        budget, max_tokens = thinking.get("budget_tokens"), inference.get("maxTokens")
        if not isinstance(budget, int) or budget < 1024:
            errors.append(("$.additionalModelRequestFields.thinking.budget_tokens", "rule: at least 1024"))
        elif isinstance(max_tokens, int) and budget >= max_tokens:
            errors.append(("$.additionalModelRequestFields.thinking.budget_tokens",
                           "rule: budget_tokens must be less than maxTokens"))
        for field in ("temperature", "topP"):
            if field in inference:
                errors.append(("$.inferenceConfig." + field, "rule: not with thinking enabled"))
    return errors


def wrong_branch(error):
    """True when a oneOf branch failed because it is plainly the wrong alternative: the value has
    another JSON type, or lacks the branch's one required member (the union's tag)."""
    if error.validator == "type" and not error.relative_path:
        return True
    return error.validator in ("required", "additionalProperties") and not error.relative_path


deepest = specval.descend(wrong_branch)


def validate(validator, body, schema_only=False):
    """Return a list of (json_path, message); empty when the body is valid."""
    found = specval.schema_errors(validator, body, deepest)
    if not schema_only:
        found.extend(rule_errors(body))
    return found


class ServiceModel:
    """Checks JSON values against the shapes of a botocore service model (the JSON protocol's view:
    blobs are base64 strings, timestamps numbers or strings, documents anything)."""

    def __init__(self, model):
        self.shapes = model.get("shapes", {})

    def errors(self, shape_name, value, path="$"):
        shape = self.shapes.get(shape_name)
        if shape is None:
            return [(path, "unknown shape " + shape_name)]
        kind = shape.get("type")
        if shape.get("document"):
            return []
        if kind == "structure":
            if not isinstance(value, dict):
                return [(path, "%s must be an object" % shape_name)]
            members = shape.get("members", {})
            found = []
            for name in value:
                if name not in members:
                    found.append((path + "." + name, "not a member of " + shape_name))
            for name in shape.get("required", []):
                if name not in value:
                    found.append((path, "%s requires %s" % (shape_name, name)))
            if shape.get("union") and len([k for k in value if k in members]) != 1:
                found.append((path, "union %s must have exactly one member, has %d" % (shape_name, len(value))))
            for name, v in value.items():
                if name in members:
                    found.extend(self.errors(members[name]["shape"], v, path + "." + name))
            return found
        if kind == "list":
            if not isinstance(value, list):
                return [(path, "%s must be an array" % shape_name)]
            found = []
            for i, v in enumerate(value):
                found.extend(self.errors(shape["member"]["shape"], v, "%s[%d]" % (path, i)))
            return found
        if kind == "map":
            if not isinstance(value, dict):
                return [(path, "%s must be an object" % shape_name)]
            found = []
            for k, v in value.items():
                found.extend(self.errors(shape["value"]["shape"], v, path + "." + k))
            return found
        if kind == "string":
            if not isinstance(value, str):
                return [(path, "%s must be a string" % shape_name)]
            if "enum" in shape and value not in shape["enum"]:
                return [(path, "%r is not one of %s" % (value, shape["enum"]))]
            return []
        if kind in ("integer", "long"):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= shape.get("min", value)
            return [] if ok else [(path, "%s must be an integer >= %s" % (shape_name, shape.get("min")))]
        if kind in ("float", "double"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return [] if ok else [(path, shape_name + " must be a number")]
        if kind == "boolean":
            return [] if isinstance(value, bool) else [(path, shape_name + " must be a boolean")]
        if kind == "blob":
            return [] if isinstance(value, str) and is_base64(value) else [(path, shape_name + " must be base64")]
        if kind == "timestamp":
            return [] if isinstance(value, (int, float, str)) else [(path, shape_name + " must be a timestamp")]
        return [(path, "unhandled shape type %s" % kind)]

    def stream_errors(self, lines):
        output = self.shapes.get("ConverseStreamOutput", {}).get("members", {})
        found = []
        for i, line in enumerate(lines):
            at = "line %d" % (i + 1)
            if not isinstance(line, dict) or line.get("message-type") not in ("event", "exception"):
                found.append((at, "message-type must be event or exception"))
                continue
            member = output.get(line.get("type"))
            is_exception = self.shapes.get(member["shape"], {}).get("exception") if member else None
            if member is None:
                found.append((at, "%r is not a ConverseStreamOutput member" % line.get("type")))
            elif bool(is_exception) != (line["message-type"] == "exception"):
                found.append((at, "%s is sent as the wrong message-type" % line["type"]))
            else:
                found.extend(self.errors(member["shape"], line.get("payload"), at))
        return found


def user(text):
    return {"role": "user", "content": [{"text": text}]}


TOOL = {"toolSpec": {"name": "get_weather", "description": "weather",
                     "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}
TOOL_TURNS = [
    user("weather?"),
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                                 {"text": "thanks"}]},
]
SCHEMA = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})

SELF_CHECK = [
    # (operation, body, should_be_valid, what)
    ("converse", {"messages": [user("hi")]}, True, "minimal body"),
    ("converse-stream", {"messages": TOOL_TURNS, "system": [{"text": "be brief"}, {"cachePoint": {"type": "default"}}],
      "toolConfig": {"tools": [TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
      "inferenceConfig": {"maxTokens": 10, "temperature": 0.5, "topP": 0.9, "stopSequences": ["x"]},
      "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": SCHEMA, "name": "a"}}}}},
     True, "tool round trip"),
    ("converse", {"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]}]},
     True, "image"),
    ("converse", {"modelId": "m", "messages": [user("hi")]}, False, "model id in the body"),
    ("converse", {"messages": [user("hi")], "max_tokens": 5}, False, "unknown member"),
    ("converse", {"messages": [{"role": "user", "content": "hi"}]}, False, "string content"),
    ("converse", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, False, "OpenAI content part"),
    ("converse", {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}, False, "two-member union"),
    ("converse", {"messages": [user("hi")], "inferenceConfig": {"temperature": 1.5}}, False, "temperature above 1"),
    ("converse", {"messages": [user("hi")], "toolConfig": {"tools": [], "toolChoice": {"auto": {}}}}, False, "no tools"),
    ("converse", {"messages": [user("hi")], "toolConfig": {"tools": [{"type": "function", "function": {"name": "f"}}]}},
     False, "OpenAI tool shape"),
    ("converse", {"messages": [user("a"), user("b")]}, False, "roles not alternating"),
    ("converse", {"messages": [user(" ")]}, False, "blank text"),
    ("converse", {"messages": TOOL_TURNS}, False, "tool blocks without toolConfig"),
    ("converse", {"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}]},
     False, "image bytes not base64"),
    ("converse", {"messages": [user("hi")], "inferenceConfig": {"maxTokens": 1024, "temperature": 0.2},
                  "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     False, "thinking budget not below maxTokens, with temperature"),
]


GOOD_ANSWER = {"output": {"message": {"role": "assistant", "content": [
    {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "c2ln"}}},
    {"text": "hi"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}]}},
    "stopReason": "tool_use", "metrics": {"latencyMs": 3},
    "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3, "cacheReadInputTokens": 0}}
GOOD_EVENTS = [
    {"message-type": "event", "type": "messageStart", "payload": {"role": "assistant"}},
    {"message-type": "event", "type": "contentBlockStart",
     "payload": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}},
    {"message-type": "event", "type": "contentBlockDelta",
     "payload": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}}},
    {"message-type": "event", "type": "messageStop", "payload": {"stopReason": "tool_use"}},
    {"message-type": "event", "type": "metadata", "payload": {"usage": {"inputTokens": 1, "outputTokens": 2,
     "totalTokens": 3}, "metrics": {"latencyMs": 5}}},
    {"message-type": "exception", "type": "throttlingException", "payload": {"message": "slow down"}},
]
SELF_CHECK_ANSWERS = [
    # (kind, value, should_be_valid, what)
    ("response", GOOD_ANSWER, True, "answer with reasoning, text and a tool use"),
    ("events", GOOD_EVENTS, True, "tool-use stream and an exception"),
    ("response", dict(GOOD_ANSWER, metrics=None), False, "metrics not an object"),
    ("response", {k: v for k, v in GOOD_ANSWER.items() if k != "usage"}, False, "answer without usage"),
    ("response", dict(GOOD_ANSWER, stopReason="done"), False, "unknown stop reason"),
    ("response", dict(GOOD_ANSWER, output={"message": {"role": "assistant", "content": [
        {"text": "a", "toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}}), False, "two-member union"),
    ("events", [{"message-type": "event", "type": "contentBlockDelta",
                 "payload": {"delta": {"text": "x"}}}], False, "delta without contentBlockIndex"),
    ("events", [{"message-type": "event", "type": "messageStop", "payload": {"stop_reason": "end_turn"}}],
     False, "snake_case member"),
    ("events", [{"message-type": "event", "type": "throttlingException", "payload": {"message": "x"}}],
     False, "exception sent as an event"),
    ("events", [{"message-type": "event", "type": "message_start", "payload": {}}], False, "unknown event"),
]


def answer_self_check_errors(model, kind, value):
    return model.errors("ConverseResponse", value) if kind == "response" else model.stream_errors(value)


def operation_of(name):
    for suffix in sorted(OPERATIONS, key=len, reverse=True):
        if name.endswith("." + suffix + ".json") and len(name) > len(suffix) + 6:
            return suffix
    return None


def answer_errors(model, name, path):
    """What a recorded answer (`.response.json`, `.error.json`) or stream (`.events.jsonl`) is
    checked as, and its errors."""
    value = specval.read_json(path, lines=name.endswith(".jsonl"))
    if name.endswith(".jsonl"):
        return "ConverseStreamOutput", model.stream_errors(value)
    if name.endswith(".error.json"):
        what = name[: -len(".error.json")].rsplit(".", 1)[-1]
        shape = model.shapes.get(what, {})
        return what, model.errors(what, value) if shape.get("exception") else [("$", what + " is no exception")]
    return "ConverseResponse", model.errors("ConverseResponse", value)


def main(argv):
    parsed = specval.parse_args(argv, __doc__, 2, ("--service-model",))
    if parsed is None:
        return 2
    (spec_path, body_dir), schema_only, values = parsed
    service_model = None
    if "--service-model" in values:
        service_model = ServiceModel(specval.load_spec(values["--service-model"], what="service model"))
        specval.self_check(SELF_CHECK_ANSWERS, lambda kind, value: answer_self_check_errors(service_model, kind, value),
                           "answer self-check")

    started = time.monotonic()
    validators = build_validators(specval.load_spec(spec_path))
    specval.self_check(SELF_CHECK, lambda op, body: validate(validators[op][1], body))
    specval.loaded(started, spec_path)

    def check(name, path):
        if service_model is not None and name.endswith((".events.jsonl", ".response.json", ".error.json")):
            return answer_errors(service_model, name, path)
        op = operation_of(name)
        if op is None:
            raise specval.Invalid("name is not <anything>.converse.json or <anything>.converse-stream.json")
        schema_name, validator = validators[op]
        return schema_name, validate(validator, specval.read_json(path), schema_only)

    suffixes = (".json", ".events.jsonl") if service_model is not None else (".json",)
    return specval.check_dir(body_dir, check, suffixes)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
