# syntax=docker/dockerfile:1
#
# Tollgate container image. Two runtime targets share one build stage:
#
#   docker build -t tollgate .                                # Debian slim + curl, real HEALTHCHECK (default)
#   docker build --target distroless -t tollgate:distroless . # distroless, no shell, no HEALTHCHECK
#
# Why two: the binary needs only glibc (SQLite is bundled, TLS is rustls with built-in roots, no
# OpenSSL), so distroless/cc is the smallest and safest base. But distroless has no shell, curl or
# wget, and Tollgate has no probe subcommand, so there a HEALTHCHECK could only run something like
# `tollgate check-config`, which validates the file and says nothing about the running server: a
# health check that can never fail is worse than none. The default image therefore adds curl to
# Debian slim and probes GET /healthz for real (for `docker run` and Compose). Kubernetes ignores
# HEALTHCHECK and uses the chart's httpGet probes, so the chart can use either image; the distroless
# one has less in it to patch.
#
# Both run as uid/gid 65532 (distroless's `nonroot`; a `tollgate` user with the same ids in the
# Debian image) and keep their data in /var/lib/tollgate. The baked-in config is
# examples/quickstart.toml; the ENV lines below (TOLLGATE__SECTION__KEY overrides, docs/config.md)
# make it listen on all interfaces and put the SQLite files and the usage spool (usage.spool_dir)
# in the data directory. Mount your own config over /etc/tollgate/tollgate.toml, and a volume on
# /var/lib/tollgate to keep keys, usage events and not yet shipped spool segments.
#
# Stopping: Tollgate drains in-flight requests for server.shutdown_grace_secs (30 s) after SIGTERM,
# longer than Docker's default 10 s stop timeout: use `docker run --stop-timeout 40` (or lower
# TOLLGATE__SERVER__SHUTDOWN_GRACE_SECS).
#
# The build caches the cargo registry and target/ in BuildKit cache mounts (BuildKit is the default
# builder since Docker 23), so a rebuild after a source change recompiles only the workspace crates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tollgate --bin tollgate \
 && install -D -m 0755 target/release/tollgate /out/tollgate \
 && install -D -m 0644 examples/quickstart.toml /out/tollgate.toml \
 && install -d -m 0750 /out/data

# Kubernetes-oriented runtime: glibc + libgcc only, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS distroless
COPY --from=builder /out/tollgate /usr/local/bin/tollgate
COPY --from=builder /out/tollgate.toml /etc/tollgate/tollgate.toml
COPY --from=builder --chown=65532:65532 /out/data /var/lib/tollgate
ENV TOLLGATE__SERVER__LISTEN=0.0.0.0:4000 \
    TOLLGATE__STORE__PATH=/var/lib/tollgate/tollgate.db \
    TOLLGATE__USAGE__PATH=/var/lib/tollgate/usage.db \
    TOLLGATE__USAGE__SPOOL_DIR=/var/lib/tollgate/spool
USER 65532:65532
WORKDIR /var/lib/tollgate
EXPOSE 4000
# No probe client exists in this image (see the top of this file): Kubernetes probes /healthz and
# /readyz itself, so no HEALTHCHECK is declared rather than a false one.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.toml", "--log-format", "json"]

# Default runtime: Debian slim with curl, so HEALTHCHECK probes the running server.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 tollgate \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/tollgate --no-create-home \
      --shell /usr/sbin/nologin tollgate
COPY --from=builder /out/tollgate /usr/local/bin/tollgate
COPY --from=builder /out/tollgate.toml /etc/tollgate/tollgate.toml
COPY --from=builder --chown=65532:65532 /out/data /var/lib/tollgate
ENV TOLLGATE__SERVER__LISTEN=0.0.0.0:4000 \
    TOLLGATE__STORE__PATH=/var/lib/tollgate/tollgate.db \
    TOLLGATE__USAGE__PATH=/var/lib/tollgate/usage.db \
    TOLLGATE__USAGE__SPOOL_DIR=/var/lib/tollgate/spool
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /var/lib/tollgate
EXPOSE 4000
# Liveness only (/healthz: the process answers). It assumes the default port 4000; change it here
# too if you override TOLLGATE__SERVER__LISTEN.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:4000/healthz"]
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.toml", "--log-format", "json"]
