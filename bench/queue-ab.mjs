// The queue path (bench/queue.mjs) for several builds side by side, A B A B …, with the worker
// process's CPU time per operation (from /proc) next to throughput and latency: what a worker-side
// change costs the queue path.
//
//   node bench/queue-ab.mjs --baseline=<ref>[,<ref>…] [--rounds=3] [--quick] [--concurrency=N]
//
// Postgres and Redis CPU are those of every `postgres` / `redis-server` process of the machine (the
// services are shared): what the run's statements cost them, plus whatever else ran meanwhile.
import fs from 'node:fs';
import os from 'node:os';
import {
  RUN_ID,
  buildApp,
  buildRef,
  cleanRedis,
  createDatabase,
  dropDatabase,
  fmt,
  median,
  seed,
  serviceEnv,
  sleep,
} from './lib.mjs';
import { queueBench } from './queue.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const arg = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const rounds = Number(arg('rounds') ?? 3);
const concurrency = arg('concurrency') ? Number(arg('concurrency')) : undefined;
const env = serviceEnv();
const admin = process.env.DATABASE_ADMIN_URL ?? env.DATABASE_ADMIN_URL;
const redisUrl = process.env.REDIS_URL ?? env.REDIS_URL;
const log = (...a) => console.error('[queue-ab]', ...a);
const TICK = 100; // USER_HZ on Linux

/** CPU seconds (user + system) of this process's child running `dist/main.js worker`, sampled until stopped. */
function workerCpu() {
  let last = 0;
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const t of fs.readdirSync(`/proc/${process.pid}/task`)) {
        let kids = '';
        try {
          kids = fs.readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8');
        } catch {
          continue;
        }
        for (const k of kids.trim().split(/\s+/).filter(Boolean)) {
          try {
            if (!fs.readFileSync(`/proc/${k}/cmdline`, 'utf8').includes('main.js\0worker')) continue;
            const f = fs.readFileSync(`/proc/${k}/stat`, 'utf8').split(') ')[1].split(' ');
            last = (Number(f[11]) + Number(f[12])) / TICK;
          } catch {
            /* exited */
          }
        }
      }
      await sleep(200);
    }
  })();
  return async () => {
    on = false;
    await loop;
    return last;
  };
}

/**
 * CPU seconds (user + system) used by the Postgres backends serving database `db` (their process title
 * names it) while sampling: the run's own statements, whatever else the shared server does. A backend
 * that exits is counted up to its last sample (every 200 ms).
 */
function postgresCpu(db) {
  const base = new Map();
  const last = new Map();
  let on = true;
  let first = true;
  const loop = (async () => {
    while (on) {
      for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
          const title = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
          if (!title.startsWith('postgres: ') || !title.split(' ').includes(db)) continue;
          const f = fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ');
          const t = (Number(f[11]) + Number(f[12])) / TICK;
          if (!base.has(d)) base.set(d, first ? t : 0);
          last.set(d, t);
        } catch {
          /* exited */
        }
      }
      first = false;
      await sleep(200);
    }
  })();
  return async () => {
    on = false;
    await loop;
    let total = 0;
    for (const [d, t] of last) total += t - base.get(d);
    return total;
  };
}

/**
 * CPU ms per operation of one run: the worker and API during the run (queue.mjs samples them after
 * start-up), the worker with its start-up, this database's Postgres backends, and every Postgres and
 * Redis process of the machine (the services are shared with whatever else runs).
 */
const perOp = (x) => ({
  worker: x.q.cpuMsPerOperation.worker,
  workerWithStartup: (x.cpuSeconds * 1000) / x.q.operations,
  postgresDb: (x.postgresSeconds * 1000) / x.q.operations,
  postgresAll: x.q.cpuMsPerOperation.postgres,
  redis: x.q.cpuMsPerOperation.redis,
  api: x.q.cpuMsPerOperation.api,
});

const builds = [
  ...(arg('baseline') ?? '')
    .split(',')
    .filter(Boolean)
    .map((ref) => {
      const b = buildRef(ref, log);
      return { name: b.sha, dir: b.dir };
    }),
  { name: 'this build', dir: buildApp(log) },
];
const name = `bench_qab_${RUN_ID}`;
const db = await createDatabase(admin, name);
try {
  const s = await seed(db, { servers: 2000, snapshots: 10_000, benchServers: 200, fakeServers: 200 });
  const runs = [];
  for (let r = 0; r < rounds; r++) {
    for (const b of builds) {
      log(`round ${r + 1}/${rounds}: ${b.name}`);
      const cpu = workerCpu();
      const pgCpu = postgresCpu(name);
      const q = await queueBench({ databaseUrl: db, redisUrl, seed: s, quick, dir: b.dir, log, concurrency });
      const cpuSeconds = await cpu();
      const postgresSeconds = await pgCpu();
      runs.push({ build: b.name, q, cpuSeconds, postgresSeconds });
      const c = perOp(runs.at(-1));
      log(
        `  ${fmt(q.opsPerSecond)} ops/s; CPU ms/op: worker ${fmt(c.worker, 2)} (with start-up ${fmt(c.workerWithStartup, 2)}), ` +
          `Postgres of this database ${fmt(c.postgresDb, 2)} (all backends ${fmt(c.postgresAll, 2)}), Redis ${fmt(c.redis, 2)}, API ${fmt(c.api, 2)}`,
      );
    }
  }
  console.log(
    `\n### Queue path side by side: ${runs[0].q.operations} creates per run, ${rounds} rounds, ${os.cpus().length} CPUs, medians\n`,
  );
  console.log(
    '| build | operations/s | accept→completed p50 / p99 (DB) | POST p50 | CPU ms / operation: worker · Postgres (this database; all) · Redis · API | worker RSS max | failed / refused (all runs) |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const b of builds) {
    const mine = runs.filter((x) => x.build === b.name);
    const m = (f) => median(mine.map(f));
    const c = (k) =>
      fmt(
        m((x) => perOp(x)[k]),
        2,
      );
    const failed = mine.reduce((a, x) => a + x.q.failures, 0);
    const refused = mine.reduce((a, x) => a + x.q.refused, 0);
    console.log(
      `| ${b.name} | ${fmt(m((x) => x.q.opsPerSecond))} | ${fmt(m((x) => x.q.serverSide.p50))} / ${fmt(m((x) => x.q.serverSide.p99))} ms ` +
        `| ${fmt(m((x) => x.q.clientSide.postP50))} ms | ${c('worker')} · ${c('postgresDb')}; ${c('postgresAll')} · ${c('redis')} · ${c('api')} ` +
        `| ${fmt(
          m((x) => x.q.rssMB.workerMax),
          0,
        )} MB | ${failed} / ${refused} |`,
    );
  }
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync(
    `bench/results/queue-ab-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    JSON.stringify(runs, null, 2),
  );
} finally {
  await dropDatabase(admin, name).catch(() => undefined);
  await cleanRedis(redisUrl).catch(() => undefined);
}
