#!/usr/bin/env bash
# Installs the pinned manifest tooling into the stack cache (outside the repo) and prints its path.
#   deploy/k8s/tools.sh kustomize      -> prints the path of the pinned kustomize binary
#   deploy/k8s/tools.sh strimzi-crds   -> prints a directory holding the pinned Strimzi CRDs (YAML)
#   deploy/k8s/tools.sh keda-crds      -> prints a directory holding the pinned KEDA CRDs (YAML)
#   deploy/k8s/tools.sh prometheus-operator-crds -> a directory holding the pinned PodMonitor,
#                                     ServiceMonitor and PrometheusRule CRDs (YAML)
#   deploy/k8s/tools.sh promtool       -> prints the path of the pinned promtool binary
#   deploy/k8s/tools.sh cert-manager-crds -> a directory holding the pinned cert-manager ClusterIssuer, Issuer
#                                     and Certificate CRDs (YAML), for deploy/k8s/examples/cert-manager
# Idempotent: what is already in the cache is reused; nothing is downloaded twice.
#
# kustomize v5.8.2 (sigs.k8s.io/kustomize/api v0.21.2) is the newest release whose go.mod asks for
# go 1.26; v5.8.3 needs go 1.27 and would make `go install` fetch another toolchain.
set -euo pipefail

KUSTOMIZE_VERSION="v5.8.2"
# Strimzi publishes its API model (io.strimzi:api) and the generator that turns it into the CRDs it
# releases (io.strimzi:crd-generator) on Maven Central; running that generator reproduces the release's
# CustomResourceDefinitions without copying them from anywhere. 1.x serves kafka.strimzi.io/v1 only.
STRIMZI_VERSION="1.2.0"
# KEDA's CRDs ship in its Go module (config/crd/bases), which the Go module proxy serves.
KEDA_VERSION="v2.16.0"
# The Prometheus operator's Go module carries the CRDs it installs (example/prometheus-operator-crd/);
# `go mod download` fetches it from the Go module proxy and checks it against the checksum database.
PROMETHEUS_OPERATOR_VERSION="v0.85.0"
# promtool (rule checks and `promtool test rules`) is built from Prometheus' own Go module; the module's
# v0.316.0 is Prometheus 3.16 (go.mod asks for go 1.26.7). Built with Prometheus' `remove_all_sd` tag: the
# cloud service-discovery SDKs, which rule tests never use, more than double the build (measured on 2 shared,
# busy cores: ~6 min without them, ~14 min with them).
PROMETHEUS_MODULE_VERSION="v0.316.0"
# cert-manager's Go module carries the chart templates its release's cert-manager.crds.yaml is made of
# (deploy/charts/cert-manager/templates/crd-*.yaml: the CRDs inside a Helm `if`, with Helm-made labels);
# their template lines dropped, they are the CRDs a release installs (their schemas equal deploy/crds/ of
# the same module). Pinned twice: the module's go.sum hash (which `go mod download` also checks against the
# checksum database) and the sha256 of each CRD file taken from it.
CERT_MANAGER_VERSION="v1.19.1"
CERT_MANAGER_MODULE_SUM="h1:Txh8L/nLWTDcb7ZnXuXbTe15BxQnLbLirXmbNk0fGgY="
CERT_MANAGER_CRDS_SHA256="\
8b569a736333efb317042551194aed273f462e960546f75fc759aee3e14f7565  cert-manager.io_certificates.yaml
a9bf4269d6b3217a25f2627e44c39bd0e9b9b5f7b4d886a5fd4d60aaa8c33422  cert-manager.io_clusterissuers.yaml
c5916bd12ed49dfd159e208846cd6e0cbd9760895628edaa3966cde023c4992d  cert-manager.io_issuers.yaml
"
CACHE="${CACERT_STACK_CACHE:-$HOME/.cache/cacert-stack}"
BIN="$CACHE/bin"

kustomize() {
  local exe="$BIN/kustomize-$KUSTOMIZE_VERSION"
  if [ -x "$exe" ] && "$exe" version 2>/dev/null | grep -q "$KUSTOMIZE_VERSION"; then
    echo "$exe"
    return
  fi
  command -v go >/dev/null 2>&1 || { echo "error: 'go' (1.26+) is required to install kustomize" >&2; exit 1; }
  mkdir -p "$BIN"
  local tmp
  tmp="$(mktemp -d "$BIN/.install.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  echo "installing kustomize $KUSTOMIZE_VERSION from the Go module proxy into $BIN ..." >&2
  GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  mv "$tmp/kustomize" "$exe"   # atomic within the cache: concurrent callers see a whole binary or none
  echo "$exe"
}

# A Java runtime of at least 21 (Strimzi 1.x is compiled for 21): JAVA_HOME, PATH, then /usr/lib/jvm.
java21() {
  local candidate major
  for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    major="$("$candidate" -XshowSettings:properties -version 2>&1 \
      | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
    if [ -n "$major" ] && [ "$major" -ge 21 ]; then
      echo "$candidate"
      return
    fi
  done
  echo "error: Strimzi's CRD generator needs Java 21 or newer (set JAVA_HOME)" >&2
  exit 1
}

