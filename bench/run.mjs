#!/usr/bin/env node
// npm run bench [-- --quick] [-- --only=read,write,queue,disk,scale,memory,backup,labels] [-- --keep]  (backup, labels: only when named)
// Runs every benchmark of docs/benchmarks.md side by side with its physical limit and writes
// bench/results/<date>.json plus a markdown summary on stdout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, createDatabase, dropDatabase, seed, serviceEnv, fmt, RUN_ID, buildApp, buildRef, cleanRedis } from './lib.mjs';
import { readBench } from './read.mjs';
import { writeBench } from './write.mjs';
import { queueBench } from './queue.mjs';
import { diskBench } from './disk.mjs';
import { scaleBench } from './scale.mjs';
import { labelsBench } from './labels.mjs';
import { workerMemoryBench } from './worker-memory.mjs';
import { backupBench, printBackup } from './backup.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.find((a) => a.startsWith('--only='));
const only = new Set((onlyArg ? onlyArg.slice(7) : 'read,write,queue,disk,scale,memory').split(','));

const env = serviceEnv();
const admin = process.env.DATABASE_ADMIN_URL ?? env.DATABASE_ADMIN_URL;
const redisUrl = process.env.REDIS_URL ?? env.REDIS_URL;
const started = Date.now();
const out = { date: new Date().toISOString(), quick, machine: machine(), results: {} };

function machine() {
  return {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    kernel: os.release(),
  };
}

const log = (...a) => console.error(`[bench +${((Date.now() - started) / 1000).toFixed(0)}s]`, ...a);
const dbs = [];
let variants = [];

