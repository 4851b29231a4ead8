/* global performance, Buffer */
// Target 5, worker half: the RSS of the real worker process (`node dist/main.js worker`, started exactly
// as production: no extra node flags) right after start-up while idle, and while it runs a create of a
// multi-GiB image, for each build side by side (A B A B …, medians). The real libvirt driver when
// libvirtd and qemu-img answer (real bytes: qemu-img streams the copy, the worker reads its progress);
// otherwise the fake driver with a slow simulated copy, said loudly in the result (no bytes copied).
//
//   npm run bench -- --only=memory [--quick] [--baseline=main]
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineDomain, sh, undefineDomain } from './libvirt-lab.mjs';
import { GiB, MiB, RUN_ID, median, rssOf, sleep, startRole, stop, withClient, quiet } from './lib.mjs';


function libvirtUsable() {
  try {
    sh('qemu-img', ['--version']);
    sh('virsh', ['-c', 'qemu:///system', 'version']);
    return true;
  } catch {
    return false;
  }
}

/** A qcow2 image with `data` bytes of mixed content: 45 % random, 40 % text, 15 % zero blocks. */
function makeImage(file, data) {
  const raw = `${file}.raw`;
  const fd = fs.openSync(raw, 'w');
  fs.ftruncateSync(fd, data);
  const line = (k, n) => `2026-11-28T02:${String(n % 60).padStart(2, '0')}:00Z host-${k % 97} sshd[${1000 + n}]: accepted\n`;
  for (let k = 0; k < data / MiB; k++) {
    const kind = k % 20;
    let buf;
    if (kind < 9) buf = crypto.randomBytes(MiB);
    else if (kind < 17) {
      const parts = [];
      let len = 0;
      for (let n = 0; len < MiB; n++) {
        const l = line(k, n);
        parts.push(l);
        len += l.length;
      }
      buf = Buffer.from(parts.join('').slice(0, MiB));
    } else continue; // a hole: reads back as zeros
    fs.writeSync(fd, buf, 0, MiB, k * MiB);
  }
  fs.closeSync(fd);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, file]);
  fs.rmSync(raw);
  return JSON.parse(sh('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', file]))['actual-size'];
}

/** Largest RSS among the processes descending from pid (qemu-img), or 0. */
function childrenRss(pid) {
  let max = 0;
  const walk = (p) => {
    for (const t of fs.readdirSync(`/proc/${p}/task`)) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.trim().split(/\s+/).filter(Boolean)) {
        max = Math.max(max, rssOf(Number(k)) ?? 0);
        walk(Number(k));
      }
    }
  };
  try {
    walk(pid);
  } catch {
    /* raced with an exit */
  }
  return max;
}

/**
 * One worker run: start the worker (its own node and queue prefix), sample its RSS every 100 ms while it
 * sits idle for `idleMs`, then write a pending create action (the worker's dispatcher picks it up, as it
 * does an action whose enqueue was lost) and sample until the action ends; then SIGTERM.
 */
