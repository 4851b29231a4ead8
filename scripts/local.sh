#!/usr/bin/env bash
# `npm run local`: everything on this machine, from a fresh Debian as root.
#  1. installs what is missing (Debian packages, npm packages), builds the production bundle;
#  2. starts PostgreSQL, Redis and (when it can) libvirtd, their data outside the checkout
#     (scripts/paths.sh: reachable by the service users even when the checkout is in a private home);
#  3. makes the default backup directory, migrates, seeds a demo account + token, an admin token, a node and a demo server — a real tiny
#     Linux guest under libvirt when libvirt runs here (its kernel, disk and snapshots in this
#     checkout's image folder, which QEMU can read), otherwise on the fake driver (said loudly);
#  4. runs the API and the worker from dist/, backs the demo server up into the backup directory and
#     restores it (scripts/local-backup-demo.sh), puts a backup policy on it with a short test window and
#     shows its first automatic run (scripts/local-policy-demo.mjs), and runs until Ctrl-C, then stops
#     everything it started.
# Running it again reuses the data (database, tokens, demo disk). Writes .local/demo.env, and
# .local/local.env, from which the operator CLI (`npm run cli`) takes the database in another terminal,
# and once .local/backup-master-key.env (BACKUP_MASTER_KEY for the worker's backups).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=paths.sh
. scripts/paths.sh
ROOT="$(pwd)"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL"
PORT="${PORT:-3000}"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

with_libvirt=0
if [ "$(id -u)" = 0 ] && [ "${SKIP_LIBVIRT:-0}" != 1 ]; then with_libvirt=1; fi

say "system packages"
if [ $with_libvirt = 1 ]; then bash scripts/services.sh install postgres redis libvirt
else bash scripts/services.sh install postgres redis; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"; npm ci --no-audit --no-fund
fi
say "build"; npm run --silent build >/dev/null

say "services"
svcs=(postgres redis); [ $with_libvirt = 1 ] && svcs+=(libvirt)
set +e; started=$(bash scripts/services.sh start "${svcs[@]}"); rc=$?; set -e
if [ $rc -eq 3 ]; then with_libvirt=0; elif [ $rc -ne 0 ]; then exit $rc; fi
to_stop=$(printf '%s\n' "$started" | sed -n 's/^started://p' | tr '\n' ' ')
pids=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${DEMO_DOMAIN_STARTED:-}" ]; then virsh -q -c qemu:///system destroy "$DEMO_DOMAIN_STARTED" >/dev/null 2>&1 || true; fi
  if [ -n "$to_stop" ]; then bash scripts/services.sh stop $to_stop || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(bash scripts/services.sh env)"
DB_NAME=vps_local
if ! psql "$DATABASE_ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1; then
  psql "$DATABASE_ADMIN_URL" -qc "CREATE DATABASE $DB_NAME"
fi
export DATABASE_URL="${DATABASE_ADMIN_URL%/*}/$DB_NAME" REDIS_URL QUEUE_PREFIX=vps-local
# The default backup store: a directory in this checkout's state dir (reachable by the service users;
# in production a separate disk, an NFS mount or S3: docs/backups.md). An operator's BACKUP_DIR wins.
export BACKUP_DIR="${BACKUP_DIR:-$LOCAL_STATE_DIR/backups}"
mkdir -p "$BACKUP_DIR"
say "migrate"; node prisma/migrate.mjs >/dev/null
# For the operator CLI in another terminal, with nothing set there.
node dist/cli/main.js local-env save >/dev/null
# The key that wraps every account's backup key: made once, kept beside this checkout's local data
# (mode 0600). Without it the backups it protected cannot be read, so it is never regenerated.
BACKUP_KEY_FILE="$LOCAL/backup-master-key.env"
if [ ! -s "$BACKUP_KEY_FILE" ]; then
  (umask 077 && node -e 'console.log(`BACKUP_MASTER_KEY=${require("node:crypto").randomBytes(32).toString("base64")}`)' >"$BACKUP_KEY_FILE")
