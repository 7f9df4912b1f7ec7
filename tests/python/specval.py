"""What the spec validators (`validate_*.py`) share: their command line, loading a spec, building
JSON Schema validators with `$ref`s resolved against the whole spec, readable error messages, the
self-check that proves validation is real, and the run over a directory of recorded bodies with its
output contract:

- one `OK name` / `INVALID name` line per file (the latter followed by its first errors with their
  JSON paths), then `spec: N passed, M failed`;
- exit status 0 all valid, 1 some body invalid (or the directory holds no body file), 2 setup problem.

Each validator keeps its own provider rules, self-check bodies and file naming.
"""

import json
import os
import sys
import time

import jsonschema
from jsonschema.exceptions import relevance
from referencing import Registry
from referencing.jsonschema import DRAFT202012

MAX_ERRORS_SHOWN = 3


def fail_setup(message):
    """Exits 2 with `<validator>: message` on stderr."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    print(name + ": " + message, file=sys.stderr)
    sys.exit(2)


def parse_args(argv, doc, nargs, value_flags=()):
    """The positional arguments (the last one the bodies' directory), whether `--schema-only` was
    given, and the `--NAME=VALUE` flags named in `value_flags` (each at most once), as
    `(args, schema_only, values)`. `None`, after printing the usage line of `doc`, when the command
    line is off; fails the setup when the directory is not one."""
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = [a for a in argv[1:] if a.startswith("--")]
    values, bad = {}, False
    for flag in flags:
        name, eq, value = flag.partition("=")
        if flag == "--schema-only":
            continue
        if eq and name in value_flags and name not in values:
            values[name] = value
        else:
            bad = True
    if len(args) != nargs or bad:
        print(doc.strip().splitlines()[2], file=sys.stderr)
        return None
    if not os.path.isdir(args[-1]):
        fail_setup("not a directory: " + args[-1])
    return args, "--schema-only" in flags, values


def load_spec(path, load=json.load, errors=(OSError, ValueError), what="spec"):
    """The document at `path` read by `load` (JSON by default); fails the setup when it cannot be."""
    try:
        with open(path, "rb") as f:
            return load(f)
    except errors as e:
        fail_setup("cannot load %s %s: %s" % (what, path, e))


def loaded(started, *paths):
    """Says how long loading and self-checking the specs took."""
    print("spec loaded and self-checked in %.2fs: %s" % (time.monotonic() - started, ", ".join(paths)))


def request_ref(spec, path):
    """The `$ref` of the JSON request body of `POST path` (empty when there is none)."""
    body = spec.get("paths", {}).get(path, {}).get("post", {}).get("requestBody", {})
    return body.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")


def validators(uri, spec, pointers):
    """A Draft 2020-12 validator per entry of `pointers` (key: JSON pointer into `spec`, such as
    `#/components/schemas/Name`), all resolving `$ref`s against the whole of `spec` under `uri`."""
    registry = Registry().with_resource(uri, DRAFT202012.create_resource(spec))
    return {key: jsonschema.Draft202012Validator({"$ref": uri + pointer}, registry=registry)
            for key, pointer in pointers.items()}


def short(text, limit=220):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tagged_wrong_branch(tags):
    """A `wrong_branch` for unions told apart by a tag member: a oneOf/anyOf branch failed because
    it is plainly the wrong alternative when the value has another JSON type, or one of `tags`
    (e.g. `type`, `role`) names another variant."""
    def wrong_branch(error):
        if error.validator == "type" and not error.relative_path:
            return True
        return (error.validator in ("enum", "const") and len(error.relative_path) == 1
                and error.relative_path[0] in tags)
    return wrong_branch


def descend(wrong_branch):
    """For a failed anyOf/oneOf, descends into the one alternative the body evidently meant (all
    others failing as `wrong_branch` says) to give a readable message."""
    def deepest(error):
        while error.context:
            branches = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            plausible = [errs for errs in branches.values() if not any(wrong_branch(e) for e in errs)]
            if len(plausible) != 1:
                break
            error = min(plausible[0], key=relevance)
        return error
    return deepest


def most_relevant(error):
    """Descends into the most relevant error of each failed alternative."""
    while error.context:
        error = min(error.context, key=relevance)
    return error


def schema_errors(validator, body, deepest=None):
    """The schema's errors as (json_path, message), most relevant first; with `deepest`, the message
    of an error in a union names the inner error it leads to."""
    found = []
    for error in sorted(validator.iter_errors(body), key=relevance):
        inner = deepest(error) if deepest else error
        message = short(inner.message)
        if inner is not error:
            message = short(error.message, 100) + " <- " + inner.json_path + ": " + message
        found.append((error.json_path, message))
    return found


def self_check(cases, errors_of, what_failed="self-check"):
    """Makes sure validation is real: each case is `(*arguments, should_be_valid, what)` and
    `errors_of(*arguments)` must be empty exactly for the valid ones; else fails the setup."""
    problems = []
    for *arguments, should_be_valid, what in cases:
        errors = errors_of(*arguments)
        if should_be_valid and errors:
            problems.append("%s should pass but failed: %s %s" % (what, errors[0][0], errors[0][1]))
        if not should_be_valid and not errors:
            problems.append("%s should fail but passed" % what)
    if problems:
        fail_setup(what_failed + " failed, validation is not working:\n  " + "\n  ".join(problems))


class Invalid(Exception):
    """A file that cannot be checked at all: `INVALID name: <message>`."""


def read_json(path, lines=False):
    """The JSON value at `path` (with `lines`, a list of one value a non-blank line); `Invalid` when
    the file is not JSON."""
    try:
        with open(path, "rb") as f:
            if lines:
                return [json.loads(line) for line in f.read().splitlines() if line.strip()]
            return json.load(f)
    except (OSError, ValueError) as e:
        raise Invalid("not JSON: " + short(e))


def check_dir(body_dir, check, suffixes=(".json",)):
    """Checks every file of `body_dir` ending in one of `suffixes`, in name order, with
    `check(name, path) -> (what, errors)` (`what` names the schema or shape; it may raise
    `Invalid`); prints the results and returns the exit status."""
    names = sorted(n for n in os.listdir(body_dir) if n.endswith(suffixes))
    passed = failed = 0
    for name in names:
        try:
            what, errors = check(name, os.path.join(body_dir, name))
        except Invalid as e:
            print("INVALID %s: %s" % (name, e))
            failed += 1
            continue
        if not errors:
            print("OK %s" % name)
            passed += 1
            continue
        failed += 1
        print("INVALID %s (%s, %d error%s)" % (name, what, len(errors), "" if len(errors) == 1 else "s"))
        for path, message in errors[:MAX_ERRORS_SHOWN]:
            print("    %s: %s" % (path, message))
    if not names:
        print("no request bodies (*.json) in " + body_dir)
    print("spec: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not names else 0


def endpoint_of(name):
    """`e` of a file named `<anything>.e.json`, else `None`."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 3 else None
