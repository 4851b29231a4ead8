/* global fetch */
// The API's CPU per request on one polled route, for several builds side by side: each round drives every
// build in turn (the order rotating) with 32 connections for a few seconds and reads the API process's
// CPU time (user + system, /proc/<pid>/stat) over the round. Requests per CPU-second of the API process
// depend far less on what else runs on the machine than requests per second do, so a code change of a
// few µs per request shows on a busy machine too.
//
//   node bench/read-cpu.mjs --baseline=<ref>[,<ref>…] [--route=list|detail|page] [--rounds=6] [--seconds=4]
//                           [--cpu-prof=<dir>]   (each API under `node --cpu-prof`, profiles written at its exit)
import autocannon from 'autocannon';
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
  startRole,
  stop,
} from './lib.mjs';

const args = process.argv.slice(2);
const arg = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const rounds = Number(arg('rounds') ?? 6);
const seconds = Number(arg('seconds') ?? 4);
const route = arg('route') ?? 'list';
const profDir = arg('cpu-prof');
const env = serviceEnv();
const admin = process.env.DATABASE_ADMIN_URL ?? env.DATABASE_ADMIN_URL;
const redisUrl = process.env.REDIS_URL ?? env.REDIS_URL;
const log = (...a) => console.error('[read-cpu]', ...a);
const TICK = 100; // USER_HZ on Linux

/** CPU seconds (user + system) the process has used so far. */
function cpuOf(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}

function cannon(opts) {
  return new Promise((resolve, reject) => {
    autocannon({ connections: 32, pipelining: 1, ...opts }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function main() {
  const builds = [
    ...(arg('baseline') ?? '')
      .split(',')
      .filter(Boolean)
      .map((ref) => ({ name: ref, ...buildRef(ref, log) })),
    { name: 'this build', dir: buildApp(log) },
  ];
  const dbName = `bench_cpu_${RUN_ID}`;
  const url = await createDatabase(admin, dbName);
  const apis = [];
  try {
    const s = await seed(url, { servers: 2000, snapshots: 10_000, benchServers: 200 });
    for (const b of builds) {
      const nodeArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
      const api = await startRole(
        'api',
        { DATABASE_URL: url, REDIS_URL: redisUrl, QUEUE_PREFIX: `bench${RUN_ID}` },
        b.dir,
        nodeArgs,
      );
      apis.push({ ...b, ...api, runs: [] });
    }
    const auth = { authorization: `Bearer ${s.tokens.bench}` };
    const first = await fetch(`${apis[0].base}/api/v1/snapshots/?page_size=1`, { headers: auth }).then((r) =>
      r.json(),
    );
    const path = {
      list: `/api/v1/snapshots/?server_id=${s.benchServerId}`,
      detail: `/api/v1/snapshots/${first.results[0].id}/`,
      page: '/api/v1/snapshots/',
    }[route];
    if (!path) throw new Error(`unknown --route=${route}`);
    let bytes = null;
    for (const a of apis) {
      const r = await fetch(a.base + path, { headers: auth });
      const body = await r.text();
      if (r.status !== 200) throw new Error(`${a.name}: ${path} answered ${r.status}`);
      if (bytes !== null && body !== bytes) log(`note: ${a.name} answers ${path} with different bytes`);
      bytes ??= body;
      await cannon({ url: a.base + path, headers: auth, duration: 1 }); // warm-up
    }
    log(
      `${path}: ${bytes.length} bytes; ${rounds} rounds × ${seconds} s per build; load ${os
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < apis.length; i++) {
        const a = apis[(i + round) % apis.length];
        const before = cpuOf(a.child.pid);
        const res = await cannon({ url: a.base + path, headers: auth, duration: seconds });
        const cpu = cpuOf(a.child.pid) - before;
        const bad = res.requests.total - res['2xx'] + res.errors + res.timeouts;
        a.runs.push({
          rps: res.requests.average,
          p99: res.latency.p99,
          perCpuSecond: res.requests.total / cpu,
          bad,
        });
      }
      log(`round ${round + 1}/${rounds}, load ${os.loadavg()[0].toFixed(1)}`);
    }
  } finally {
    for (const a of apis) await stop(a.child);
    await dropDatabase(admin, dbName);
    await cleanRedis(redisUrl);
  }
  const ref = apis[0];
  console.log(
    `| build | req/s | p99 ms | requests per API CPU-second (rounds) | µs of API CPU per request | ÷ ${ref.name} | non-2xx |`,
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const a of apis) {
    const per = median(a.runs.map((r) => r.perCpuSecond));
    const ratios = a.runs.map((r, i) => r.perCpuSecond / ref.runs[i].perCpuSecond);
    console.log(
      `| ${a.name} | ${fmt(median(a.runs.map((r) => r.rps)), 0)} | ${fmt(median(a.runs.map((r) => r.p99)), 1)} | ${fmt(per, 0)} (${a.runs.map((r) => fmt(r.perCpuSecond, 0)).join(', ')}) | ` +
        `${fmt(1e6 / per, 0)} | ${fmt(median(ratios), 3)} | ${a.runs.reduce((n, r) => n + r.bad, 0)} |`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