fi
export BACKUP_MASTER_KEY="${BACKUP_MASTER_KEY:-$(sed -n 's/^BACKUP_MASTER_KEY=//p' "$BACKUP_KEY_FILE")}"
# The key that seals webhook signing secrets (API and sender), kept the same way.
WEBHOOK_KEY_FILE="$LOCAL/webhook-secret-key.env"
if [ ! -s "$WEBHOOK_KEY_FILE" ]; then
  (umask 077 && node -e 'console.log(`WEBHOOK_SECRET_KEY=${require("node:crypto").randomBytes(32).toString("base64")}`)' >"$WEBHOOK_KEY_FILE")
fi
export WEBHOOK_SECRET_KEY="${WEBHOOK_SECRET_KEY:-$(sed -n 's/^WEBHOOK_SECRET_KEY=//p' "$WEBHOOK_KEY_FILE")}"

cli() { node dist/cli/main.js "$@"; }
say "seed"
cli account create demo --if-missing >/dev/null
cli account create operator --if-missing >/dev/null
if [ $with_libvirt = 1 ]; then
  # QEMU (user libvirt-qemu) reads the kernel and the disk and writes live snapshots: all of them in
  # this checkout's image folder, never under the checkout.
  ensure_images_dir
  SNAPDIR="$IMAGES_DIR/snapshots"
  DEMO_DISK_DIR="$IMAGES_DIR/disks"
  mkdir -p "$SNAPDIR" "$DEMO_DISK_DIR"
  NODE=local-libvirt
  cli node create "$NODE" --driver libvirt --uri qemu:///system --snapshot-dir "$SNAPDIR" --image-root "$DEMO_DISK_DIR" --if-missing >/dev/null
  bash scripts/guest/build-tiny-guest.sh "$GUEST_DIR" >&2
  # One demo domain per checkout: each checkout's domain boots from its own disk.
  DOMAIN="vps-demo-$CHECKOUT_ID"
  DISK="$DEMO_DISK_DIR/web-server-01.qcow2"
  if [ ! -f "$DISK" ]; then
    raw="$DEMO_DISK_DIR/.web-server-01.raw"
    truncate -s 256M "$raw" && mkfs.ext4 -q -F -L demo "$raw"
    qemu-img convert -f raw -O qcow2 "$raw" "$DISK" && rm -f "$raw"
  fi
  if ! virsh -q -c qemu:///system dominfo "$DOMAIN" >/dev/null 2>&1; then
    bash scripts/guest/define-domain.sh "$DOMAIN" "$DISK" "$GUEST_DIR" --with-agent >&2
  fi
  if virsh -q -c qemu:///system domstate "$DOMAIN" | grep -q 'shut off'; then
    virsh -q -c qemu:///system start "$DOMAIN" >/dev/null && DEMO_DOMAIN_STARTED="$DOMAIN"
  fi
  SERVER_ID=$(cli server import --account demo --node "$NODE" --domain "$DOMAIN" --name web-server-01 --if-missing)
else
  printf '\n\033[1;33m!! libvirt cannot run here: the demo uses the FAKE hypervisor driver (in-memory disks).\033[0m\n\n' >&2
  NODE=local-fake
  SNAPDIR="$LOCAL/snapshots" # a name only: the fake driver keeps snapshots in memory
  cli node create "$NODE" --driver fake --snapshot-dir "$SNAPDIR" --if-missing >/dev/null
  SERVER_ID=$(cli server create --account demo --node "$NODE" --name web-server-01 --domain demo-web-server-01 --if-missing)
fi

# Reuse the tokens of an earlier run while they still work; otherwise mint new ones.
API_TOKEN="" ADMIN_TOKEN=""
if [ -f "$LOCAL/demo.env" ]; then
  API_TOKEN=$(sed -n 's/^API_TOKEN=//p' "$LOCAL/demo.env"); ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' "$LOCAL/demo.env")
fi
token_ok() { [ -n "$1" ] && node dist/cli/main.js token check "$1" >/dev/null 2>&1; }
token_ok "$API_TOKEN" || API_TOKEN=$(cli token create --account demo --name demo --scopes read,write)
token_ok "$ADMIN_TOKEN" || ADMIN_TOKEN=$(cli token create --account operator --name local-admin --admin)

