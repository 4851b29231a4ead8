/* global performance, Buffer */
// Target 2: the queue path. create (POST) → action `succeeded` with the fake driver at zero delay, over
// N servers × R sequential rounds (one create per server at a time is a rule of the API). One API and
// one worker process, production build. Accept→completed is measured twice: by the database's own
// timestamps (actions.created_at → finished_at, both written by the service) and as the client sees
// it (POST answered → completion observed by a 5 ms poll of the database).
import { median, percentile, rssSampler, sleep, startRole, stop, withClient, quiet } from './lib.mjs';
import pg from 'pg';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';

const JIFFY_MS = 10; // USER_HZ = 100 on Linux

/** CPU time (user + system, ms) of one process, or of every process whose name is `comm`. */
function cpuMsOf(pidOrComm) {
  const pids =
    typeof pidOrComm === 'number'
      ? [pidOrComm]
      : fs
          .readdirSync('/proc')
          .filter((d) => /^\d+$/.test(d))
          .map(Number);
  let total = 0;
  for (const pid of pids) {
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    if (typeof pidOrComm === 'string' && comm !== pidOrComm) continue;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(f[11]) + Number(f[12])) * JIFFY_MS;
  }
  return total;
}

/** Busy CPU time of the whole machine (ms, all cores): what the run and everything else used. */
function machineBusyMs() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal ?? 0)) * JIFFY_MS;
}

// `apiNodeArgs` / `workerNodeArgs` (e.g. `--cpu-prof`) and `extraEnv` are for profiling and A/B drivers.
export async function queueBench({
  databaseUrl,
  redisUrl,
  seed,
  quick,
  dir,
  concurrency,
  log = quiet,
  apiNodeArgs = [],
  workerNodeArgs = [],
  extraEnv = {},
}) {
  const servers = seed.queueServers.slice(0, quick ? 30 : 200);
  const rounds = quick ? 3 : 10;
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: `benchq${process.pid}`,
    SNAPSHOT_LIMIT_PER_SERVER: '1000',
    FAKE_DRIVER_DELAY_MS: '0',
    // The seed's servers belong to one account: its per-node cap would otherwise measure the fairness
    // rule, not the queue. The cap has its own test (fair-scheduling).
    ...(concurrency
      ? { WORKER_CONCURRENCY: String(concurrency), WORKER_ACCOUNT_CONCURRENCY: String(concurrency) }
      : { WORKER_ACCOUNT_CONCURRENCY: '64' }),
    ...extraEnv,
  };
  const api = await startRole('api', env, dir, apiNodeArgs);
  const worker = await startRole('worker', { ...env, WORKER_NODE: seed.fakeNodeName }, dir, workerNodeArgs);
  const rssApi = rssSampler(api.child.pid, 200);
  const rssWorker = rssSampler(worker.child.pid, 200);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const waiting = new Map(); // action id → resolve
  let polling = true;
  const poller = (async () => {
    while (polling) {
      if (waiting.size) {
        const ids = [...waiting.keys()];
        const r = await pool.query(
          `SELECT id, status::text AS status FROM actions WHERE id = ANY($1::int[]) AND status IN ('succeeded', 'failed')`,
          [ids],
        );
        const now = performance.now();
        for (const row of r.rows) {
          const done = waiting.get(row.id);
          waiting.delete(row.id);
          done?.({ at: now, status: row.status });
        }
      }
      await sleep(5);
    }
  })();
  const headers = { authorization: `Bearer ${seed.tokens.queue}`, 'content-type': 'application/json' };
  // node:http with keep-alive rather than fetch: the load generator shares the 2 cores with the service,
  // and undici's fetch costs it about twice the CPU per request.
  const agent = new http.Agent({ keepAlive: true, maxSockets: servers.length });
  const post = (path, payload) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify(payload);
      const req = http.request(
        `${api.base}${path}`,
        { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const clientLatency = [];
  const actionIds = [];
  let failures = 0;
  let refused = 0;
  const cpu = () => ({
    api: cpuMsOf(api.child.pid),
    worker: cpuMsOf(worker.child.pid),
    postgres: cpuMsOf('postgres'),
    redis: cpuMsOf('redis-server'),
    loadGenerator: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000,
    machine: machineBusyMs(),
  });
  const cpu0 = cpu();
  let cpu1 = cpu0;
  const t0 = performance.now();
  try {
    await Promise.all(
      servers.map(async (serverId, i) => {
        await sleep((i % 20) * 2); // do not start every server in the same millisecond
        for (let round = 0; round < rounds; round++) {
          const sent = performance.now();
          const r = await post('/api/v1/snapshots/', { server_id: serverId, name: `b-${serverId}-${round}` });
          const body = r.body;
          if (r.status !== 201) {
            refused++;
            if (refused < 5) log(`create refused: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
            await sleep(20);
            continue;
          }
          const accepted = performance.now();
          actionIds.push(body.action_id);
          const done = await new Promise((resolve) => waiting.set(body.action_id, resolve));
          if (done.status !== 'succeeded') failures++;
          clientLatency.push({ sent, accepted, done: done.at });
        }
      }),
    );
  } finally {
    cpu1 = cpu();
    polling = false;
    await poller;
    if (refused) log(`API stderr (tail): ${api.child.stderrTail().slice(-1500)}`);
    var apiRss = rssApi.stop();
    var workerRss = rssWorker.stop();
    await stop(api.child);
    await stop(worker.child);
    agent.destroy();
  }
  const wall = (performance.now() - t0) / 1000;
  const server = await pool.query(
    `SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms,
            extract(epoch FROM started_at - created_at) * 1000 AS wait_ms
     FROM actions WHERE id = ANY($1::int[]) AND finished_at IS NOT NULL`,
    [actionIds],
  );
  await pool.end();
  const ms = server.rows.map((x) => Number(x.ms));
  const waitMs = server.rows.map((x) => Number(x.wait_ms));
  const acceptToDone = clientLatency.map((x) => x.done - x.accepted);
  const postMs = clientLatency.map((x) => x.accepted - x.sent);
  return {
    servers: servers.length,
    rounds,
    operations: actionIds.length,
    failures,
    refused,
    wallSeconds: wall,
    opsPerSecond: actionIds.length / wall,
    workerConcurrency: concurrency ?? 4,
    serverSide: { p50: median(ms), p99: percentile(ms, 99), queueWaitP50: median(waitMs) },
    clientSide: {
      p50: median(acceptToDone),
      p99: percentile(acceptToDone, 99),
      postP50: median(postMs),
      postP99: percentile(postMs, 99),
    },
    rssMB: { apiMax: apiRss.max / 2 ** 20, workerMax: workerRss.max / 2 ** 20 },
    // CPU per operation of each part, and the ceiling it sets: the cores divided by the CPU that one
    // operation costs the service (API + worker + Postgres + Redis; not the load generator).
    cpuMsPerOperation: (() => {
      const per = Object.fromEntries(
        Object.keys(cpu0).map((k) => [k, (cpu1[k] - cpu0[k]) / Math.max(1, actionIds.length)]),
      );
      const service = per.api + per.worker + per.postgres + per.redis;
      return { ...per, service, ceilingOpsPerSecond: (os.cpus().length * 1000) / service };
    })(),
  };
}

export { withClient };
