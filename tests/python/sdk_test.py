#!/usr/bin/env python3
"""Drive the official `openai` Python SDK against a running Tollgate gateway.

Environment:
  TOLLGATE_BASE_URL  e.g. http://127.0.0.1:4567/v1
  TOLLGATE_KEY       a gateway key allowed to use "gpt-*", "tools-*", "embed-*" and "echo"

The gateway must be configured with the fake upstream models gpt-test, tools-test, embed-test,
the built-in echo provider as "echo", and a model secret-model that the key may not use.

Prints `PASS name` / `FAIL name: reason` per check, then `sdk: N passed, M failed`.
Exit status: 0 all passed, 1 some check failed, 2 missing environment.
"""

import json
import os
import sys
import traceback

import openai
from openai import OpenAI

BASE_URL = os.environ.get("TOLLGATE_BASE_URL", "")
KEY = os.environ.get("TOLLGATE_KEY", "")

USER_TEXT = "hello there"
WEATHER_QUESTION = "What's the weather in Paris?"
WEATHER_ARGS = '{"city":"Paris"}'
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def make_client(api_key=None):
    return OpenAI(base_url=BASE_URL, api_key=api_key or KEY, max_retries=0, timeout=30.0)


client = None  # set in main()


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_equal(actual, expected, what):
    if actual != expected:
        raise CheckFailed("%s: expected %r, got %r" % (what, expected, actual))


def expect_error(error_type, call):
    """Run call(); it must raise error_type. Returns the exception."""
    try:
        result = call()
    except error_type as e:
        return e
    except openai.APIStatusError as e:
        raise CheckFailed("expected %s, got %s (HTTP %s): %s"
                          % (error_type.__name__, type(e).__name__, e.status_code, e.body))
    raise CheckFailed("expected %s, but the call succeeded: %r" % (error_type.__name__, result))


def error_field(e, name):
    """A field of an OpenAI-shaped error: e.<name>, else e.body[name], else e.body['error'][name].

    The SDK sets e.body to the inner `error` object when the body has one."""
    value = getattr(e, name, None)
    if value is not None:
        return value
    body = e.body if isinstance(e.body, dict) else {}
    if body.get(name) is not None:
        return body[name]
    inner = body.get("error")
    return inner.get(name) if isinstance(inner, dict) else None


def user(text):
    return [{"role": "user", "content": text}]


def check_usage(usage, what):
    expect(usage is not None, what + ": no usage")
    expect_equal(usage.prompt_tokens, 11, what + " prompt_tokens")
    expect_equal(usage.completion_tokens, 7, what + " completion_tokens")
    expect_equal(usage.total_tokens, 18, what + " total_tokens")
    details = getattr(usage, "prompt_tokens_details", None)
    expect(details is not None, what + ": no prompt_tokens_details")
    # Older SDKs (< 1.47) have no model for it and keep the raw dict.
    cached = details.get("cached_tokens") if isinstance(details, dict) else details.cached_tokens
    expect_equal(cached, 3, what + " prompt_tokens_details.cached_tokens")


def stream_chat(**kwargs):
    """Stream a chat completion; return (chunks, concatenated content, finish reasons)."""
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    text = ""
    finish_reasons = []
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason is not None:
                finish_reasons.append(choice.finish_reason)
    return chunks, text, finish_reasons


# ---------------------------------------------------------------------------------------------
# Chat completions against the fake OpenAI upstream


def test_chat():
    resp = client.chat.completions.create(model="gpt-test", messages=user(USER_TEXT))
    expect_equal(resp.object, "chat.completion", "object")
    expect_equal(len(resp.choices), 1, "number of choices")
    choice = resp.choices[0]
    expect_equal(choice.message.role, "assistant", "role")
    expect_equal(choice.message.content, "fake: " + USER_TEXT, "content")
    expect_equal(choice.finish_reason, "stop", "finish_reason")
    check_usage(resp.usage, "usage")


