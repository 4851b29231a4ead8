// The write path: `POST /api/v1/snapshots/` → 201 (the create accepted: row, action and job written)
// at 32 connections, each builds side by side (A B A B …, the order rotating each round); medians of
// req/s, p50 and p99. No worker runs: the answer is what is measured, not the copy. Every request
// snapshots a server no other request of the run touched (one open operation per server is a rule of
// the API), and between runs the open actions are closed by SQL so the next run starts from the same
// state.
import autocannon from 'autocannon';
import pg from 'pg';
import { median, newToken, quiet, startRole, stop, withClient } from './lib.mjs';

/** Servers made for the write bench: more than any run sends creates. */
const SERVERS = 40_000;

async function seedWriters(databaseUrl) {
  return withClient(databaseUrl, async (c) => {
    const account = await c.query(`INSERT INTO accounts (name) VALUES ('bench-writers') RETURNING id`);
    const accountId = account.rows[0].id;
    const node = await c.query(
      `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots)
       VALUES ('bench-write-hv', 'fake', 'fake://', '/tmp/bench-snapshots', ARRAY['/tmp/bench-disks']) RETURNING id`,
    );
    const servers = await c.query(
      `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path)
       SELECT $1, $2, 'w-' || g, 'stopped', 'wdom-' || g, '/tmp/bench-disks/wdisk-' || g || '.qcow2'
       FROM generate_series(1, $3) g RETURNING id`,
      [accountId, node.rows[0].id, SERVERS],
    );
    const t = newToken();
    await c.query(
      `INSERT INTO api_tokens (account_id, name, prefix, hash, scopes) VALUES ($1, 'writer', $2, $3, $4)`,
      [accountId, t.prefix, t.hash, ['read', 'write']],
    );
    await c.query('ANALYZE');
    return { accountId, token: t.token, serverIds: servers.rows.map((r) => r.id) };
  });
}

/** Ends the runs' open actions and their snapshots, as a worker would have, so servers are free again. */
async function closeOpen(client, accountId) {
  await client.query(
    `UPDATE actions SET status = 'failed', finished_at = now(), error_code = 'bench'
     WHERE account_id = $1 AND status IN ('pending', 'running')`,
    [accountId],
  );
  await client.query(`UPDATE snapshots SET status = 'failed' WHERE account_id = $1 AND status = 'in_progress'`, [
    accountId,
  ]);
}

function cannon(opts) {
  return new Promise((resolve, reject) => {
    autocannon({ connections: 32, pipelining: 1, ...opts }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** variants: [{ name, dir, env? }] builds to run side by side (the last one is "the API"). */
export async function writeBench({ databaseUrl, redisUrl, quick, variants, log = quiet }) {
  const duration = quick ? 2 : 5;
  const rounds = quick ? 2 : 4;
  const w = await seedWriters(databaseUrl);
  const apis = [];
  for (const v of variants) {
    const env = {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: `benchw${process.pid}`,
      SNAPSHOT_LIMIT_PER_SERVER: '1000',
      ...(v.env ?? {}),
    };
    apis.push({ ...v, ...(await startRole('api', env, v.dir)) });
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const runs = Object.fromEntries(apis.map((a) => [a.name, []]));
  let next = 0;
  const body = () => {
    const serverId = w.serverIds[next++ % w.serverIds.length];
    return JSON.stringify({ server_id: serverId, name: `w-${serverId}` });
  };
  const headers = { authorization: `Bearer ${w.token}`, 'content-type': 'application/json' };
  const run = (a, seconds) =>
    cannon({
      url: `${a.base}/api/v1/snapshots/`,
      requests: [{ method: 'POST', headers, setupRequest: (req) => ({ ...req, body: body() }) }],
      duration: seconds,
    });
  try {
    for (const a of apis) {
      await run(a, 1); // warm-up
      await closeOpen(client, w.accountId);
    }
    for (let round = 0; round < rounds; round++) {
      log(`write round ${round + 1}/${rounds}`);
      const order = apis.map((_, i) => apis[(i + round) % apis.length]);
      for (const a of order) {
        next = 0; // every run starts from the first server, all of them free again
        const res = await run(a, duration);
        if (next > w.serverIds.length) log(`write bench: more creates than servers (${next}); some were 409`);
        await closeOpen(client, w.accountId);
        runs[a.name].push({
          rps: res.requests.average,
          p50: res.latency.p50,
          p99: res.latency.p99,
          created: res['2xx'],
          bad: res.requests.total - res['2xx'] + res.errors + res.timeouts,
          why: { '4xx': res['4xx'], '5xx': res['5xx'], errors: res.errors, timeouts: res.timeouts },
        });
      }
    }
  } finally {
    await client.end();
    for (const a of apis) await stop(a.child);
  }
  const main = apis[apis.length - 1];
  const rows = apis.map((a) => {
    const r = runs[a.name];
    const ratios = r.map((x, i) => x.rps / runs[main.name][i].rps);
    return {
      name: a.name,
      rps: median(r.map((x) => x.rps)),
      p50: median(r.map((x) => x.p50)),
      p99: median(r.map((x) => x.p99)),
      bad: r.reduce((s, x) => s + x.bad, 0),
      why: r.map((x) => x.why),
      // This build's req/s over this one's, per round (how many times faster the API is than `name`).
      apiOverThis: a === main ? 1 : median(r.map((x, i) => runs[main.name][i].rps / x.rps)),
      ratios: ratios.map((x) => Number(x.toFixed(3))),
    };
  });
  return { duration, rounds, connections: 32, variants: apis.map((a) => a.name), rows };
}
