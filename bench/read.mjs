/* global fetch, Buffer, setInterval, clearInterval */
// Target 1 (and the API half of target 5): the read path against a bare node:http server returning the
// same bytes from its own process, 32 connections, sides alternated in one run (A B A B …, the order
// rotating each round); medians of requests/s and of p99. With a baseline build (another commit), the
// code change is measured the same way, side by side.
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ROOT, median, rssOf, rssSampler, startRole, stop, quiet } from './lib.mjs';

function cannon(opts) {
  return new Promise((resolve, reject) => {
    autocannon({ connections: 32, pipelining: 1, ...opts }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function startBare(routesFile) {
  const child = /** @type {import('./lib.mjs').BenchChild} */ (
    spawn(process.execPath, [path.join(ROOT, 'bench/bare-server.mjs'), routesFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
  );
  child.exitedPromise = new Promise((r) => child.once('exit', r));
  const port = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  return { child, base: `http://127.0.0.1:${port}` };
}

/** One path, or each connection going through `paths` in turn. */
function target(base, c) {
  return c.paths ? { url: base, requests: c.paths.map((p) => ({ method: 'GET', path: p })) } : { url: base + c.path };
}

/** Runs fn while another connection updates a snapshot of account 1 `perSecond` times a second. */
async function withWriter(databaseUrl, serverId, perSecond, fn) {
  if (!perSecond) return fn();
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  let n = 0;
  let last = Promise.resolve();
  const timer = setInterval(() => {
    n++;
    const text = `nightly backup, touched ${n}`;
    // One statement at a time on the connection (pg refuses to queue them itself from pg@9 on).
    last = last.then(() => client
      .query(
        // The oldest snapshot of the account, on a server no case reads: the answers stay the same bytes,
        // but the account's listing version moves with every write.
        `UPDATE snapshots SET description = $1 WHERE id = (
           SELECT id FROM snapshots WHERE account_id = 1 AND deleted_at IS NULL
             AND server_id NOT BETWEEN $2 AND $2 + 31 ORDER BY created_at, id LIMIT 1)`,
        [text, serverId],
      )
      .then(() => undefined, () => undefined));
  }, 1000 / perSecond);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    await last;
    await client.end();
  }
}

/**
 * variants: [{ name, dir }] builds to run (the last one is "the API"; earlier ones are baselines).
 * Cases: the server_id-filtered list, the account-wide first page, the detail, and conditional polls
 * (If-None-Match) where the API sends ETags.
 */
export async function readBench({ databaseUrl, redisUrl, seed, quick, variants, log = quiet }) {
  const duration = quick ? 2 : 6;
  const rounds = quick ? 2 : 4;
  const apis = [];
  for (const v of variants) {
    const api = await startRole(
      'api',
      { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, QUEUE_PREFIX: `bench${process.pid}`, ...(v.env ?? {}) },
      v.dir,
    );
    apis.push({ ...v, ...api, idleRss: rssOf(api.child.pid), rss: rssSampler(api.child.pid, 200) });
  }
  const main = apis[apis.length - 1];
  const auth = { authorization: `Bearer ${seed.tokens.bench}` };
  const firstId = await fetch(`${main.base}/api/v1/snapshots/?page_size=1`, { headers: auth })
    .then((r) => r.json())
    .then((j) => j.results[0].id);
  /** @typedef {{ name: string, path: string, paths?: string[], writesPerSecond?: number, etag?: string | null, bytes?: number, conditionalStatus?: number, inm?: string, conditional?: boolean }} ReadCase */
  /** @type {ReadCase[]} */
  const cases = [
    { name: 'filtered list `?server_id=…`', path: `/api/v1/snapshots/?server_id=${seed.benchServerId}` },
    { name: 'account-wide first page', path: `/api/v1/snapshots/` },
    { name: 'detail', path: `/api/v1/snapshots/${firstId}/` },
    // The other authenticated GETs: what a dashboard and `vps --wait` read.
    { name: 'servers list', path: `/api/v1/servers/` },
    { name: 'server detail', path: `/api/v1/servers/${seed.benchServerId}/` },
    { name: 'action detail (`vps --wait`)', path: `/api/v1/actions/${seed.benchActionId}/` },
    { name: 'tokens list', path: `/api/v1/tokens/` },
  ];
  // Each connection polls 32 different servers' lists in turn (few identical requests arrive together).
  const spread = Array.from({ length: 32 }, (_, i) => `/api/v1/snapshots/?server_id=${seed.benchServerId + i}`);
  /** @type {ReadCase[]} */
  const extra = [
    { name: 'filtered list, 32 different servers in turn', path: spread[0], paths: spread },
    // 20 snapshot updates a second in the polled account (what running jobs write): answers change.
    { name: 'filtered list while the account changes 20×/s', path: cases[0].path, writesPerSecond: 20 },
  ];
  const routes = {};
  for (const c of [...cases, ...extra.filter((x) => !quick || !x.paths)]) {
    for (const p of c.paths ?? []) {
      const r = await fetch(main.base + p, { headers: auth });
      const body = Buffer.from(await r.arrayBuffer());
      if (r.status !== 200) throw new Error(`${p}: ${r.status} ${body}`);
      routes[p] = { type: r.headers.get('content-type'), body: body.toString('base64'), etag: r.headers.get('etag') };
    }
    if (c.paths) continue;
    const r = await fetch(main.base + c.path, { headers: auth });
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200) throw new Error(`${c.path}: ${r.status} ${body}`);
    c.etag = r.headers.get('etag');
    c.bytes = body.length;
    routes[c.path] = { type: r.headers.get('content-type'), body: body.toString('base64'), etag: c.etag };
    for (const other of apis.slice(0, -1)) {
      const o = await fetch(other.base + c.path, { headers: auth }).then((x) => x.text());
      if (o.replace(/127.0.0.1:\d+/g, "") !== body.toString().replace(/127.0.0.1:\d+/g, "")) log(`note: ${other.name} answers ${c.path} with different bytes`);
    }
    if (c.etag) {
      const again = await fetch(main.base + c.path, { headers: { ...auth, 'if-none-match': c.etag } });
      c.conditionalStatus = again.status;
    }
  }
  /** @type {ReadCase[]} */
  const all = [...cases, ...extra.filter((x) => !quick || !x.paths)];
  for (const c of cases.slice(0, quick ? 1 : 2)) {
    if (c.etag && c.conditionalStatus === 304) {
      all.push({ name: `${c.name}, If-None-Match → 304`, path: c.path, inm: c.etag, conditional: true });
    }
  }
  const routesFile = path.join(os.tmpdir(), `bench-routes-${process.pid}.json`);
  fs.writeFileSync(routesFile, JSON.stringify(routes));
  const bare = await startBare(routesFile);
  const sides = [{ name: 'bare', base: bare.base, bare: true }, ...apis];
  const results = all.map((c) => ({ ...c, runs: Object.fromEntries(sides.map((s) => [s.name, []])) }));
  let rss;
  try {
    for (const c of results) {
      for (const s of sides) {
        if (c.conditional && !s.bare && s !== main) continue;
        const hdr = { ...(s.bare ? {} : auth), ...(c.inm ? { 'if-none-match': c.inm } : {}) };
        await cannon({ ...target(s.base, c), headers: hdr, duration: 1 }); // warm-up
      }
    }
    for (let round = 0; round < rounds; round++) {
      log(`read round ${round + 1}/${rounds}`);
      for (const c of results) {
        const order = sides.map((_, i) => sides[(i + round) % sides.length]);
        for (const s of order) {
          if (c.conditional && !s.bare && s !== main) continue; // baselines have no ETags
          const hdr = { ...(s.bare ? {} : auth), ...(c.inm ? { 'if-none-match': c.inm } : {}) };
          const res = await withWriter(databaseUrl, seed.benchServerId, c.writesPerSecond, () =>
            cannon({ ...target(s.base, c), headers: hdr, duration }),
          );
          const good = c.conditional ? (res['3xx'] ?? 0) : res['2xx'];
          c.runs[s.name].push({
            rps: res.requests.average,
            p50: res.latency.p50,
            p99: res.latency.p99,
            bad: res.requests.total - good + res.errors + res.timeouts,
          });
        }
      }
    }
  } finally {
    rss = apis.map((a) => ({ name: a.name, idleMB: a.idleRss / 2 ** 20, maxMB: a.rss.stop().max / 2 ** 20 }));
    await stop(bare.child);
    for (const a of apis) await stop(a.child);
    fs.rmSync(routesFile, { force: true });
  }
  const rows = results.map((c) => {
    const bareRuns = c.runs.bare;
    const row = { case: c.name, bytes: c.bytes, bareRps: median(bareRuns.map((x) => x.rps)), bareP99: median(bareRuns.map((x) => x.p99)), sides: {} };
    for (const a of apis) {
      const runs = c.runs[a.name];
      if (!runs.length) continue;
      const ratios = runs.map((x, i) => x.rps / bareRuns[i].rps);
      row.sides[a.name] = {
        rps: median(runs.map((x) => x.rps)),
        ratio: median(ratios),
        p50: median(runs.map((x) => x.p50)),
        p99: median(runs.map((x) => x.p99)),
        bad: runs.reduce((s, x) => s + x.bad, 0),
        ratios: ratios.map((r) => Number(r.toFixed(3))),
      };
    }
    return row;
  });
  return { duration, rounds, connections: 32, variants: apis.map((a) => a.name), rows, rss };
}
