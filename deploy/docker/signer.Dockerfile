# syntax=docker/dockerfile:1
# cacert/signer: the signer; CMD `issuing` (issuing mode, port 8084) or `status` (CRL/OCSP, port 8083).
# Build from the repository root (the context must hold pyproject.toml, requirements-runtime.lock, shared/,
# services/):
#   docker build -f deploy/docker/signer.Dockerfile -t cacert/signer .
# Dependencies are installed from requirements-runtime.lock with --require-hashes: the same versions the
# tests and CI run with, and no file whose sha256 the lock does not list.
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
# Install the project and its runtime dependencies at the locked versions, then keep only this
# service's code (the other services' packages are dead weight and attack surface here), drop pip and
# precompile bytecode, since the root filesystem is read-only at run time.
RUN /opt/cacert/bin/pip install --require-hashes -r requirements-runtime.lock \
 && /opt/cacert/bin/pip install --no-deps . \
 && SITE="$(/opt/cacert/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && rm -rf "$SITE/services/registration" "$SITE/services/domain_verify" "$SITE/services/notifier" \
      "$SITE/services/acme" "$SITE/devstack" \
 && /opt/cacert/bin/python -m pip uninstall -y -q pip \
 && /opt/cacert/bin/python -m compileall -q "$SITE" \
 && /opt/cacert/bin/python -c "import services.signer.__main__"

# ---- run: slim Python, no build tools, no pip in the venv, unprivileged numeric user
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 cacert \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cacert
COPY --from=build /opt/cacert /opt/cacert
ENV PATH=/opt/cacert/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CACERT_HTTP_HOST=0.0.0.0 \
    CACERT_HTTP_PORT=8084
USER 10001:10001
EXPOSE 8084
ENTRYPOINT ["python", "-m", "services.signer"]
CMD ["issuing"]
