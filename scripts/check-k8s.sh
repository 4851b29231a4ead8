#!/usr/bin/env bash
# Renders the kustomize base (or the directory given) with kubectl and runs the manifest checks
# (test/unit/k8s-manifests.spec.ts). `--install` first installs Debian's kubectl (kubernetes-client)
# when none is on PATH. Without kubectl the checks are skipped, loudly.
#   bash scripts/check-k8s.sh [--install]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--install" ] && ! command -v "${KUBECTL:-kubectl}" >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null
fi
KUBECTL=${KUBECTL:-kubectl}
if command -v "$KUBECTL" >/dev/null 2>&1; then
  echo "kubectl: $("$KUBECTL" version --client 2>/dev/null | head -1)"
  "$KUBECTL" kustomize k8s/ | grep -E '^kind:|^  name:' | paste - - | awk '{print "  " $2 "/" $4}'
else
  echo "!! kubectl not found: the render checks will be skipped (use --install, or set KUBECTL)" >&2
fi
exec npx jest --selectProjects unit -- test/unit/k8s-manifests