def test_chat_stream():
    chunks, text, finish_reasons = stream_chat(model="gpt-test", messages=user(USER_TEXT))
    expect(len(chunks) >= 2, "expected several chunks, got %d" % len(chunks))
    expect_equal(text, "fake: " + USER_TEXT, "streamed content")
    expect_equal(finish_reasons, ["stop"], "finish reasons")
    for i, chunk in enumerate(chunks):
        expect_equal(chunk.object, "chat.completion.chunk", "chunk %d object" % i)
        expect(chunk.usage is None, "chunk %d has usage %r without include_usage" % (i, chunk.usage))
        expect(len(chunk.choices) > 0, "chunk %d has empty choices without include_usage" % i)


def test_chat_stream_include_usage():
    chunks, text, finish_reasons = stream_chat(
        model="gpt-test", messages=user(USER_TEXT), stream_options={"include_usage": True})
    expect_equal(text, "fake: " + USER_TEXT, "streamed content")
    expect_equal(finish_reasons, ["stop"], "finish reasons")
    last = chunks[-1]
    expect_equal(last.choices, [], "choices of the last (usage) chunk")
    check_usage(last.usage, "last chunk usage")
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    expect_equal(with_usage, [len(chunks) - 1], "indexes of chunks carrying usage")


def test_response_headers():
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=user(USER_TEXT))
    expect(raw.headers.get("x-request-id"), "no x-request-id header (headers: %s)" % dict(raw.headers))
    expect(raw.headers.get("x-tollgate-provider"),
           "no x-tollgate-provider header (headers: %s)" % dict(raw.headers))
    resp = raw.parse()
    expect_equal(resp.choices[0].message.content, "fake: " + USER_TEXT, "content")


# ---------------------------------------------------------------------------------------------
# Tool calls


def test_tool_call():
    resp = client.chat.completions.create(
        model="tools-test", messages=user(WEATHER_QUESTION), tools=[WEATHER_TOOL], tool_choice="auto")
    choice = resp.choices[0]
    expect_equal(choice.finish_reason, "tool_calls", "finish_reason")
    expect_equal(choice.message.content, None, "content")
    calls = choice.message.tool_calls or []
    expect_equal(len(calls), 1, "number of tool calls")
    call = calls[0]
    expect_equal(call.id, "call_1", "tool call id")
    expect_equal(call.type, "function", "tool call type")
    expect_equal(call.function.name, "get_weather", "function name")
    expect_equal(call.function.arguments, WEATHER_ARGS, "function arguments")


def test_tool_call_stream():
    chunks, text, finish_reasons = stream_chat(
        model="tools-test", messages=user(WEATHER_QUESTION), tools=[WEATHER_TOOL], tool_choice="auto")
    deltas = [tc for c in chunks for choice in c.choices for tc in (choice.delta.tool_calls or [])]
    expect(len(deltas) >= 2, "expected the tool call in several deltas, got %d" % len(deltas))
    first = deltas[0]
    expect_equal(first.index, 0, "first delta index")
    expect_equal(first.id, "call_1", "first delta id")
    expect_equal(first.type, "function", "first delta type")
    expect_equal(first.function.name if first.function else None, "get_weather", "first delta name")
    expect_equal([d.index for d in deltas], [0] * len(deltas), "delta indexes")
    arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    expect_equal(arguments, WEATHER_ARGS, "concatenated arguments")
    expect_equal(text, "", "streamed content")
    expect_equal(finish_reasons, ["tool_calls"], "finish reasons")


