#!/usr/bin/env bash
# The backup part of `npm run local`: backs the demo server up into the local backup directory (the
# `default` store, BACKUP_DIR) and restores the server from that backup, through the API and the
# worker, with the customer CLI as a customer would. The demo backup of an earlier run is deleted
# first, so running the stack again never fills the server's backup slots.
#
#   API_URL=… API_TOKEN=… bash scripts/local-backup-demo.sh SERVER_ID
#
# Prints what it did (stdout); the CLI's progress goes to stderr. Exit 1 when a step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
server="${1:?usage: local-backup-demo.sh SERVER_ID}"
name=local-demo
vps() { VPS_API_URL="${API_URL:?}" VPS_API_TOKEN="${API_TOKEN:?}" node dist/customer-cli/main.js "$@"; }

earlier=$(vps backups list --server "$server" --json | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    for (const b of JSON.parse(s)) if (b.name === process.argv[1]) console.log(b.id);
  });' "$name")
for id in $earlier; do
  vps backups delete "$id" >/dev/null || echo "could not delete the earlier demo backup $id" >&2
done

created=$(vps backups create --server "$server" --name "$name" --wait)
printf '%s\n' "$created"
id=$(printf '%s\n' "$created" | sed -n '1s/^backup \([0-9][0-9]*\) .*/\1/p')
[ -n "$id" ] || { echo "no backup id in: $created" >&2; exit 1; }
vps backups restore "$id" --wait
echo "stored in ${BACKUP_DIR:-the backup store of the node} (manifest and encrypted chunks)"
