/* global performance, Buffer */
// Target 3 (and the worker half of target 5): the real libvirt driver on a real qcow2 image with mixed
// data, against `cp --sparse=always` (+ fsync, as the driver fsyncs) of the same image in the same run,
// alternated, every timed step starting from the same settled state (see settle()). Also: a sparse disk
// (20 GiB virtual, 1 GiB data) against the dense one, and the zstd option's ratio and speed.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { defineDomain, sh, undefineDomain } from './libvirt-lab.mjs';
import {
  GiB,
  MiB,
  ROOT,
  buildRef,
  median,
  rssOf,
  sampleUntilActionEnds,
  sleep,
  startRole,
  stop,
  withClient,
  quiet,
} from './lib.mjs';

/**
 * Puts the file system and `files` (the step's source) in the state every timed step starts from,
 * whichever side it is:
 * - earlier unlinks committed: this ext4 is mounted with online discard, blocks freed by an unlink are
 *   discarded when the journal commits, and an fsync that lands on that commit waits for the discards
 *   of copies removed before it — whichever side happened to remove them;
 * - `files` read once, then dropped from this machine's page cache. The read warms whatever caches
 *   the virtual disk has below this machine, which nothing here can empty: a file not read for a
 *   while took 2.0 s to copy, the same file 0.4–0.9 s on the next reads, each time cold in this
 *   machine's page cache. Then only these files are dropped (posix_fadvise DONTNEED through
 *   `dd iflag=nocache`), never the whole page cache, which other work shares.
 * Returns the page-cache residency of `files` afterwards (0 when cold).
 */
export function settle(dir, ...files) {
  sh('sync', ['-f', dir]);
  let resident = 0;
  for (const f of files) {
    sh('dd', [`if=${f}`, 'of=/dev/null', 'bs=4M', 'status=none']);
    sh('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    resident += residentBytes(f);
  }
  return resident;
}

/** Bytes of `file` in the page cache (util-linux fincore). */
function residentBytes(file) {
  const out = sh('fincore', ['--bytes', '--noheadings', '--output=RES', file]).trim();
  return Number(out) || 0;
}

/** Waits until `file` is gone (the driver unlinks a replaced disk after its restore has returned). */
export async function gone(file) {
  for (let i = 0; i < 600 && fs.existsSync(file); i++) await sleep(50);
}

/**
 * cp ÷ driver time with both in the same place of their rounds: `cpFirstRound` is the parity of the
 * rounds in which `cp` runs first (the driver first in the others).
 */
function byPlace(runs, cpKey, opKey, cpFirstRound) {
  const cpFirst = runs.filter((r) => r.round % 2 === cpFirstRound);
  const opFirst = runs.filter((r) => r.round % 2 !== cpFirstRound);
  return {
    first: median(cpFirst.map((r) => r[cpKey])) / median(opFirst.map((r) => r[opKey])),
    second: median(opFirst.map((r) => r[cpKey])) / median(cpFirst.map((r) => r[opKey])),
  };
}

/** Spread of a list: median and range, for the per-round and per-run ratios. */
export function spread(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/** Text-like, compressible bytes (a log), different in every chunk. */
function textChunk(i, size) {
  let s = '';
  let n = 0;
  while (s.length < size) {
    s += `2026-11-28T02:${String(n % 60).padStart(2, '0')}:00Z host-${i % 97} sshd[${1000 + (n % 5000)}]: accepted publickey for user${n % 13} from 10.${i % 250}.${n % 250}.7 port ${40000 + (n % 20000)}\n`;
    n++;
  }
  return Buffer.from(s.slice(0, size));
}

/**
 * Writes a raw file of `virtual` bytes with `data` bytes of mixed content at `pieces` places (45 % random,
 * 40 % text, 15 % zero blocks inside the data), then converts it to qcow2 and removes the raw file.
 */
function makeImage(file, { virtual, data, pieces }) {
  const raw = `${file}.raw`;
  const fd = fs.openSync(raw, 'w');
  fs.ftruncateSync(fd, virtual);
  const chunk = MiB;
  const perPiece = Math.floor(data / pieces / chunk);
  const stride = Math.floor(virtual / pieces / chunk) * chunk;
  let k = 0;
  for (let p = 0; p < pieces; p++) {
    for (let c = 0; c < perPiece; c++, k++) {
      const kind = k % 20;
      const buf =
        kind < 9 ? crypto.randomBytes(chunk) : kind < 17 ? textChunk(k, chunk) : Buffer.alloc(chunk);
      fs.writeSync(fd, buf, 0, chunk, p * stride + c * chunk);
    }
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, file]);
  fs.rmSync(raw);
  return imageInfo(file);
}

export function imageInfo(file) {
  const j = JSON.parse(sh('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', file]));
  return { virtual: j['virtual-size'], actual: j['actual-size'] };
}