strimzi_crds() {
  local out="$CACHE/strimzi-crds-$STRIMZI_VERSION"
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return
  fi
  command -v mvn >/dev/null 2>&1 || { echo "error: 'mvn' is required to fetch the Strimzi API" >&2; exit 1; }
  local java work
  java="$(java21)"
  mkdir -p "$CACHE"
  work="$(mktemp -d "$CACHE/.strimzi.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cacert</groupId><artifactId>strimzi-crds</artifactId><version>0</version>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$STRIMZI_VERSION</version></dependency>
  </dependencies>
</project>
POM
  echo "fetching io.strimzi:api:$STRIMZI_VERSION and its CRD generator from Maven Central ..." >&2
  (cd "$work" && mvn -q -B -Dstyle.color=never dependency:build-classpath -Dmdep.outputFile=classpath.txt >&2)
  mkdir -p "$work/crds"
  local model=io.strimzi.api.kafka.model
  "$java" -cp "$(cat "$work/classpath.txt")" io.strimzi.crdgenerator.CrdGenerator \
    --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
    "$model.kafka.Kafka=$work/crds/kafka.yaml" \
    "$model.nodepool.KafkaNodePool=$work/crds/kafkanodepool.yaml" \
    "$model.topic.KafkaTopic=$work/crds/kafkatopic.yaml" \
    "$model.user.KafkaUser=$work/crds/kafkauser.yaml" >&2
  echo "$STRIMZI_VERSION" > "$work/crds/.complete"
  rm -rf "$out"
  mv "$work/crds" "$out"
  echo "$out"
}

keda_crds() {
  local out="$CACHE/keda-crds-$KEDA_VERSION"
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return
  fi
  command -v go >/dev/null 2>&1 || { echo "error: 'go' is required to fetch the KEDA CRDs" >&2; exit 1; }
  echo "fetching github.com/kedacore/keda/v2@$KEDA_VERSION from the Go module proxy ..." >&2
  local dir
  mkdir -p "$CACHE"
  dir="$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir/config/crd/bases" ] || { echo "error: no CRDs in the KEDA module ($dir)" >&2; exit 1; }
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" \
    "$out.tmp/"
  echo "$KEDA_VERSION" > "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "$out"
}

prometheus_operator_crds() {
  local out="$CACHE/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return
  fi
  command -v go >/dev/null 2>&1 || { echo "error: 'go' is required to fetch the Prometheus operator CRDs" >&2; exit 1; }
  local module dir work
  module="github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
  echo "fetching $module from the Go module proxy ..." >&2
  dir="$(cd /tmp && GOTOOLCHAIN=local GOFLAGS=-modcacherw go mod download -json "$module" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir/example/prometheus-operator-crd" ] || { echo "error: no CRDs in $dir" >&2; exit 1; }
  mkdir -p "$CACHE"
  work="$(mktemp -d "$CACHE/.prometheus-operator.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  for kind in podmonitors servicemonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$work/"
  done
  echo "$PROMETHEUS_OPERATOR_VERSION" > "$work/.complete"
  rm -rf "$out"
  mv "$work" "$out"
  trap - RETURN
  echo "$out"
}

promtool() {
  local exe="$BIN/promtool-$PROMETHEUS_MODULE_VERSION"
  if [ -x "$exe" ]; then
    echo "$exe"
    return
  fi
  command -v go >/dev/null 2>&1 || { echo "error: 'go' (1.26.7+) is required to install promtool" >&2; exit 1; }
  mkdir -p "$BIN"
  local tmp
  tmp="$(mktemp -d "$BIN/.install.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  echo "building promtool ($PROMETHEUS_MODULE_VERSION) from the Go module proxy into $BIN (a few minutes, once) ..." >&2
  GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2
  mv "$tmp/promtool" "$exe"
  echo "$exe"
}

cert_manager_crds() {
  local out="$CACHE/cert-manager-crds-$CERT_MANAGER_VERSION"
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return
  fi
  command -v go >/dev/null 2>&1 || { echo "error: 'go' is required to fetch the cert-manager CRDs" >&2; exit 1; }
  local module json dir sum work name
  module="github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION"
  echo "fetching $module from the Go module proxy ..." >&2
  json="$(cd /tmp && GOTOOLCHAIN=local GOFLAGS=-modcacherw go mod download -json "$module")"
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  sum="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')"
  if [ "$sum" != "$CERT_MANAGER_MODULE_SUM" ]; then
    echo "error: $module has hash '$sum', pinned $CERT_MANAGER_MODULE_SUM" >&2
    exit 1
  fi
  mkdir -p "$CACHE"
  work="$(mktemp -d "$CACHE/.cert-manager.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  for name in clusterissuers issuers certificates; do
    grep -v '{{' "$dir/deploy/charts/cert-manager/templates/crd-cert-manager.io_$name.yaml" \
      > "$work/cert-manager.io_$name.yaml"
  done
  (cd "$work" && printf '%s' "$CERT_MANAGER_CRDS_SHA256" | sha256sum --check --strict --quiet -) >&2 || {
    echo "error: the CRDs taken from $module are not the pinned ones" >&2
    return 1  # (not exit: the RETURN trap removes the work directory)
  }
  echo "$CERT_MANAGER_VERSION" > "$work/.complete"
  rm -rf "$out"
  mv "$work" "$out"
  trap - RETURN
  echo "$out"
}

case "${1:-}" in
  kustomize) kustomize ;;
  strimzi-crds) strimzi_crds ;;
  keda-crds) keda_crds ;;
  prometheus-operator-crds) prometheus_operator_crds ;;
  promtool) promtool ;;
  cert-manager-crds) cert_manager_crds ;;
  *) echo "usage: $0 kustomize|strimzi-crds|keda-crds|prometheus-operator-crds|promtool|cert-manager-crds" >&2
     exit 2 ;;
esac