async function main() {
  const appDir = buildApp(log);
  const baseArg = args.find((a) => a.startsWith('--baseline='));
  // --baseline=<ref>[,<ref>…]: earlier builds measured side by side with this one (each code change).
  const baselines = baseArg ? baseArg.slice(11).split(',').map((ref) => buildRef(ref, log)) : [];
  // --api-node-options="<flags>": this build once more with NODE_OPTIONS (e.g. V8 heap caps), side by side.
  const nodeOpts = args.find((a) => a.startsWith('--api-node-options='));
  // --api-env=K=V[,K=V…]: this build once more with these settings (e.g. HOT_READ_PATH=false), side by side.
  const apiEnv = args.find((a) => a.startsWith('--api-env='));
  variants = [
    ...baselines.map((b) => ({ name: b.sha, dir: b.dir })),
    ...(nodeOpts ? [{ name: `API ${nodeOpts.slice(19)}`, dir: appDir, env: { NODE_OPTIONS: nodeOpts.slice(19) } }] : []),
    ...(apiEnv
      ? [
          {
            name: `API ${apiEnv.slice(10)}`,
            dir: appDir,
            env: Object.fromEntries(apiEnv.slice(10).split(',').map((kv) => [kv.split('=')[0], kv.split('=').slice(1).join('=')])),
          },
        ]
      : []),
    { name: 'API', dir: appDir },
  ];
  const small = { servers: quick ? 2000 : 10_000, snapshots: quick ? 10_000 : 50_000, benchServers: quick ? 200 : 1000 };
  const big = quick ? { servers: 20_000, snapshots: 100_000 } : { servers: 200_000, snapshots: 1_000_000 };
  let smallDb = null;
  let smallSeed = null;
  let largeDb = null;
  const needSmall = ['read', 'write', 'queue', 'scale', 'disk', 'memory'].some((x) => only.has(x));
  const smallName = `bench_small_${RUN_ID}`;
  const largeName = `bench_large_${RUN_ID}`;
  if (needSmall) dbs.push(smallName);
  if (only.has('scale')) dbs.push(largeName);
  log(`migrating ${dbs.join(', ')}`);
  [smallDb, largeDb] = await Promise.all([
    needSmall ? createDatabase(admin, smallName) : null,
    only.has('scale') ? createDatabase(admin, largeName) : null,
  ]);
  if (needSmall) {
    log(`seeding ${smallName}: ${small.servers} servers / ${small.snapshots} snapshots`);
    smallSeed = await seed(smallDb, { ...small, fakeServers: quick ? 30 : 200 });
  }
  if (only.has('read')) {
    log('read path');
    out.results.read = await readBench({ databaseUrl: smallDb, redisUrl, seed: smallSeed, quick, variants, log });
    printRead(out.results.read);
  }
  if (only.has('write')) {
    log('write path');
    out.results.write = await writeBench({ databaseUrl: smallDb, redisUrl, quick, variants, log });
    printWrite(out.results.write);
  }
  if (only.has('scale')) {
    log(`seeding ${largeName}: ${big.servers} servers / ${big.snapshots} snapshots`);
    const url = largeDb;
    const largeSeed = await seed(url, { ...big, benchServers: small.benchServers });
    log('scale');
    out.results.scale = await scaleBench({
      small: { url: smallDb, seed: smallSeed },
      large: { url, seed: largeSeed },
      redisUrl,
      quick,
      dir: appDir,
      log,
    });
    printScale(out.results.scale);
  }
  if (only.has('labels')) {
    // Not in the default set (seeds a million labelled snapshots of its own): --only=labels.
    const name = `bench_labels_${RUN_ID}`;
    dbs.push(name);
    const url = await createDatabase(admin, name);
    out.results.labels = await labelsBench({ url, redisUrl, quick, dir: appDir, log });
    printLabels(out.results.labels);
  }
  if (only.has('disk')) {
    log('disk path');
    try {
      out.results.disk = await diskBench({ appDir, quick, databaseUrl: smallDb, redisUrl, log });
      printDisk(out.results.disk);
    } catch (e) {
      // No libvirtd / qemu-img here: say so loudly and go on with the other benchmarks.
      out.results.disk = { skipped: String(e?.message ?? e) };
      console.log(`\n### Disk path: NOT RUN — ${out.results.disk.skipped}\n(needs qemu-img, virsh and a running libvirtd: WITH_LIBVIRT=1 bash scripts/services.sh start libvirt)`);
    }
  }
  if (only.has('backup')) {
    // Not in the default set (a full run takes 30–45 min here): --only=backup, or npm run bench:backup.
    log('backups');
    out.results.backup = await backupBench({ appDir, quick, adminUrl: admin, log });
    printBackup(out.results.backup);
    out.results.backup.disk.dataChunks = out.results.backup.disk.dataChunks.length;
  }
  if (only.has('memory')) {
    log('worker memory');
    // The builds side by side (--baseline=<ref> first); not the API's NODE_OPTIONS variant.
    const builds = [...baselines.map((b) => ({ name: b.sha, dir: b.dir })), { name: 'this build', dir: appDir }];
    out.results.memory = await workerMemoryBench({ databaseUrl: smallDb, redisUrl, quick, variants: builds, log });
    printMemory(out.results.memory);
  }
  if (only.has('queue')) {
    log('queue path');
    out.results.queue = [];
    for (const concurrency of quick ? [undefined] : [undefined, 16]) {
      const q = await queueBench({ databaseUrl: smallDb, redisUrl, seed: smallSeed, quick, dir: appDir, concurrency, log });
      out.results.queue.push(q);
      printQueue(q);
    }
  }
}

function printScale(s) {
  const [a, b] = [s.sizes.small, s.sizes.large];
  console.log(`\n### Scale: ${b.snapshots} snapshots / ${b.servers} servers against ${a.snapshots} / ${a.servers} (${s.rounds} rounds, medians)\n`);
  console.log('| case | HTTP p50 small | HTTP p50 large | large/small p50 | large/small req/s | SQL ms small | SQL ms large | SQL large/small |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const x of s.summary) {
    console.log(`| ${x.case} | ${x.httpP50Small} ms | ${x.httpP50Large} ms | ${fmt(x.httpRatio, 2)}× | ${fmt(x.rpsRatio, 2)}× | ${fmt(x.sqlMsSmall, 2)} | ${fmt(x.sqlMsLarge, 2)} | ${fmt(x.sqlRatio, 2)}× |`);
  }
  for (const [k, v] of Object.entries(s.plans)) console.log(`\n${k}:\n\n\`\`\`\n${v}\n\`\`\``);
}

