#!/usr/bin/env node
/* global fetch, performance */
// node bench/webhooks.mjs [--events=N] [--rate=PER_SECOND] [--base=DIR] [--rounds=N]
// Webhook delivery latency: events recorded in Postgres (emit_event) at a steady rate, delivered by the
// `webhooks` process with its default settings to a healthy receiver on loopback. Latency = the
// receiver's clock at arrival − the event's created_at (same machine, same clock). Side by side: a bare
// HTTP POST to the same receiver (the floor no sender can beat). Needs `npm run build` first.
// --base=DIR: another build's sender (DIR/dist, e.g. a checkout of main, built) in the same run,
// alternating with this one for --rounds rounds (each run on a fresh database).
import crypto from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import {
  ROOT,
  createDatabase,
  dropDatabase,
  fmt,
  percentile,
  serviceEnv,
  sleep,
  startRole,
  stop,
  withClient,
  newToken,
} from './lib.mjs';

const arg = (name, fallback) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const EVENTS = arg('events', 500);
const RATE = arg('rate', 50);
const ROUNDS = arg('rounds', 1);
const BASE = process.argv.find((a) => a.startsWith('--base='))?.split('=')[1];

const env = serviceEnv();
const admin = process.env.DATABASE_ADMIN_URL ?? env.DATABASE_ADMIN_URL;
const key = crypto.randomBytes(32).toString('base64');

const arrivals = new Map(); // webhook-id -> first arrival (ms)
const receiver = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const id = req.headers['webhook-id'];
    if (id && !arrivals.has(id)) arrivals.set(id, Date.now());
    res.writeHead(204).end();
  });
});
await new Promise((r) => receiver.listen(0, '127.0.0.1', () => r(undefined)));
const hookUrl = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (receiver.address()).port}/hook`;

/** One run on a fresh database: the API from this build, the sender from `senderDir`. */
async function runOnce(label, senderDir) {
  arrivals.clear();
  const name = `bench_webhooks_${process.pid}_${++runs}`;
  const url = await createDatabase(admin, name);
  const roleEnv = {
    DATABASE_URL: url,
    REDIS_URL: process.env.REDIS_URL ?? env.REDIS_URL,
    QUEUE_PREFIX: `bench-webhooks-${process.pid}`,
    WEBHOOK_SECRET_KEY: key,
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOW_ADDRESSES: '127.0.0.0/8',
  };
  let api;
  let sender;
  try {
    const t = newToken();
    const account = await withClient(url, async (c) => {
      const { rows } = await c.query(`INSERT INTO accounts (name) VALUES ('bench') RETURNING id`);
      await c.query(
        `INSERT INTO api_tokens (account_id, name, prefix, hash, scopes) VALUES ($1, 'bench', $2, $3, ARRAY['read','write'])`,
        [rows[0].id, t.prefix, t.hash],
      );
      return rows[0].id;
    });
    api = await startRole('api', roleEnv, ROOT);
    const created = await fetch(`${api.base}/api/v1/webhooks/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: hookUrl }),
    });
    if (created.status !== 201) throw new Error(`webhook create: ${created.status} ${await created.text()}`);
    sender = await startRole('webhooks', roleEnv, senderDir);

    // The floor: bare POSTs of a similar body to the same receiver, one at a time.
    const bare = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await fetch(hookUrl, {
        method: 'POST',
        body: JSON.stringify({ type: 'x', timestamp: 'y', data: { i } }),
      });
      bare.push(performance.now() - t0);
    }
    // Steady state, not start-up: one event delivered before the measured ones (a sender process
    // starting on a loaded machine takes seconds to make its first claim).
    const warmUp = await withClient(url, async (c) => {
      const { rows } = await c.query(`SELECT emit_event($1, 'backup.pruned', '{}'::jsonb) AS id`, [account]);
      return rows[0].id;
    });
    const warmDeadline = Date.now() + 120_000;
    while (arrivals.size === 0 && Date.now() < warmDeadline) await sleep(50);
    arrivals.clear();

    await withClient(url, async (c) => {
      const started = Date.now();
      for (let i = 0; i < EVENTS; i++) {
        await c.query(`SELECT emit_event($1, 'backup.pruned', $2::jsonb)`, [
          account,
          JSON.stringify({ backup_id: i + 1 }),
        ]);
        const due = started + ((i + 1) * 1000) / RATE;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    });
    const deadline = Date.now() + 60_000;
    while (arrivals.size < EVENTS && Date.now() < deadline) await sleep(100);
    const events = await withClient(
      url,
      async (c) =>
        (await c.query(`SELECT id, created_at FROM events WHERE id > $1 ORDER BY id`, [warmUp])).rows,
    );
    const latencies = events
      .map((e) => arrivals.get(`evt_${e.id}`) - new Date(e.created_at).getTime())
      .filter(Number.isFinite);
    const result = {
      sender: label,
      load_1m: Number(fmt(os.loadavg()[0], 1)),
      events: EVENTS,
      rate_per_s: RATE,
      delivered: latencies.length,
      min_ms: Math.min(...latencies),
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      max_ms: Math.max(...latencies),
      bare_post_p99_ms: Number(fmt(percentile(bare, 99), 2)),
    };
    console.log(JSON.stringify(result));
    console.log(
      `| ${label}: ${EVENTS} events at ${RATE}/s, load ${result.load_1m} | p50 ${result.p50_ms} ms | p99 ${result.p99_ms} ms | max ${result.max_ms} ms | bare POST p99 ${result.bare_post_p99_ms} ms |`,
    );
  } finally {
    await stop(sender?.child);
    await stop(api?.child);
    await dropDatabase(admin, name);
  }
}

let runs = 0;
try {
  for (let round = 0; round < ROUNDS; round++) {
    if (BASE) await runOnce('base', BASE);
    await runOnce('this', ROOT);
  }
} finally {
  receiver.close();
}