def test_tool_result_turn():
    messages = [
        {"role": "user", "content": WEATHER_QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": WEATHER_ARGS}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18, "sky": "clear"}'},
    ]
    resp = client.chat.completions.create(
        model="gpt-test", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto")
    expect_equal(resp.choices[0].message.content, "fake: " + WEATHER_QUESTION, "content")
    expect_equal(resp.choices[0].finish_reason, "stop", "finish_reason")


# ---------------------------------------------------------------------------------------------
# Embeddings


def check_embeddings(resp, count):
    expect_equal(len(resp.data), count, "number of embeddings")
    for i, item in enumerate(resp.data):
        expect_equal(item.index, i, "index of embedding %d" % i)
        vector = list(item.embedding)
        expect_equal(len(vector), 3, "length of embedding %d" % i)
        expect(all(isinstance(x, float) for x in vector), "embedding %d is not floats: %r" % (i, vector))
    expect_equal(resp.usage.prompt_tokens, 5, "usage.prompt_tokens")


def test_embeddings_float():
    resp = client.embeddings.create(model="embed-test", input=["first", "second"], encoding_format="float")
    check_embeddings(resp, 2)


def test_embeddings_sdk_default():
    # Without encoding_format the SDK asks upstream for base64 and decodes it itself; the
    # gateway must pass that through (or answer floats, which the SDK also accepts).
    resp = client.embeddings.create(model="embed-test", input="just one")
    check_embeddings(resp, 1)


# ---------------------------------------------------------------------------------------------
# Built-in echo provider


def test_echo_chat():
    text = "echo me back please"
    resp = client.chat.completions.create(
        model="echo", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": text}])
    expect_equal(resp.choices[0].message.content, text, "content")


def test_echo_chat_stream():
    text = "the quick brown fox jumps"
    chunks, streamed, finish_reasons = stream_chat(model="echo", messages=user(text))
    expect_equal(streamed, text, "streamed content")
    pieces = [c for c in chunks if any(ch.delta.content for ch in c.choices)]
    expect(len(pieces) >= 2, "expected word-by-word deltas, got %d content chunks" % len(pieces))
    expect_equal(len(finish_reasons), 1, "number of finish reasons")


def test_echo_legacy_completion():
    resp = client.completions.create(model="echo", prompt="say this")
    expect_equal(resp.object, "text_completion", "object")
    expect_equal(resp.choices[0].text, "say this", "text")


# ---------------------------------------------------------------------------------------------
# Models


def test_models_list():
    ids = [m.id for m in client.models.list()]
    for wanted in ("gpt-test", "tools-test", "embed-test", "echo"):
        expect(wanted in ids, "%s missing from %s" % (wanted, ids))
    expect("secret-model" not in ids, "secret-model is listed for a key that may not use it")


def test_models_retrieve():
    expect_equal(client.models.retrieve("gpt-test").id, "gpt-test", "id")


def test_models_retrieve_forbidden():
    expect_error(openai.NotFoundError, lambda: client.models.retrieve("secret-model"))


# ---------------------------------------------------------------------------------------------
# Errors


def test_forbidden_model():
    e = expect_error(openai.PermissionDeniedError,
                     lambda: client.chat.completions.create(model="secret-model", messages=user("hi")))
    expect_equal(e.status_code, 403, "status")


def test_unknown_model():
    e = expect_error(openai.NotFoundError,
                     lambda: client.chat.completions.create(model="no-such-model", messages=user("hi")))
    expect_equal(error_field(e, "code"), "model_not_found", "error code")


def test_bad_key():
    bad = make_client(api_key="tg-this-key-does-not-exist")
    e = expect_error(openai.AuthenticationError,
                     lambda: bad.chat.completions.create(model="gpt-test", messages=user("hi")))
    expect_equal(e.status_code, 401, "status")


def test_empty_messages():
    e = expect_error(openai.BadRequestError,
                     lambda: client.chat.completions.create(model="gpt-test", messages=[]))
    expect_equal(error_field(e, "param"), "messages", "error param")
    expect(error_field(e, "message"), "error has no message: %r" % (e.body,))


CHECKS = [
    test_chat,
    test_chat_stream,
    test_chat_stream_include_usage,
    test_response_headers,
    test_tool_call,
    test_tool_call_stream,
    test_tool_result_turn,
    test_embeddings_float,
    test_embeddings_sdk_default,
    test_echo_chat,
    test_echo_chat_stream,
    test_echo_legacy_completion,
    test_models_list,
    test_models_retrieve,
    test_models_retrieve_forbidden,
    test_forbidden_model,
    test_unknown_model,
    test_bad_key,
    test_empty_messages,
]


def main():
    global client
    if not BASE_URL or not KEY:
        print("sdk_test: set TOLLGATE_BASE_URL and TOLLGATE_KEY", file=sys.stderr)
        return 2
    client = make_client()
    print("openai %s against %s" % (openai.__version__, BASE_URL))
    passed = failed = 0
    for check in CHECKS:
        name = check.__name__[len("test_"):]
        try:
            check()
        except CheckFailed as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
        except Exception as e:  # an SDK error or a bug: report it and go on
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            if os.environ.get("SDK_TEST_TRACEBACK"):
                traceback.print_exc()
        else:
            passed += 1
            print("PASS %s" % name)
        sys.stdout.flush()
    print("sdk: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
