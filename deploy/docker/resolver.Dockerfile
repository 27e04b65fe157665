# syntax=docker/dockerfile:1
# cacert/resolver: the DNSSEC-validating resolver (Unbound, from Debian) that runs beside each
# domain_verify pod, the primary and every remote perspective. It holds no project code: its whole
# configuration (unbound.conf and the IANA root trust anchor) comes from the ConfigMap
# `validating-resolver` (deploy/k8s/base/validating-resolver/), mounted at /etc/unbound/cacert.
#   docker build -f deploy/docker/resolver.Dockerfile -t cacert/resolver .
ARG DEBIAN_IMAGE=debian:12.11-slim

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends unbound \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cacert \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cacert
USER 10001:10001
# listens on 127.0.0.1:5353 only (DNS) and 127.0.0.1:8953 (unbound-control, for the probes)
ENTRYPOINT ["unbound", "-d", "-p", "-c", "/etc/unbound/cacert/unbound.conf"]