function printLabels(l) {
  const z = l.sizes;
  console.log(`\n### Label selectors: ${z.snapshots} snapshots / ${z.servers} servers, account 1 has ${z.account1} (${l.rounds} rounds of ${l.duration} s, alternated, medians; max = worst round)\n`);
  console.log('| list | matches | HTTP p50 plain | HTTP p50 selector | selector/plain p50 (max) | req/s ratio | SQL ms plain | SQL ms selector | SQL selector/plain (max) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const x of l.summary) {
    console.log(`| ${x.case} | ${x.matches} | ${x.httpP50Plain} ms | ${x.httpP50} ms | ${fmt(x.httpRatio, 2)}× (${fmt(x.httpRatioMax, 2)}×) | ${fmt(x.rpsRatio, 2)}× | ${fmt(x.sqlMsPlain, 2)} | ${fmt(x.sqlMs, 2)} | ${fmt(x.sqlRatio, 2)}× (${fmt(x.sqlRatioMax, 2)}×) |`);
  }
  const classes = Object.keys(l.opclass);
  console.log(`\nSQL ms by label index (median of runs):\n`);
  console.log(`| query | ${classes.join(' | ')} |`);
  console.log(`|---|${classes.map(() => '---').join('|')}|`);
  for (const q of Object.keys(l.opclass[classes[0]].ms)) {
    console.log(`| ${q} | ${classes.map((c) => fmt(l.opclass[c].ms[q], 2)).join(' | ')} |`);
  }
  console.log(`| index size MiB / build s | ${classes.map((c) => `${fmt(l.opclass[c].bytes / 2 ** 20, 1)} / ${fmt(l.opclass[c].buildMs / 1000, 1)}`).join(' | ')} |`);
  for (const [k, v] of Object.entries(l.plans)) console.log(`\n${k}:\n\n\`\`\`\n${v}\n\`\`\`\n`);
}

