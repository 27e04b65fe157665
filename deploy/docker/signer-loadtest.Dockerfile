# syntax=docker/dockerfile:1
# cacert/signer-loadtest: the stand-alone signer load test (benchmarks/signer_loadtest.py) with the signer it
# starts, for the opt-in Job deploy/k8s/components/signer-loadtest. A separate image on purpose: the load
# test is not code the CA's own signer pods should carry. It holds shared/, services/signer and
# benchmarks/ only (no other service, no devstack).
# Build from the repository root:
#   docker build -f deploy/docker/signer-loadtest.Dockerfile -t cacert/signer-loadtest .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---- build: compilers allowed here, nothing of this stage but /opt/cacert reaches the final image
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/cacert
WORKDIR /src
COPY pyproject.toml requirements-runtime.lock ./
COPY shared ./shared
COPY services ./services
COPY benchmarks ./benchmarks
# The same locked install as the signer image, then the load test beside the signer package (benchmarks/
# is not a distribution package), precompiled: the root filesystem is read-only at run time.
RUN /opt/cacert/bin/pip install --require-hashes -r requirements-runtime.lock \
 && /opt/cacert/bin/pip install --no-deps . \
 && SITE="$(/opt/cacert/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && rm -rf "$SITE/services/registration" "$SITE/services/domain_verify" "$SITE/services/notifier" \
      "$SITE/services/acme" "$SITE/devstack" \
 && mkdir "$SITE/benchmarks" && cp benchmarks/__init__.py benchmarks/signer_loadtest.py "$SITE/benchmarks/" \
 && /opt/cacert/bin/python -m pip uninstall -y -q pip \
 && /opt/cacert/bin/python -m compileall -q "$SITE" \
 && /opt/cacert/bin/python -c "import benchmarks.signer_loadtest, services.signer.__main__"

# ---- run: slim Python, no build tools, no pip in the venv, unprivileged numeric user
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 cacert \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cacert
COPY --from=build /opt/cacert /opt/cacert
ENV PATH=/opt/cacert/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["python", "-m", "benchmarks.signer_loadtest"]
