/* global fetch, setTimeout */
// The automatic-backup part of `npm run local`: puts a daily policy on the demo server whose window
// opens at the next schedule hour, then follows the server until the policy's first automatic run has
// finished, printing what `GET /api/v1/servers/{id}/` shows on the way (next_run_at, last_run).
// `npm run local` shortens the window (BACKUP_WINDOW_MINUTES=1: a schedule hour of 15 s, a day of
// 6 minutes; src/backup-schedule/schedule.ts), so this takes a minute or two; with the contract's
// 4-hour window it would take hours, and it says so instead of waiting.
//
//   API_URL=… API_TOKEN=… BACKUP_WINDOW_MINUTES=1 node scripts/local-policy-demo.mjs SERVER_ID
const [serverId] = process.argv.slice(2);
if (!serverId) throw new Error('usage: local-policy-demo.mjs SERVER_ID');
const { API_URL, API_TOKEN } = process.env;
const windowMinutes = Number(process.env.BACKUP_WINDOW_MINUTES ?? 240);
const headers = { Authorization: `Bearer ${API_TOKEN}`, 'Content-Type': 'application/json' };

async function call(method, path, body) {
  const res = await fetch(`${API_URL}/api/v1${path}`, { method, headers, body: body && JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}
const policyOf = async () => (await call('GET', `/servers/${serverId}/`)).backup_policy;

// The schedule hour after the current one, on the schedule's (possibly shortened) clock.
const hourMs = (windowMinutes * 60_000) / 4;
const hour = (Math.floor(Date.now() / hourMs) + 1) % 24;
const before = (await policyOf()).last_run?.slot_at ?? null;
await call('PUT', `/servers/${serverId}/backup-policy/`, {
  enabled: true,
  schedule: { frequency: 'daily', hour },
  retention: { daily: 3, weekly: 0, monthly: 0 },
});
const first = await policyOf();
console.log(
  `policy: daily at schedule hour ${hour} (window ${windowMinutes} min), next_run_at ${first.next_run_at}`,
);
const waitMs = new Date(first.next_run_at).getTime() - Date.now() + 3 * 60_000;
if (waitMs > 10 * 60_000) {
  console.log('its first run is hours away (BACKUP_WINDOW_MINUTES is not short): not waiting');
  process.exit(0);
}
const deadline = Date.now() + waitMs;
let shown = '';
while (Date.now() < deadline) {
  const p = await policyOf();
  const run = p.last_run;
  if (run && run.slot_at !== before) {
    const line = `last_run: slot ${run.slot_at}, ran ${run.ran_at}, outcome ${run.outcome}, backup ${run.backup_id}`;
    if (line !== shown) console.log((shown = line));
    if (run.outcome !== 'in_progress') {
      console.log(`next_run_at ${p.next_run_at} (a backup every ${6 * windowMinutes} minutes while this runs)`);
      process.exit(run.outcome === 'completed' ? 0 : 1);
    }
  }
  await new Promise((r) => setTimeout(r, 2000));
}
console.log('no automatic run finished in time: see .local/logs/api.log and worker.log');
process.exit(1);