function printDisk(d) {
  const s = d.summary;
  const load = (l) => l.map((x) => fmt(x, 1)).join(' ');
  const range = (x) => `${fmt(x.median, 2)}× (${fmt(x.min, 2)}–${fmt(x.max, 2)}, ${x.n} rounds)`;
  console.log(`\n### Disk path: ${fmt(s.imageActualMiB, 0)} MiB qcow2 of mixed data, ${d.rounds} rounds, load ${load(s.load[0])} → ${load(s.load[1])}\n`);
  console.log(`Every timed step starts from the same state: earlier unlinks committed, its source read once and then dropped from the page cache (at most ${fmt(s.sourceResidentMaxBytes / 2 ** 20, 1)} MiB of it left resident). Create is paired with cp of the disk, restore with cp of the snapshot.\n`);
  console.log('| measure | figure |\n|---|---|');
  console.log(`| create ÷ cp per round: median (min–max) | ${range(s.createVsCpSpread)} |`);
  console.log(`| restore ÷ cp per round: median (min–max) | ${range(s.restoreVsCpSpread)} |`);
  const place = (x) => `${fmt(x.first, 2)}× when both go first, ${fmt(x.second, 2)}× when both go second`;
  console.log(`| create ÷ cp, same place in the round | ${place(s.createVsCpByPlace)} |`);
  console.log(`| restore ÷ cp of the snapshot, same place in the round | ${place(s.restoreVsCpByPlace)} |`);
  console.log(`| cp + fsync of the disk / create / cp + fsync of the snapshot / restore, seconds: median (min–max) | ${[s.cpMsSpread, s.createMsSpread, s.cpSnapshotMsSpread, s.restoreMsSpread].map((x) => `${fmt(x.median / 1000, 2)} (${fmt(x.min / 1000, 2)}–${fmt(x.max / 1000, 2)})`).join(' / ')} |`);
  console.log(`| cp --sparse=always + fsync | ${fmt(s.cpMiBps, 0)} MiB/s |`);
  console.log(`| driver create (cp ∥ sha256 of the disk, under its image lock; check ∥ fsync; rename) | ${fmt(s.createMiBps, 0)} MiB/s = ${fmt(s.createVsCp, 2)}× cp |`);
  console.log(`| reference: bare qemu-img convert + fsync, alone | ${fmt(s.convertMiBps, 0)} MiB/s = ${fmt(s.convertVsCp, 2)}× cp |`);
  console.log(`| reference: sha256 pass over the fresh copy (page cache warm), alone | ${fmt(s.sha256WarmMiBps, 0)} MiB/s |`);
  console.log(`| driver restore (cp; sha256 of the copy ∥ check ∥ fsync; rename) | ${fmt(s.restoreMiBps, 0)} MiB/s = ${fmt(s.restoreVsCp, 2)}× cp of the snapshot |`);
  console.log(`| sparse ${fmt(s.sparseVirtualGiB, 0)} GiB disk (${fmt(s.sparseActualMiB, 0)} MiB allocated): create time / dense create time | ${fmt(s.sparseCreateVsDenseCreate, 2)}×, snapshot ${fmt(s.sparseSnapshotMiB, 0)} MiB |`);
  console.log(`| sparse: cp time / dense cp time | ${fmt(s.sparseCpVsDenseCp, 2)}× |`);
  console.log(`| zstd: ratio, create, restore | ${fmt(s.zstdRatio, 2)}:1, ${fmt(s.zstdCreateMiBps, 0)} MiB/s (${fmt(s.zstdCreateVsPlain, 2)}× plain), ${fmt(s.zstdRestoreMiBps, 0)} MiB/s |`);
  console.log(`| driver process RSS (min → max while copying) / its tools' RSS max (cp, qemu-io, qemu-img) | ${fmt(s.driverNodeRssMinMB, 0)} → ${fmt(s.driverNodeRssMaxMB, 0)} MB / ${fmt(s.qemuImgRssMaxMB, 0)} MB |`);
  if (d.worker) {
    const w = d.worker;
    console.log(`| worker process, real create of a ${fmt(d.big.actual / 2 ** 30, 2)} GiB image (${w.status}, ${fmt(w.seconds, 1)} s): RSS after start-up → max | ${fmt(w.rssStartMB, 0)} → ${fmt(w.rssMaxMB, 0)} MB (its tools ${fmt(w.qemuImgRssMaxMB, 0)} MB) |`);
  }
}

function printMemory(m) {
  const what =
    m.driver === 'libvirt'
      ? `real libvirt create of a ${fmt(m.imageBytes / 2 ** 30, 2)} GiB qcow2 (cp under qemu-io's image lock copies it)`
      : 'FAKE driver (no libvirt here): a simulated 40 s copy, no bytes copied';
  console.log(`\n### Worker RSS: \`node dist/main.js worker\`, idle ${m.idleSeconds} s then a ${what}; ${m.rounds} rounds, A B A B, medians\n`);
  console.log('| build | idle (last 3 s) | idle max | during the job: median | max | job s | its tools max (cp, qemu-io, qemu-img) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const s of m.summary) {
    console.log(`| ${s.variant} | ${fmt(s.idleMB, 0)} MB | ${fmt(s.idleMaxMB, 0)} MB | ${fmt(s.jobMedianMB, 0)} MB | ${fmt(s.jobMaxMB, 0)} MB | ${fmt(s.jobSeconds, 1)} | ${fmt(s.qemuImgMaxMB, 0)} MB |`);
  }
}