say "api + worker (node $NODE) + webhook sender"
# Webhooks may call back into this machine over plain http (a developer's receiver on loopback); in
# production they are https to public addresses only.
export WEBHOOK_ALLOW_HTTP="${WEBHOOK_ALLOW_HTTP:-true}" WEBHOOK_ALLOW_ADDRESSES="${WEBHOOK_ALLOW_ADDRESSES:-127.0.0.0/8,::1/128}"
# A 1-minute backup window (a schedule day of 6 minutes) and a scheduler tick of 5 s, so the demo
# policy's first automatic run comes within a minute or two; production keeps the 4-hour window.
export BACKUP_WINDOW_MINUTES="${BACKUP_WINDOW_MINUTES:-1}" BACKUP_SCHEDULER_INTERVAL_MS="${BACKUP_SCHEDULER_INTERVAL_MS:-5000}"
mkdir -p "$LOCAL/logs"
PORT="$PORT" HOST=127.0.0.1 node dist/main.js api >>"$LOCAL/logs/api.log" 2>&1 & pids+=($!)
WORKER_NODE="$NODE" node dist/main.js worker >>"$LOCAL/logs/worker.log" 2>&1 & pids+=($!)
node dist/main.js webhooks >>"$LOCAL/logs/webhooks.log" 2>&1 & pids+=($!)
API_URL="http://127.0.0.1:$PORT"
# Readiness through node (curl is not on every fresh Debian).
ready() { node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$API_URL/readyz"; }
for _ in $(seq 1 100); do
  if ready; then break; fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { tail -20 "$LOCAL/logs/"*.log >&2; exit 1; }; done
  sleep 0.2
done
ready || { echo "the API did not become ready; see .local/logs/api.log" >&2; exit 1; }

cat >"$LOCAL/demo.env" <<ENV
API_URL=$API_URL
API_TOKEN=$API_TOKEN
ADMIN_TOKEN=$ADMIN_TOKEN
DEMO_SERVER_ID=$SERVER_ID
ENV
chmod 600 "$LOCAL/demo.env"

say "backup demo: the demo server backed up into $BACKUP_DIR and restored from it"
if ! BACKUP_DEMO=$(API_URL="$API_URL" API_TOKEN="$API_TOKEN" bash scripts/local-backup-demo.sh "$SERVER_ID"); then
  BACKUP_DEMO="the backup demo failed (the stack runs on): see .local/logs/worker.log"
fi

cat <<MSG

  admin.vps.org API running at $API_URL  (driver: $( [ $with_libvirt = 1 ] && echo libvirt || echo FAKE ), node: $NODE)
  demo token:  $API_TOKEN
  demo server: $SERVER_ID        (also in .local/demo.env; logs in .local/logs/)
  database:    $DATABASE_URL$( [ $with_libvirt = 1 ] && printf '\n  images:      %s' "$IMAGES_DIR" )
  backup demo: the demo server backed up and restored (vps backups list --server $SERVER_ID)
$(printf '%s\n' "$BACKUP_DEMO" | sed 's/^/    /')
  operator CLI (any terminal, in this folder):  npm run --silent cli -- account list

  curl -H "Authorization: Bearer $API_TOKEN" $API_URL/api/v1/servers/
  curl -X POST $API_URL/api/v1/snapshots/ -H "Authorization: Bearer $API_TOKEN" \\
       -H "Content-Type: application/json" -d '{"server_id": $SERVER_ID, "name": "before-update-snapshot"}'

  Ctrl-C stops everything this command started.
MSG
say "automatic backups: a daily policy on the demo server, window $BACKUP_WINDOW_MINUTES min (BACKUP_WINDOW_MINUTES)"
API_URL="$API_URL" API_TOKEN="$API_TOKEN" node scripts/local-policy-demo.mjs "$SERVER_ID" | sed 's/^/    /' ||
  echo "    the policy demo failed (the stack runs on): see .local/logs/api.log and worker.log" >&2
wait -n "${pids[@]}" || true
say "a process exited; see .local/logs"
