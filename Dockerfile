# syntax=docker/dockerfile:1
#
# storyboard-service image: `storyboard serve` (API + SQS worker) on port 8080.
#
#   docker build -t storyboard-service:0.1.0 .
#   docker run --rm -p 8080:8080 storyboard-service:0.1.0            # embedded backend in /data
#   docker run --rm storyboard-service:0.1.0 worker                   # one role: api | worker
#
# Two stages: the builder turns the project and every dependency into wheels; the runtime
# stage installs only those wheels (no compiler, no build tools, no pip cache) and runs as an
# unprivileged user. Every dependency ships binary wheels for CPython 3.12 on amd64 and
# arm64, so neither stage needs apt. The base image is pinned by tag; for byte-for-byte
# rebuilds pin it by digest as well (python:3.12-slim-bookworm@sha256:...).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Only what the wheel needs (see .dockerignore): metadata, README (the long description)
# and the package.
COPY pyproject.toml README.md ./
COPY service ./service

# --only-binary: dependencies come as published wheels and nothing is compiled here, so a
# release without a wheel for this platform fails the build instead of needing a compiler.
# The otel extra is in: the image can export traces once OTEL_* variables are set.
RUN pip wheel --no-cache-dir --only-binary=:all: --wheel-dir /wheels ".[otel]"


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="storyboard-service" \
      org.opencontainers.image.description="Turns uploaded novels into comic storyboards: aiohttp API and SQS worker" \
      org.opencontainers.image.licenses="MIT"

# The service listens on loopback by default; in a container it must take traffic from
# outside, which the port mapping or the Service then limits.
ENV STORYBOARD_HOST=0.0.0.0 \
    STORYBOARD_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed uid/gid so Kubernetes' runAsUser/fsGroup (10001) and volume ownership line up.
RUN groupadd --system --gid 10001 storyboard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin storyboard \
    && mkdir -p /data /app \
    && chown 10001:10001 /data

# The wheels are bind-mounted from the builder (BuildKit, the default builder since Docker
# 23), so they never land in a layer of this image; --no-index installs exactly those.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app
USER 10001:10001

EXPOSE 8080
VOLUME ["/data"]

# SIGTERM starts the drain (readiness 503, receiving stops, in-flight jobs get
# STORYBOARD_SHUTDOWN_GRACE_S, the rest are released); a second signal skips the wait.
STOPSIGNAL SIGTERM

# For plain `docker run`; Kubernetes ignores it and uses the probes in deploy/k8s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STORYBOARD_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["storyboard"]
CMD ["serve"]