/** qemu-img processes descending from pid, with their RSS. */
function descendants(pid) {
  const out = [];
  const walk = (p) => {
    for (const t of fs.readdirSync(`/proc/${p}/task`, { withFileTypes: true })) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${t.name}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.trim().split(/\s+/).filter(Boolean)) {
        out.push(Number(k));
        walk(Number(k));
      }
    }
  };
  try {
    walk(pid);
  } catch {
    /* raced */
  }
  return out;
}

class DriverProcess {
  constructor(appDir, imageRoot) {
    this.child = spawn(process.execPath, [path.join(ROOT, 'bench/disk-child.mjs'), appDir, imageRoot], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    this.rss = { node: [], qemu: [] };
  }
  async call(cmd) {
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const samples = { node: [], qemu: [] };
    let done = false;
    const sampler = (async () => {
      while (!done) {
        samples.node.push(rssOf(this.child.pid) ?? 0);
        const q = descendants(this.child.pid).map((p) => rssOf(p) ?? 0);
        if (q.length) samples.qemu.push(Math.max(...q));
        await sleep(50);
      }
    })();
    const { value } = await this.lines.next();
    done = true;
    await sampler;
    const r = JSON.parse(value);
    if (!r.ok) throw new Error(`${cmd.op}: ${r.error}`);
    r.nodeRssMax = Math.max(0, ...samples.node);
    r.nodeRssMin = samples.node.length ? Math.min(...samples.node) : 0;
    r.qemuRssMax = Math.max(0, ...samples.qemu);
    return r;
  }
  async close() {
    this.child.stdin.end();
    await new Promise((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', r)));
  }
}

async function sha256(file) {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB })) h.update(chunk);
  return h.digest('hex');
}

function timeCp(src, dst) {
  fs.rmSync(dst, { force: true });
  const t0 = performance.now();
  sh('cp', ['--sparse=always', src, dst]);
  sh('sync', [dst]); // fsync the copy, as the driver fsyncs its file
  return performance.now() - t0;
}

