#!/usr/bin/env bash
# `npm test`: the whole suite on real PostgreSQL and Redis (and libvirt + qemu-img where they can run).
# Installs what is missing, starts the services it needs, and stops only what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

services=(postgres redis)
if [ "$(id -u)" = 0 ] && [ "${SKIP_LIBVIRT:-0}" != 1 ]; then services+=(libvirt); fi
bash scripts/services.sh install "${services[@]}"

# The S3 backup-store tests run against a real single-node Ceph (radosgw), which their suite starts and
# stops itself under leases (test/support/ceph.ts): only its packages are needed here.
if [ "$(id -u)" = 0 ] && [ "${CEPH_TESTS:-1}" != 0 ]; then
  bash scripts/services.sh install ceph
elif ! command -v radosgw >/dev/null 2>&1; then
  echo "!! Ceph is not installed (as root: bash scripts/services.sh install ceph): the S3 backup-store tests will be skipped" >&2
  export CEPH_TESTS=0
fi

# k8s/ render check: Debian's kubectl (package kubernetes-client) when none is installed.
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null; } \
      || echo "!! kubectl could not be installed: the k8s render check will be skipped" >&2
  else
    echo "!! kubectl is missing (apt-get install -y kubernetes-client): the k8s render check will be skipped" >&2
  fi
fi

# /api/docs browser test: Debian's Chromium via playwright-core (no browser download).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "!! chromium could not be installed: the /api/docs browser test will be skipped" >&2
  else
    echo "!! /usr/bin/chromium is missing (apt-get install -y chromium): the /api/docs browser test will be skipped" >&2
  fi
fi

set +e
started=$(bash scripts/services.sh start "${services[@]}")
rc=$?
set -e
if [ $rc -eq 3 ]; then
  echo "!! libvirt could not start here: the real-driver tests will be skipped (see above)." >&2
  export LIBVIRT_TESTS=0
elif [ $rc -ne 0 ]; then
  exit $rc
else
  case " ${services[*]} " in *" libvirt "*) export LIBVIRT_TESTS=1 ;; *) export LIBVIRT_TESTS=0 ;; esac
fi
to_stop=$(printf '%s\n' "$started" | sed -n 's/^started://p' | tr '\n' ' ')
cleanup() {
  # The S3 suites lease Ceph (test/support/ceph.ts); a lease of a test process that died is dropped here.
  bash scripts/services.sh release ceph >&2 || true
  if [ -n "$to_stop" ]; then bash scripts/services.sh stop $to_stop >&2 || true; fi
}
trap cleanup EXIT

eval "$(bash scripts/services.sh env)"
export DATABASE_ADMIN_URL REDIS_URL LIBVIRT_URI

npm run --silent build
# ts-jest only transpiles (isolated modules): the types of src/, test/ and prisma/ are checked here.
npm run --silent typecheck
npx eslint . --max-warnings 0
npx prettier --check "src/**/*.ts" "test/**/*.ts" >/dev/null || { npx prettier --list-different "src/**/*.ts" "test/**/*.ts"; exit 1; }
npx jest --ci --maxWorkers=2 "$@"
