#!/usr/bin/env bash
# Installs the pinned manifest tooling into the stack cache (outside the repo) and prints its path.
#   deploy/k8s/tools.sh kustomize      -> prints the path of the pinned kustomize binary
#   deploy/k8s/tools.sh strimzi-crds   -> prints a directory holding the pinned Strimzi CRDs (YAML)
#   deploy/k8s/tools.sh keda-crds      -> prints a directory holding the pinned KEDA CRDs (YAML)
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

case "${1:-}" in
  kustomize) kustomize ;;
  strimzi-crds) strimzi_crds ;;
  keda-crds) keda_crds ;;
  *) echo "usage: $0 kustomize|strimzi-crds|keda-crds" >&2; exit 2 ;;
esac