export async function diskBench({ appDir, quick, databaseUrl, redisUrl, log = quiet }) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-disk-'));
  const name = `bench-disk-${process.pid}`;
  const dense = path.join(work, 'dense.qcow2');
  const sparse = path.join(work, 'sparse.qcow2');
  const snapDir = path.join(work, 'snapshots');
  const dataBytes = quick ? 128 * MiB : 1 * GiB;
  const sparseVirtual = quick ? 2 * GiB : 20 * GiB;
  // --disk-rounds=N: more alternations where the machine is noisy (medians over more rounds). Always
  // even, so each side goes first equally often: going first costs a copy up to 1.6 s here (docs/benchmarks.md, *3*).
  const roundsArg = process.argv.find((a) => a.startsWith('--disk-rounds='));
  const asked = roundsArg ? Math.max(1, Number(roundsArg.slice(14)) || 1) : quick ? 2 : 4;
  const rounds = asked + (asked % 2);
  const drv = new DriverProcess(appDir, work);
  // The driver's own hashing function (this build), for the reference row next to a plain stream pass.
  const driverSha256File = createRequire(import.meta.url)(
    path.join(appDir, 'dist/hypervisor/libvirt/files.js'),
  ).sha256File;
  // --baseline=<ref>: that build's driver too, in a process of its own, alternated with this one.
  const baseArg = process.argv.find((a) => a.startsWith('--baseline='));
  const base = baseArg ? buildRef(baseArg.slice(11).split(',')[0], log) : null;
  const baseDrv = base ? new DriverProcess(base.dir, work) : null;
  const res = {
    dataBytes,
    rounds,
    residentMax: 0,
    load: [os.loadavg()],
    runs: [],
    baseline: base?.sha ?? null,
  };
  // Every timed step starts from the same state: the file system settled and its source cold (see settle).
  const cold = (...files) => {
    res.residentMax = Math.max(res.residentMax, settle(work, ...files));
  };
  const snapFile = (snap) => path.join(snapDir, `${snap.id}.qcow2`);
  // The driver unlinks the disk a restore replaced after the restore has returned: not part of the
  // restore's time, but it must be done before the next step is timed.
  const replacedDisk = `${dense}.replaced`;
  try {
    log(`disk: writing ${dataBytes / MiB} MiB mixed image and a ${sparseVirtual / GiB} GiB sparse one`);
    res.dense = makeImage(dense, { virtual: dataBytes, data: dataBytes, pieces: 1 });
    res.sparse = makeImage(sparse, { virtual: sparseVirtual, data: dataBytes, pieces: 16 });
    const server = { id: 1, domain: name, domainUuid: defineDomain(name, dense), diskPath: dense };
    const sparseServer = {
      id: 2,
      domain: `${name}-s`,
      domainUuid: defineDomain(`${name}-s`, sparse),
      diskPath: sparse,
    };
    await drv.call({ op: 'state', server }); // first virsh call pays libvirt's probe, outside the timing
    if (baseDrv) await baseDrv.call({ op: 'state', server });
    let id = 1;
    const cpCopy = path.join(work, 'cp-copy.qcow2');
    for (let round = 0; round < rounds; round++) {
      log(`disk round ${round + 1}/${rounds}`);
      const steps = baseDrv ? ['cp', 'driver', 'baseline'] : ['cp', 'driver'];
      if (round % 2) steps.reverse();
      const run = { round };
      for (const step of steps) {
        if (step === 'cp') {
          cold(dense);
          run.cpMs = timeCp(dense, cpCopy);
          fs.rmSync(cpCopy, { force: true });
          cold(sparse);
          run.cpSparseMs = timeCp(sparse, cpCopy);
          fs.rmSync(cpCopy, { force: true });
          // Where the driver's time goes: the bare qemu-img convert (+ fsync), and a sha256 pass over
          // the result (its integrity manifest), each measured alone.
          cold(dense);
          const cv = path.join(work, 'cv.qcow2');
          const t0 = performance.now();
          sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', dense, cv]);
          sh('sync', [cv]);
          run.convertMs = performance.now() - t0;
          const t1 = performance.now();
          await sha256(cv);
          run.sha256WarmMs = performance.now() - t1;
          if (driverSha256File) {
            const t2 = performance.now();
            await driverSha256File(cv);
            run.sha256DriverWarmMs = performance.now() - t2;
          }
          fs.rmSync(cv, { force: true });
        } else if (step === 'baseline') {
          const snap = { id: id++, snapshotDir: snapDir };
          cold(dense);
          run.baseCreateMs = (await baseDrv.call({ op: 'create', server, snap })).ms;
          cold(snapFile(snap));
          run.baseRestoreMs = (await baseDrv.call({ op: 'restore', server, snap })).ms;
          await gone(replacedDisk);
          await baseDrv.call({ op: 'delete', server, snap });
        } else {
          const snap = { id: id++, snapshotDir: snapDir };
          cold(dense);
          const c = await drv.call({ op: 'create', server, snap });
          run.createMs = c.ms;
          run.snapshotActual = imageInfo(snapFile(snap)).actual;
          run.rss = { createNode: c.nodeRssMax, createNodeMin: c.nodeRssMin, createQemu: c.qemuRssMax };
          // The restore beside a cp of the same file (the snapshot), in alternating order: where a file
          // lies and when it was last read move a copy's time more than anything the driver does.
          const cpSnapshot = () => {
            cold(snapFile(snap));
            run.cpSnapshotMs = timeCp(snapFile(snap), cpCopy);
            fs.rmSync(cpCopy, { force: true });
          };
          if (round % 2) cpSnapshot();
          cold(snapFile(snap));
          const r = await drv.call({ op: 'restore', server, snap });
          run.restoreMs = r.ms;
          run.rss.restoreNode = r.nodeRssMax;
          run.rss.restoreQemu = r.qemuRssMax;
          await gone(replacedDisk);
          if (round % 2 === 0) cpSnapshot();
          await drv.call({ op: 'delete', server, snap });
          const ssnap = { id: id++, snapshotDir: snapDir };
          cold(sparse);
          const s = await drv.call({ op: 'create', server: sparseServer, snap: ssnap });
          run.sparseCreateMs = s.ms;
          run.sparseSnapshotActual = imageInfo(snapFile(ssnap)).actual;
          await drv.call({ op: 'delete', server: sparseServer, snap: ssnap });
        }
      }
      res.runs.push(run);
    }
    res.load.push(os.loadavg());
    log('disk: zstd');
    const zsnap = { id: id++, snapshotDir: snapDir };
    cold(dense);
    const z = await drv.call({ op: 'create', server, snap: zsnap, compression: 'zstd' });
    res.zstd = { createMs: z.ms, actual: imageInfo(path.join(snapDir, `${zsnap.id}.qcow2`)).actual };
    cold(snapFile(zsnap));
    const zr = await drv.call({ op: 'restore', server, snap: zsnap, compression: 'zstd' });
    res.zstd.restoreMs = zr.ms;
    await gone(replacedDisk);
    await drv.call({ op: 'delete', server, snap: zsnap });
    if (databaseUrl) {
      log('disk: worker RSS during a real create (the worker process, libvirt node)');
      let big = dense;
      if (!quick) {
        big = path.join(work, 'big.qcow2');
        res.big = makeImage(big, { virtual: 3 * GiB, data: 3 * GiB, pieces: 1 });
      } else res.big = res.dense;
      defineDomain(`${name}-w`, big);
      res.worker = await workerMemory({
        databaseUrl,
        redisUrl,
        appDir,
        domain: `${name}-w`,
        disk: big,
        snapDir: path.join(work, 'wsnaps'),
      });
      undefineDomain(`${name}-w`);
    }
  } finally {
    await drv.close();
    await baseDrv?.close();
    undefineDomain(`${name}-w`);
    undefineDomain(name);
    undefineDomain(`${name}-s`);
    fs.rmSync(work, { recursive: true, force: true });
  }
  const runs = res.runs;
  const mbps = (bytes, ms) => bytes / MiB / (ms / 1000);
  const copied = res.dense.actual;
  res.summary = {
    imageActualMiB: copied / MiB,
    cpMiBps: median(runs.map((r) => mbps(copied, r.cpMs))),
    createMiBps: median(runs.map((r) => mbps(copied, r.createMs))),
    restoreMiBps: median(runs.map((r) => mbps(copied, r.restoreMs))),
    createVsCp: median(runs.map((r) => r.cpMs / r.createMs)),
    convertMiBps: median(runs.map((r) => mbps(copied, r.convertMs))),
    convertVsCp: median(runs.map((r) => r.cpMs / r.convertMs)),
    sha256WarmMiBps: median(runs.map((r) => mbps(copied, r.sha256WarmMs))),
    sha256DriverWarmMiBps: median(runs.map((r) => mbps(copied, r.sha256DriverWarmMs))),
    restoreVsCp: median(runs.map((r) => r.cpSnapshotMs / r.restoreMs)),
    sparseVirtualGiB: res.sparse.virtual / GiB,
    sparseActualMiB: res.sparse.actual / MiB,
    sparseCreateVsDenseCreate: median(runs.map((r) => r.sparseCreateMs / r.createMs)),
    sparseSnapshotMiB: median(runs.map((r) => r.sparseSnapshotActual / MiB)),
    sparseCpVsDenseCp: median(runs.map((r) => r.cpSparseMs / r.cpMs)),
    zstdRatio: copied / res.zstd.actual,
    zstdCreateMiBps: mbps(copied, res.zstd.createMs),
    zstdRestoreMiBps: mbps(copied, res.zstd.restoreMs),
    zstdCreateVsPlain: median(runs.map((r) => r.createMs)) / res.zstd.createMs,
    driverNodeRssMaxMB: Math.max(...runs.map((r) => Math.max(r.rss.createNode, r.rss.restoreNode))) / MiB,
    driverNodeRssMinMB: Math.min(...runs.map((r) => r.rss.createNodeMin)) / MiB,
    qemuImgRssMaxMB: Math.max(...runs.map((r) => Math.max(r.rss.createQemu, r.rss.restoreQemu))) / MiB,
    createVsCpSpread: spread(runs.map((r) => r.cpMs / r.createMs)),
    restoreVsCpSpread: spread(runs.map((r) => r.cpSnapshotMs / r.restoreMs)),
    // Each side against the other in the same place of the round (both first, or both second).
    createVsCpByPlace: byPlace(runs, 'cpMs', 'createMs', 0),
    restoreVsCpByPlace: byPlace(runs, 'cpSnapshotMs', 'restoreMs', 1),
    cpSnapshotMsSpread: spread(runs.map((r) => r.cpSnapshotMs)),
    cpMsSpread: spread(runs.map((r) => r.cpMs)),
    createMsSpread: spread(runs.map((r) => r.createMs)),
    restoreMsSpread: spread(runs.map((r) => r.restoreMs)),
    load: res.load,
    sourceResidentMaxBytes: res.residentMax,
  };
  console.log(
    `\n(disk: the driver's own sha256 pass — files.ts sha256File — over the same warm copy: ${res.summary.sha256DriverWarmMiBps.toFixed(0)} MiB/s, against ${res.summary.sha256WarmMiBps.toFixed(0)} MiB/s for a 1 MiB read stream)`,
  );
  if (baseDrv) {
    const b = {
      baseCreateVsCp: median(runs.map((r) => r.cpMs / r.baseCreateMs)),
      baseRestoreVsCp: median(runs.map((r) => r.cpMs / r.baseRestoreMs)),
      createVsBase: median(runs.map((r) => r.baseCreateMs / r.createMs)),
      restoreVsBase: median(runs.map((r) => r.baseRestoreMs / r.restoreMs)),
    };
    Object.assign(res.summary, b);
    const f = (x) => x.toFixed(2);
    console.log(
      `\n### Disk path: this build side by side with ${base.sha} (${rounds} rounds, alternated, medians)\n`,
    );
    console.log(`| measure | ${base.sha} | this build | speed-up |\n|---|---|---|---|`);
    console.log(
      `| create ÷ cp | ${f(b.baseCreateVsCp)}× | ${f(res.summary.createVsCp)}× | ${f(b.createVsBase)}× |`,
    );
    console.log(
      `| restore ÷ cp | ${f(b.baseRestoreVsCp)}× | ${f(res.summary.restoreVsCp)}× | ${f(b.restoreVsBase)}× |`,
    );
  }
  return res;
}