function printQueue(q) {
  console.log(`\n### Queue path: ${q.operations} creates over ${q.servers} servers × ${q.rounds} rounds, WORKER_CONCURRENCY=${q.workerConcurrency}\n`);
  console.log('| measure | figure |\n|---|---|');
  console.log(`| accept→completed p50 / p99 (DB timestamps) | ${fmt(q.serverSide.p50)} / ${fmt(q.serverSide.p99)} ms |`);
  console.log(`| accept→completed p50 / p99 (client, 5 ms poll) | ${fmt(q.clientSide.p50)} / ${fmt(q.clientSide.p99)} ms |`);
  console.log(`| queue wait (created→started) p50 | ${fmt(q.serverSide.queueWaitP50)} ms |`);
  console.log(`| POST p50 / p99 | ${fmt(q.clientSide.postP50)} / ${fmt(q.clientSide.postP99)} ms |`);
  console.log(`| sustained operations/s | ${fmt(q.opsPerSecond)} (${q.operations} in ${fmt(q.wallSeconds)} s) |`);
  console.log(`| failed / refused | ${q.failures} / ${q.refused} |`);
  console.log(`| RSS max API / worker | ${fmt(q.rssMB.apiMax, 0)} / ${fmt(q.rssMB.workerMax, 0)} MB |`);
  const c = q.cpuMsPerOperation;
  if (c) {
    console.log(`| CPU ms per operation: API / worker / Postgres / Redis = service | ${fmt(c.api, 2)} / ${fmt(c.worker, 2)} / ${fmt(c.postgres, 2)} / ${fmt(c.redis, 2)} = ${fmt(c.service, 2)} ms |`);
    console.log(`| CPU ms per operation: load generator / whole machine | ${fmt(c.loadGenerator, 2)} / ${fmt(c.machine, 2)} ms |`);
    console.log(`| ceiling on this machine (cores ÷ service CPU per operation) | ${fmt(c.ceilingOpsPerSecond, 0)} operations/s |`);
  }
}

function printWrite(w) {
  console.log(`\n### Write path: POST /api/v1/snapshots/ → 201 (${w.rounds} rounds × ${w.duration} s, ${w.connections} connections, medians)\n`);
  console.log('| build | req/s | p50 ms | p99 ms | not 201 | API req/s ÷ this build\'s (per-round ratios) |');
  console.log('|---|---|---|---|---|---|');
  for (const r of w.rows) {
    console.log(`| ${r.name} | ${fmt(r.rps, 0)} | ${r.p50} | ${r.p99} | ${r.bad}${r.bad ? ` ${JSON.stringify(r.why)}` : ''} | ${fmt(r.apiOverThis, 2)}× (${r.ratios.map((x) => fmt(1 / x, 2)).join(', ')}) |`);
  }
}

function printRead(r) {
  console.log(`\n### Read path (${r.rounds} rounds × ${r.duration} s, ${r.connections} connections, medians)\n`);
  const head = ['case', 'bytes', 'bare req/s', 'bare p99 ms'];
  for (const v of r.variants) head.push(`${v} req/s`, `${v} ratio`, `${v} p50 ms`, `${v} p99 ms`, `${v} errors`);
  console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  for (const x of r.rows) {
    const cells = [x.case, x.bytes, fmt(x.bareRps, 0), x.bareP99];
    for (const v of r.variants) {
      const s = x.sides[v];
      cells.push(...(s ? [fmt(s.rps, 0), `${fmt(s.ratio * 100, 1)} %`, s.p50, s.p99, s.bad] : ['–', '–', '–', '–', '–']));
    }
    console.log(`| ${cells.join(' | ')} |`);
  }
  console.log(`\nAPI RSS after start-up → max under the read benchmark: ${r.rss.map((x) => `${x.name} ${fmt(x.idleMB, 0)} → ${fmt(x.maxMB, 0)} MB`).join(', ')}`);
}

try {
  await main();
} finally {
  if (!args.includes('--keep')) for (const d of dbs) await dropDatabase(admin, d).catch(() => undefined);
  await cleanRedis(redisUrl).catch((e) => log(`redis clean-up failed: ${e}`));
  const dir = path.join(ROOT, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${quick ? 'quick' : 'full'}-${out.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2));
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${path.relative(ROOT, file)}`);
}