async function runOnce({ dir, databaseUrl, redisUrl, driver, disk, domain, snapDir, idleMs, tag }) {
  const nodeName = `bench-mem-${RUN_ID}-${tag}`;
  const ids = await withClient(databaseUrl, async (c) => {
    const node = await c.query(
      `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots) VALUES ($1, $2, $3, $4, ARRAY[$5::varchar]) RETURNING id`,
      [nodeName, driver, driver === 'libvirt' ? 'qemu:///system' : 'fake://', snapDir, disk.slice(0, disk.lastIndexOf('/'))],
    );
    const server = await c.query(
      `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path)
       VALUES (1, $1, 'bench-mem', 'stopped', $2, $3) RETURNING id`,
      [node.rows[0].id, domain, disk],
    );
    return { server: server.rows[0].id };
  });
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: `benchw${RUN_ID}`, // cleaned up by lib.mjs cleanRedis
    WORKER_NODE: nodeName,
    LOG_LEVEL: 'info', // production's default level
    // The fake copy: 40 s, with progress reports on the way (the fake driver's default steps).
    ...(driver === 'fake' ? { FAKE_DRIVER_DELAY_MS: '40000' } : {}),
  };
  const t0 = performance.now();
  const worker = await startRole('worker', env, dir);
  const samples = [];
  const qemu = [];
  const sample = (phase) => {
    samples.push({ t: performance.now() - t0, phase, rss: rssOf(worker.child.pid) ?? 0 });
    const q = childrenRss(worker.child.pid);
    if (q) qemu.push(q);
  };
  let status = null;
  let copyStart = null;
  try {
    while (performance.now() - t0 < idleMs) {
      sample('idle');
      await sleep(100);
    }
    const action = await withClient(databaseUrl, async (c) => {
      const snap = await c.query(
        `INSERT INTO snapshots (account_id, server_id, name) VALUES (1, $1, 'mem') RETURNING id`,
        [ids.server],
      );
      const a = await c.query(
        `INSERT INTO actions (kind, account_id, server_id, snapshot_id, server_status_before, created_at)
         VALUES ('create_snapshot', 1, $1, $2, 'stopped', now() - interval '5 seconds') RETURNING id`,
        [ids.server, snap.rows[0].id],
      );
      return a.rows[0].id;
    });
    copyStart = performance.now();
    for (let i = 0; performance.now() - copyStart < 900_000; i++) {
      sample('job');
      if (i % 5 === 0) {
        status = await withClient(databaseUrl, async (c) =>
          (await c.query(`SELECT status::text AS s FROM actions WHERE id = $1`, [action])).rows[0].s,
        );
        if (status === 'succeeded' || status === 'failed') break;
      }
      await sleep(100);
    }
  } finally {
    await stop(worker.child);
  }
  if (status !== 'succeeded') throw new Error(`worker create ${status ?? 'did not finish'}: ${worker.child.stderrTail()}`);
  const idle = samples.filter((s) => s.phase === 'idle' && s.t >= idleMs - 3000).map((s) => s.rss);
  const job = samples.filter((s) => s.phase === 'job').map((s) => s.rss);
  return {
    idleMB: median(idle) / MiB, // the last 3 s of the idle phase: "right after start-up"
    idleMaxMB: Math.max(...samples.filter((s) => s.phase === 'idle').map((s) => s.rss)) / MiB,
    jobMedianMB: median(job) / MiB,
    jobMaxMB: Math.max(...job) / MiB,
    jobSeconds: (performance.now() - copyStart) / 1000,
    qemuImgMaxMB: qemu.length ? Math.max(...qemu) / MiB : 0,
    exitCode: worker.child.exitCode,
  };
}

/** variants: [{ name, dir }] — builds measured side by side, in alternation, `rounds` times each. */
export async function workerMemoryBench({ databaseUrl, redisUrl, quick, variants, log = quiet }) {
  const driver = libvirtUsable() ? 'libvirt' : 'fake';
  // --quick: one round when there is nothing to alternate with, and a shorter idle phase (under 2 min in all).
  const rounds = quick ? (variants.length > 1 ? 2 : 1) : 4;
  const idleMs = quick ? 5000 : 8000;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-wmem-'));
  const domain = `bench-wmem-${RUN_ID}`;
  const disk = path.join(work, 'big.qcow2');
  const res = { driver, rounds, idleSeconds: idleMs / 1000, runs: [], imageBytes: null };
  try {
    if (driver === 'libvirt') {
      const data = (quick ? 1 : 3) * GiB;
      log(`memory: writing a ${data / GiB} GiB qcow2 of mixed data`);
      res.imageBytes = makeImage(disk, data);
      defineDomain(domain, disk);
    } else {
      log('memory: NO libvirt/qemu-img here: fake driver, simulated 40 s copy, no bytes copied');
    }
    for (let r = 0; r < rounds; r++) {
      for (const [i, v] of variants.entries()) {
        const snapDir = path.join(work, `snaps-${r}-${i}`);
        log(`memory: round ${r + 1}/${rounds}, ${v.name}`);
        const run = await runOnce({ dir: v.dir, databaseUrl, redisUrl, driver, disk, domain, snapDir, idleMs, tag: `${r}-${i}` });
        fs.rmSync(snapDir, { recursive: true, force: true });
        res.runs.push({ variant: v.name, round: r, ...run });
      }
    }
  } finally {
    if (driver === 'libvirt') undefineDomain(domain);
    fs.rmSync(work, { recursive: true, force: true });
  }
  const of = (name, key) => median(res.runs.filter((x) => x.variant === name).map((x) => x[key]));
  res.summary = variants.map((v) => ({
    variant: v.name,
    idleMB: of(v.name, 'idleMB'),
    idleMaxMB: of(v.name, 'idleMaxMB'),
    jobMedianMB: of(v.name, 'jobMedianMB'),
    jobMaxMB: of(v.name, 'jobMaxMB'),
    jobSeconds: of(v.name, 'jobSeconds'),
    qemuImgMaxMB: of(v.name, 'qemuImgMaxMB'),
  }));
  return res;
}