/**
 * The real worker process (production build, libvirt node) copying a multi-GiB image: a pending create
 * action is written to the database and the worker's dispatcher picks it up. RSS of the worker (and of
 * its qemu-img) sampled every 100 ms from start to the action's end.
 */
async function workerMemory({ databaseUrl, redisUrl, appDir, domain, disk, snapDir }) {
  const nodeName = `bench-lv-${process.pid}`;
  const ids = await withClient(databaseUrl, async (c) => {
    const node = await c.query(
      `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots)
       VALUES ($1, 'libvirt', 'qemu:///system', $2, ARRAY[$3::varchar]) RETURNING id`,
      [nodeName, snapDir, disk.slice(0, disk.lastIndexOf('/'))],
    );
    const server = await c.query(
      `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path) VALUES (1, $1, 'bench-big', 'stopped', $2, $3) RETURNING id`,
      [node.rows[0].id, domain, disk],
    );
    const snap = await c.query(
      `INSERT INTO snapshots (account_id, server_id, name) VALUES (1, $1, 'big') RETURNING id`,
      [server.rows[0].id],
    );
    const action = await c.query(
      `INSERT INTO actions (kind, account_id, server_id, snapshot_id, server_status_before, created_at)
       VALUES ('create_snapshot', 1, $1, $2, 'stopped', now() - interval '5 seconds') RETURNING id`,
      [server.rows[0].id, snap.rows[0].id],
    );
    return { action: action.rows[0].id };
  });
  settle(path.dirname(disk), disk);
  const worker = await startRole(
    'worker',
    {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: `benchw${process.pid}`,
      WORKER_NODE: nodeName,
      DISPATCH_INTERVAL_MS: '200',
    },
    appDir,
  );
  const qemu = [];
  let run;
  try {
    run = await sampleUntilActionEnds({
      databaseUrl,
      actionId: ids.action,
      pid: worker.child.pid,
      timeoutMs: 600_000,
      each: (pid) => {
        const q = descendants(pid).map((p) => rssOf(p) ?? 0);
        if (q.length) qemu.push(Math.max(...q));
      },
    });
  } finally {
    await stop(worker.child);
  }
  const { samples, status, seconds } = run;
  const copying = samples.filter((_, i) => i >= 10); // after the first second (start-up)
  return {
    status,
    seconds,
    rssStartMB: samples[Math.min(9, samples.length - 1)]?.rss / MiB,
    rssMaxMB: Math.max(...samples.map((x) => x.rss)) / MiB,
    rssMinWhileCopyingMB: copying.length ? Math.min(...copying.map((x) => x.rss)) / MiB : null,
    qemuImgRssMaxMB: qemu.length ? Math.max(...qemu) / MiB : 0,
  };
}
