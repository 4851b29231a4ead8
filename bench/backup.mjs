/* global performance, setInterval, clearInterval */
// Issue 17 "Performance": the backup data path of this build (ChunkedBackupDataPath, the libvirt
// driver's offline read session and restoreDiskFrom, the directory store and the S3 store on the
// running Ceph) on a real sparse qcow2 disk, each figure side by side with its plain limit in the same
// run, alternated (the order flips every round), medians and ranges of the per-round ratios.
//
//   npm run bench:backup                      # or: npm run bench -- --only=backup
//   npm run bench:backup -- --quick           # 2 GiB disk with 256 MiB of data, 16 MiB changed
//   npm run bench:backup -- --backup-rounds=6
//   npm run bench:backup -- --baseline=main   # that build's data path too, alternated with this one's
//                                              # in the full backup/restore rounds and the stages part
//
// Everything it makes is removed at the end: its database bench_backup_<pid>, the work directory
// (disk, store, copies), the libvirt domain bench-backup-<pid> (checkpoint records included), the S3
// bucket bench-backup-<pid>, the worker's Redis keys (prefix benchw<pid>). What a killed run left (its
// domain, database and work directory) the next run removes at its start.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { gone, imageInfo, settle, spread } from './disk.mjs';
import { defineDomain, sh } from './libvirt-lab.mjs';
import {
  GiB,
  MiB,
  ROOT,
  buildApp,
  buildRef,
  cleanRedis,
  createDatabase,
  dropDatabase,
  fmt,
  median,
  quiet,
  rssOf,
  sampleUntilActionEnds,
  serviceEnv,
  startRole,
  stop,
  withClient,
} from './lib.mjs';

const CHUNK = 4 * MiB; // the data path's chunk size (src/backups/data/backup-layout.ts)

/** The process holding the data path (bench/backup-child.mjs); RSS sampled every 100 ms per command. */
class DataPathProcess {
  constructor(appDir, work, env) {
    this.child = spawn(process.execPath, [path.join(ROOT, 'bench/backup-child.mjs'), appDir, work], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }
  async call(cmd) {
    const rss = [];
    const sample = () => {
      const v = rssOf(this.child.pid);
      if (v) rss.push(v);
    };
    sample();
    const timer = setInterval(sample, 100);
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const { value } = await this.lines.next();
    clearInterval(timer);
    sample();
    const r = JSON.parse(value);
    if (!r.ok) throw new Error(`${cmd.op}: ${r.error}`);
    r.rssMax = Math.max(...rss);
    return r;
  }
  async close() {
    this.child.stdin.end();
    await new Promise((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', r)));
  }
}

/**
 * A sparse qcow2 disk of `virtual` bytes holding `data` bytes of random data in `pieces` runs spread over
 * it (written raw, then converted), and the same data as one dense file: the "same bytes" `cp` and the
 * plain S3 transfer move. Returns the chunk-aligned offsets that hold data (where changes go).
 */
function makeDisk(disk, dense, { virtual, data, pieces }) {
  const raw = `${disk}.raw`;
  const fd = fs.openSync(raw, 'w');
  const dfd = fs.openSync(dense, 'w');
  fs.ftruncateSync(fd, virtual);
  const perPiece = Math.floor(data / pieces / CHUNK);
  const stride = Math.floor(virtual / pieces / CHUNK) * CHUNK;
  const dataChunks = [];
  let k = 0;
  for (let p = 0; p < pieces; p++) {
    for (let c = 0; c < perPiece; c++, k++) {
      const buf = crypto.randomBytes(CHUNK);
      fs.writeSync(fd, buf, 0, CHUNK, p * stride + c * CHUNK);
      fs.writeSync(dfd, buf, 0, CHUNK, k * CHUNK);
      dataChunks.push(p * stride + c * CHUNK);
    }
  }
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  fs.closeSync(fd);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
  fs.rmSync(raw);
  return { ...imageInfo(disk), data: k * CHUNK, dataChunks };
}

/**
 * Writes `count` fresh random 4 MiB runs at distinct chunk-aligned offsets holding data, through qemu
 * (qemu-io on the stopped disk), so the qcow2's persistent dirty bitmaps record them as a guest's
 * writes are recorded. Returns the bytes changed.
 */
function changeDisk(disk, dataChunks, count, work) {
  const picked = new Set();
  while (picked.size < count) picked.add(dataChunks[crypto.randomInt(dataChunks.length)]);
  const args = ['-f', 'qcow2'];
  const files = [];
  for (const off of picked) {
    const f = path.join(work, `change-${files.length}.bin`);
    fs.writeFileSync(f, crypto.randomBytes(CHUNK));
    files.push(f);
    args.push('-c', `write -q -s ${f} ${off} ${CHUNK}`);
  }
  sh('qemu-io', [...args, disk]);
  for (const f of files) fs.rmSync(f);
  return count * CHUNK;
}

/** Bytes of the files under dir (the directory store's objects; its temporary files are gone after a put). */
function treeBytes(dir) {
  let sum = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) sum += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
  }
  return sum;
}

function treeFiles(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? e.path, e.name));
}

/**
 * The block device's own counters (/proc/diskstats) for the file system holding `dir`: what the disk
 * did during a step — bytes, requests, and the time it had a request in flight (`io_ticks`).
 */
function diskCounters(dir) {
  const dev = fs.statSync(dir).dev;
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & ~0xff);
  return () => {
    const line = fs
      .readFileSync('/proc/diskstats', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => Number(f[0]) === major && Number(f[1]) === minor);
    if (!line) return null;
    const [readIos, readSectors, writeIos, writeSectors, busyMs] = [3, 5, 7, 9, 12].map((i) =>
      Number(line[i]),
    );
    return { readIos, readSectors, writeIos, writeSectors, busyMs, at: performance.now() };
  };
}

/** What the disk did between two `diskCounters` readings: MiB each way, mean request KiB, busy share. */
function diskDelta(a, b) {
  if (!a || !b) return null;
  const ms = b.at - a.at;
  const sectors = (k) => b[k] - a[k];
  return {
    readMiB: (sectors('readSectors') * 512) / MiB,
    writeMiB: (sectors('writeSectors') * 512) / MiB,
    readRequestKiB: (sectors('readSectors') / 2 / Math.max(1, sectors('readIos'))) | 0,
    writeRequestKiB: (sectors('writeSectors') / 2 / Math.max(1, sectors('writeIos'))) | 0,
    busy: sectors('busyMs') / ms,
  };
}

function timeCp(src, dst) {
  fs.rmSync(dst, { force: true });
  const t0 = performance.now();
  sh('cp', ['--sparse=always', src, dst]);
  sh('sync', [dst]); // as the store fsyncs each object and a restore its disk
  const ms = performance.now() - t0;
  fs.rmSync(dst, { force: true });
  return ms;
}

function undefineAll(name) {
  try {
    sh('virsh', ['-c', 'qemu:///system', 'undefine', name, '--checkpoints-metadata']);
  } catch {
    /* already gone */
  }
}

/** Whether process `pid` is gone (its leftovers are nobody's any more). */
function gonePid(pid) {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return e.code === 'ESRCH';
  }
}

/**
 * What earlier runs that were killed left (a run removes its own at the end): their domains, databases
 * and work directories, each named after the run's pid, removed when that process is gone. A reused
 * pid only keeps a leftover for longer. Buckets are left: the tests' Ceph keeps objects in memory.
 */
async function sweepKilledRuns(adminUrl, log) {
  const named = (re, names) =>
    names.flatMap((n) => {
      const m = re.exec(n);
      return m && gonePid(Number(m[1])) ? [n] : [];
    });
  const domains = named(
    /^bench-backup-(\d+)$/,
    sh('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'])
      .split('\n')
      .map((x) => x.trim()),
  );
  for (const d of domains) undefineAll(d);
  const dbs = named(
    /^bench_backup_(\d+)$/,
    await withClient(adminUrl, async (c) =>
      (await c.query(`SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_backup\\_%'`)).rows.map(
        (r) => r.datname,
      ),
    ),
  );
  for (const db of dbs) await dropDatabase(adminUrl, db);
  const dirs = named(/^bench-backup-(\d+)-/, fs.readdirSync(os.tmpdir()));
  for (const dir of dirs) fs.rmSync(path.join(os.tmpdir(), dir), { recursive: true, force: true });
  if (domains.length + dbs.length + dirs.length) {
    log(
      `backup: removed what killed runs left: ${domains.length} domains, ${dbs.length} databases, ${dirs.length} directories`,
    );
  }
}

export async function backupBench({ appDir, quick, adminUrl, log = quiet, baseline = null }) {
  /** @type {Record<string, string | undefined>} */
  const env = { ...serviceEnv(), ...process.env };
  const roundsArg = process.argv.find((a) => a.startsWith('--backup-rounds='));
  const asked = roundsArg ? Math.max(1, Number(roundsArg.slice(16)) || 1) : 4;
  const rounds = asked; // even (the default) puts each side first equally often
  // --backup-parts=dir,stages,s3,worker: the directory-store parts (full, incremental, daily), the full
  // write step by step, the S3 part, the production worker's RSS; all by default. `full` and `inc` alone
  // are the full backup and restore rounds, and the incrementals, of `dir`.
  const partsArg = process.argv.find((a) => a.startsWith('--backup-parts='));
  const parts = new Set((partsArg ? partsArg.slice(15) : 'dir,stages,s3,worker').split(','));
  const virtual = quick ? 2 * GiB : 20 * GiB;
  const data = quick ? 256 * MiB : 2 * GiB;
  const changedChunks = quick ? 4 : 25; // 16 MiB / 100 MiB
  const dailyChunks = Math.max(1, Math.round(data / 100 / CHUNK)); // 1 % of the data a day
  await sweepKilledRuns(adminUrl, log);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `bench-backup-${process.pid}-`));
  const disk = path.join(work, 'disk.qcow2');
  const dense = path.join(work, 'data.bin');
  const small = path.join(work, 'changed.bin');
  const copy = path.join(work, 'cp-copy');
  const storeDir = path.join(work, 'store');
  fs.mkdirSync(storeDir);
  const name = `bench-backup-${process.pid}`;
  const dbName = `bench_backup_${process.pid}`;
  // --worker-store=s3: the worker part's node stores into the running Ceph (the bench's bucket, prefix
  // worker/) instead of a directory.
  const workerStore = (process.argv.find((a) => a.startsWith('--worker-store=')) ?? '=dir').split('=')[1];
  if (workerStore === 's3' && !env.CEPH_S3_ENDPOINT)
    throw new Error('--worker-store=s3 needs a running Ceph');
  const bucket =
    env.CEPH_S3_ENDPOINT && (parts.has('s3') || workerStore === 's3') ? `bench-backup-${process.pid}` : null;
  const res = { rounds, load: [os.loadavg()], full: [], incremental: [], daily: [], s3: [] };
  let proc = null;
  /** The baseline build's data path (--baseline), in a process of its own; null without one. */
  let baseProc = null;
  let bucketMade = false;
  try {
    log(`backup: ${virtual / GiB} GiB disk with ${data / MiB} MiB of data`);
    res.disk = makeDisk(disk, dense, { virtual, data, pieces: 16 });
    const readDisk = diskCounters(work);
    fs.writeFileSync(small, crypto.randomBytes(changedChunks * CHUNK));
    const server = { id: 1, domain: name, domainUuid: defineDomain(name, disk), diskPath: disk };
    const dbUrl = await createDatabase(adminUrl, dbName);
    let accounts = 0;
    const newAccount = () =>
      withClient(dbUrl, async (c) => {
        const q = `INSERT INTO accounts (name) VALUES ($1) RETURNING id`;
        return (await c.query(q, [`bench-${process.pid}-${++accounts}`])).rows[0].id;
      });
    // One master key for both builds: the baseline's incrementals build on this build's backups.
    const masterKey = crypto.randomBytes(32).toString('base64');
    proc = new DataPathProcess(appDir, work, {
      DATABASE_URL: dbUrl,
      BACKUP_MASTER_KEY: masterKey,
      BENCH_STORE_DIR: storeDir,
      ...(bucket ? { BENCH_S3_BUCKET: bucket } : {}),
    });
    res.idleRss = (await proc.call({ op: 'state', server })).rssMax; // libvirt's first probe, outside the timing
    if (baseline) {
      baseProc = new DataPathProcess(baseline.dir, work, {
        DATABASE_URL: dbUrl,
        BACKUP_MASTER_KEY: masterKey,
        BENCH_STORE_DIR: storeDir,
      });
      await baseProc.call({ op: 'state', server });
      res.baseline = { sha: baseline.sha, full: [] };
    }
    let nextBackup = 1;
    const write = (store, accountId, base, p = proc) =>
      p.call({ op: 'write', store, server, backup: { id: nextBackup++, accountId }, base });
    const backupOf = (r, accountId) => ({ id: r.backupId, accountId });
    const writeNoted = async (store, accountId, base, p = proc) => {
      const id = nextBackup;
      const r = await write(store, accountId, base, p);
      r.backupId = id;
      return r;
    };
    const restoreFrom = async (store, backup, p = proc) => {
      const r = await p.call({ op: 'restore', store, server, backup });
      await gone(`${disk}.replaced`);
      return r;
    };
    const coldStore = () => settle(storeDir, ...treeFiles(storeDir));

    /**
     * The baseline's full backup and restore of the same disk in the same round as this build's:
     * after it in even rounds, before it in odd ones.
     */
    const baselineRound = async (round) => {
      if (!baseProc) return;
      const b = { round };
      const baseAccount = await newAccount();
      settle(work, disk);
      const bw = await writeNoted('dir', baseAccount, null, baseProc);
      coldStore();
      const br = await restoreFrom('dir', backupOf(bw, baseAccount), baseProc);
      await baseProc.call({ op: 'delete', store: 'dir', backup: backupOf(bw, baseAccount) });
      Object.assign(b, {
        writeMs: bw.ms,
        writeCpuMs: bw.cpuMs,
        restoreMs: br.ms,
        writeRss: bw.rssMax,
        restoreRss: br.rssMax,
      });
      res.baseline.full.push(b);
    };

    // 1. Full backup and restore of the data, directory store, against cp of the same bytes.
    for (let round = 0; round < (parts.has('dir') || parts.has('full') ? rounds : 0); round++) {
      log(`backup: full + restore, directory store, round ${round + 1}/${rounds}`);
      if (round % 2 === 1) await baselineRound(round);
      const run = { round };
      const accountId = await newAccount(); // nothing of an earlier round to deduplicate against
      const cp = (key) => {
        settle(work, dense);
        const d = readDisk();
        run[key] = timeCp(dense, copy);
        run[`${key}Disk`] = diskDelta(d, readDisk());
      };
      if (round % 2 === 0) cp('cpWriteMs');
      settle(work, disk);
      const dw = readDisk();
      const w = await writeNoted('dir', accountId, null);
      run.writeDisk = diskDelta(dw, readDisk());
      Object.assign(run, {
        writeMs: w.ms,
        writeCpuMs: w.cpuMs,
        writeRchar: w.rchar,
        writeRss: w.rssMax,
        writeElu: w.result.dataPathElu,
        mode: w.result.mode,
        storedBytes: w.result.storedBytes,
        storeBytes: treeBytes(storeDir),
      });
      if (round % 2 === 1) cp('cpWriteMs');
      if (round % 2 === 0) cp('cpRestoreMs');
      if (round === 0) sh('cp', ['--sparse=always', disk, `${copy}.orig`]);
      coldStore();
      const dr = readDisk();
      const r = await restoreFrom('dir', backupOf(w, accountId));
      run.restoreDisk = diskDelta(dr, readDisk());
      run.restoreMs = r.ms;
      run.restoreRss = r.rssMax;
      run.restoreElu = r.result?.elu;
      if (round % 2 === 1) cp('cpRestoreMs');
      if (round === 0) {
        // The restored disk holds exactly what was backed up (compare exits non-zero otherwise).
        sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', `${copy}.orig`, disk]);
        fs.rmSync(`${copy}.orig`);
        run.identical = true;
      }
      await proc.call({ op: 'delete', store: 'dir', backup: backupOf(w, accountId) });
      res.full.push(run);
      if (round % 2 === 0) await baselineRound(round);
    }
    if (parts.has('stages')) {
      // Where a full write's time goes: each step of the data path timed alone, one chunk at a time.
      log('backup: the full write step by step');
      settle(work, disk);
      res.stages = (
        await proc.call({ op: 'stages', store: 'dir', server, checkpointId: nextBackup++ })
      ).result;
      coldStore();
      res.stages.restore = (await proc.call({ op: 'restoreStages', store: 'dir', server })).result;
      await gone(`${disk}.replaced`);
      fs.rmSync(path.join(storeDir, 'stages'), { recursive: true, force: true });
      if (baseProc) {
        settle(work, disk);
        res.baseline.stages = (
          await baseProc.call({ op: 'stages', store: 'dir', server, checkpointId: nextBackup++ })
        ).result;
        coldStore();
        res.baseline.stages.restore = (
          await baseProc.call({ op: 'restoreStages', store: 'dir', server })
        ).result;
        await gone(`${disk}.replaced`);
        fs.rmSync(path.join(storeDir, 'stages'), { recursive: true, force: true });
      }
      settle(work, dense);
      res.stages.cpMs = timeCp(dense, copy);
    }
    res.load.push(os.loadavg());

    // 2. Incremental backups of 100 MiB changed, against cp of 100 MiB.
    if (parts.has('dir') || parts.has('inc')) {
      log('backup: incremental, directory store');
      const accountId = await newAccount();
      let base = await writeNoted('dir', accountId, null);
      res.incrementalFull = { mode: base.result.mode, modeReason: base.result.modeReason };
      /**
       * The baseline's incremental of the same amount of change in the same round, on the same disk and
       * account: it builds on the latest backup (this build's or its own, the manifest format is one),
       * after this build's in even rounds, before it in odd ones.
       */
      const baselineIncremental = async (run) => {
        if (!baseProc) return;
        changeDisk(disk, res.disk.dataChunks, changedChunks, work);
        settle(work, disk);
        const bw = await writeNoted('dir', accountId, backupOf(base, accountId), baseProc);
        Object.assign(run, {
          baseMs: bw.ms,
          baseCpuMs: bw.cpuMs,
          baseMode: bw.result.mode,
          baseSpans: bw.result.spans,
        });
        base = bw;
      };
      for (let round = 0; round < rounds; round++) {
        const run = { round };
        if (round % 2 === 1) await baselineIncremental(run);
        run.changedBytes = changeDisk(disk, res.disk.dataChunks, changedChunks, work);
        const cp = () => {
          settle(work, small);
          run.cpMs = timeCp(small, copy);
        };
        if (round % 2 === 0) cp();
        const before = treeBytes(storeDir);
        settle(work, disk);
        const w = await writeNoted('dir', accountId, backupOf(base, accountId));
        Object.assign(run, {
          ms: w.ms,
          cpuMs: w.cpuMs,
          rchar: w.rchar,
          rss: w.rssMax,
          mode: w.result.mode,
          storedBytes: w.result.storedBytes,
          storeAdded: treeBytes(storeDir) - before,
          spans: w.result.spans,
          dataPathElu: w.result.dataPathElu,
        });
        if (round % 2 === 1) cp();
        base = w;
        if (round % 2 === 0) await baselineIncremental(run);
        res.incremental.push(run);
      }
    }
    res.load.push(os.loadavg());

    // 3. Ten daily backups of the disk changing 1 % of its data a day; the store's bytes for that account.
    if (parts.has('dir')) {
      log('backup: ten daily backups, 1 % a day');
      fs.rmSync(storeDir, { recursive: true, force: true }); // only this series in the store
      fs.mkdirSync(storeDir);
      const accountId = await newAccount();
      let base = null;
      let changed = 0;
      for (let day = 1; day <= 10; day++) {
        if (day > 1) changed += changeDisk(disk, res.disk.dataChunks, dailyChunks, work);
        const w = await writeNoted('dir', accountId, base ? backupOf(base, accountId) : null);
        res.daily.push({
          day,
          mode: w.result.mode,
          storedBytes: w.result.storedBytes,
          storeBytes: treeBytes(storeDir),
        });
        base = w;
      }
      res.dailyChangedBytes = changed;
    }
    res.load.push(os.loadavg());

    // 4. The same full backup and restore into S3 (Ceph radosgw), against a plain multipart upload and
    //    a streamed download of the same bytes with the same client library and settings.
    if (bucket) {
      await proc.call({ op: 'bucket', create: true });
      bucketMade = true;
    }
    if (bucket && parts.has('s3')) {
      for (let round = 0; round < rounds; round++) {
        log(`backup: full + restore, S3, round ${round + 1}/${rounds}`);
        const run = { round };
        const accountId = await newAccount();
        const plain = async () => {
          settle(work, dense);
          run.uploadMs = (await proc.call({ op: 'plainUpload', file: dense, key: 'plain' })).ms;
          const d = await proc.call({ op: 'plainDownload', key: 'plain', file: copy });
          run.downloadMs = d.ms;
          run.plainRss = d.rssMax;
          fs.rmSync(copy, { force: true });
          await proc.call({ op: 'plainDelete', key: 'plain' });
        };
        if (round % 2 === 0) await plain();
        settle(work, disk);
        const w = await writeNoted('s3', accountId, null);
        run.writeMs = w.ms;
        run.writeRss = w.rssMax;
        const r = await restoreFrom('s3', backupOf(w, accountId));
        run.restoreMs = r.ms;
        run.restoreRss = r.rssMax;
        await proc.call({ op: 'delete', store: 's3', backup: backupOf(w, accountId) });
        if (round % 2 === 1) await plain();
        res.s3.push(run);
      }
      res.load.push(os.loadavg());
    }
    if (parts.has('worker')) {
      log('backup: the real worker writing a backup of the whole disk, RSS sampled');
      // The worker's node stores into a directory of its own (BACKUP_DIR, the `default` store).
      const wstore = path.join(work, 'worker-store');
      fs.mkdirSync(wstore);
      settle(work, disk);
      // --worker-env=K=V[,K=V…]: the worker once more with these settings, after the plain one.
      const weArg = process.argv.find((a) => a.startsWith('--worker-env='));
      const s3Store =
        workerStore === 's3'
          ? {
              BACKUP_STORES: JSON.stringify({
                s3: {
                  kind: 's3',
                  endpoint: env.CEPH_S3_ENDPOINT,
                  bucket,
                  prefix: 'worker/',
                  accessKeyIdEnv: 'CEPH_S3_ACCESS_KEY',
                  secretAccessKeyEnv: 'CEPH_S3_SECRET_KEY',
                },
              }),
            }
          : null;
      const workerRun = {
        appDir,
        dbUrl,
        redisUrl: env.REDIS_URL,
        work,
        server,
        wstore,
        nodeStore: s3Store ? 's3' : 'default',
      };
      res.worker = await workerBackup({ ...workerRun, workerEnv: s3Store ?? {} });
      res.worker.store = workerStore;
      res.worker.storeBytes = treeBytes(wstore);
      if (weArg) {
        const workerEnv = Object.fromEntries(
          weArg
            .slice(13)
            .split(',')
            .map((kv) => [kv.split('=')[0], kv.split('=').slice(1).join('=')]),
        );
        fs.rmSync(wstore, { recursive: true, force: true });
        fs.mkdirSync(wstore);
        settle(work, disk);
        res.workerWithEnv = {
          env: workerEnv,
          ...(await workerBackup({ ...workerRun, workerEnv: { ...s3Store, ...workerEnv } })),
        };
      }
    }
  } finally {
    if (proc && bucketMade)
      await proc.call({ op: 'bucket', create: false }).catch((e) => log(`bucket: ${e.message}`));
    await proc?.close();
    await baseProc?.close();
    undefineAll(name);
    fs.rmSync(work, { recursive: true, force: true });
    await dropDatabase(adminUrl, dbName).catch(() => undefined);
    if (parts.has('worker')) await cleanRedis(env.REDIS_URL).catch(() => undefined);
  }
  return summarize(res, { data, virtual });
}

/**
 * The production worker (this build, libvirt node) running a create_backup action of the disk through
 * its jobs, its real data path and a directory store; its RSS sampled every 100 ms
 * from start to the action's end.
 */
let workerRuns = 0;

async function workerBackup({
  appDir,
  dbUrl,
  redisUrl,
  work,
  server,
  wstore,
  nodeStore = 'default',
  workerEnv = {},
}) {
  const run = ++workerRuns;
  const nodeName = `bench-bk-${process.pid}-${run}`;
  const ids = await withClient(dbUrl, async (c) => {
    const account = await c.query(`INSERT INTO accounts (name) VALUES ($1) RETURNING id`, [
      `bench-w-${process.pid}-${run}`,
    ]);
    const accountId = account.rows[0].id;
    const node = await c.query(
      `INSERT INTO nodes (name, driver, uri, snapshot_dir, image_roots, backup_store)
       VALUES ($1, 'libvirt', 'qemu:///system', $2, ARRAY[$3::varchar], $4) RETURNING id`,
      [nodeName, path.join(work, 'wsnaps'), work, nodeStore],
    );
    const srv = await c.query(
      `INSERT INTO servers (account_id, node_id, name, status, domain, disk_path)
       VALUES ($1, $2, 'bench-backup', 'stopped', $3, $4) RETURNING id`,
      [accountId, node.rows[0].id, server.domain, server.diskPath],
    );
    const backup = await c.query(
      `INSERT INTO backups (account_id, server_id, name) VALUES ($1, $2, 'whole') RETURNING id`,
      [accountId, srv.rows[0].id],
    );
    const action = await c.query(
      `INSERT INTO actions (kind, account_id, server_id, backup_id, server_status_before, created_at)
       VALUES ('create_backup', $1, $2, $3, 'stopped', now() - interval '5 seconds') RETURNING id`,
      [accountId, srv.rows[0].id, backup.rows[0].id],
    );
    return { action: action.rows[0].id, backup: backup.rows[0].id };
  });
  const worker = await startRole(
    'worker',
    {
      DATABASE_URL: dbUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: `benchw${process.pid}`, // removed at the end (cleanRedis)
      WORKER_NODE: nodeName,
      DISPATCH_INTERVAL_MS: '200',
      BACKUP_DIR: wstore,
      BACKUP_MASTER_KEY: crypto.randomBytes(32).toString('base64'),
      ...workerEnv,
    },
    appDir,
  );
  let sampled;
  try {
    sampled = await sampleUntilActionEnds({
      databaseUrl: dbUrl,
      actionId: ids.action,
      pid: worker.child.pid,
      timeoutMs: 1_800_000,
    });
  } finally {
    await stop(worker.child);
  }
  const samples = sampled.samples.map((x) => x.rss);
  const row = await withClient(
    dbUrl,
    async (c) =>
      (
        await c.query(
          `SELECT mode::text, size_bytes::text, stored_bytes::text, error FROM backups WHERE id = $1`,
          [ids.backup],
        )
      ).rows[0],
  );
  return {
    status: sampled.status,
    backup: row,
    seconds: sampled.seconds,
    rssStartMB: samples[Math.min(9, samples.length - 1)] / MiB,
    rssMaxMB: Math.max(...samples) / MiB,
    rssMedianMB: median(samples.slice(10)) / MiB,
  };
}

function summarize(res, { data, virtual }) {
  const full = res.full;
  const inc = res.incremental;
  const s3 = res.s3;
  const last = res.daily[res.daily.length - 1];
  const dailyLimit = data + res.dailyChangedBytes;
  const dir =
    full.length || inc.length
      ? {
          fullWriteVsCp: spread(full.map((r) => r.cpWriteMs / r.writeMs)),
          fullRestoreVsCp: spread(full.map((r) => r.cpRestoreMs / r.restoreMs)),
          fullWriteMiBps: median(full.map((r) => data / MiB / (r.writeMs / 1000))),
          fullRestoreMiBps: median(full.map((r) => data / MiB / (r.restoreMs / 1000))),
          cpMiBps: median(full.map((r) => data / MiB / (r.cpWriteMs / 1000))),
          fullModes: [...new Set(full.map((r) => r.mode))],
          fullStoredVsData: median(full.map((r) => r.storeBytes / data)),
          incModes: [...new Set(inc.map((r) => r.mode))],
          incChangedMiB: inc[0]?.changedBytes / MiB,
          incReadVsChanged: spread(inc.map((r) => r.rchar / r.changedBytes)),
          incStoreVsChanged: spread(inc.map((r) => r.storeAdded / r.changedBytes)),
          incTimeVsCp: spread(inc.map((r) => r.ms / r.cpMs)),
          incMs: spread(inc.map((r) => r.ms)),
          incCpMs: spread(inc.map((r) => r.cpMs)),
          daily: last && {
            modes: res.daily.map((d) => d.mode),
            storeMiB: last.storeBytes / MiB,
            limitMiB: dailyLimit / MiB,
            changedPerDayMiB: res.dailyChangedBytes / 9 / MiB,
            vsLimit: last.storeBytes / dailyLimit,
          },
          rssFullWriteMB: spread(full.map((r) => r.writeRss / MiB)),
          disk: Object.fromEntries(
            ['writeDisk', 'restoreDisk', 'cpWriteMsDisk'].map((k) => [
              k,
              full[0]?.[k]
                ? {
                    readRequestKiB: median(full.map((r) => r[k].readRequestKiB)),
                    writeRequestKiB: median(full.map((r) => r[k].writeRequestKiB)),
                    busy: spread(full.map((r) => r[k].busy)),
                  }
                : null,
            ]),
          ),
        }
      : null;
  res.summary = {
    virtualGiB: virtual / GiB,
    dataMiB: data / MiB,
    diskActualMiB: res.disk.actual / MiB,
    dir,
    s3: s3.length
      ? {
          writeVsUpload: spread(s3.map((r) => r.uploadMs / r.writeMs)),
          restoreVsDownload: spread(s3.map((r) => r.downloadMs / r.restoreMs)),
          uploadMiBps: median(s3.map((r) => data / MiB / (r.uploadMs / 1000))),
          downloadMiBps: median(s3.map((r) => data / MiB / (r.downloadMs / 1000))),
          writeMiBps: median(s3.map((r) => data / MiB / (r.writeMs / 1000))),
          restoreMiBps: median(s3.map((r) => data / MiB / (r.restoreMs / 1000))),
        }
      : null,
    rssMaxMB:
      Math.max(
        ...full.flatMap((r) => [r.writeRss, r.restoreRss]),
        ...inc.map((r) => r.rss),
        ...s3.flatMap((r) => [r.writeRss, r.restoreRss]),
      ) / MiB,
    idleRssMB: res.idleRss / MiB,
    rssPlainS3MB: s3.length ? Math.max(...s3.map((r) => r.plainRss)) / MiB : null,
    load: res.load,
  };
  const bf = res.baseline?.full ?? [];
  const bi = inc.filter((r) => r.baseMs !== undefined);
  if (res.baseline) res.summary.baseline = { sha: res.baseline.sha };
  if (bf.length === full.length && bf.length) {
    // Per round: this build's time ÷ the baseline's (below 1: this build is faster), and each beside cp.
    Object.assign(res.summary.baseline, {
      writeVsBaseline: spread(full.map((r, i) => r.writeMs / bf[i].writeMs)),
      writeCpuVsBaseline: spread(full.map((r, i) => r.writeCpuMs / bf[i].writeCpuMs)),
      restoreVsBaseline: spread(full.map((r, i) => r.restoreMs / bf[i].restoreMs)),
      baseWriteVsCp: spread(full.map((r, i) => r.cpWriteMs / bf[i].writeMs)),
      baseRestoreVsCp: spread(full.map((r, i) => r.cpRestoreMs / bf[i].restoreMs)),
      rssFullWriteMB: spread(bf.map((b) => b.writeRss / MiB)),
      rssMaxMB: Math.max(...bf.flatMap((b) => [b.writeRss, b.restoreRss])) / MiB,
    });
  }
  if (bi.length) {
    Object.assign(res.summary.baseline, {
      incrementalVsBaseline: spread(bi.map((r) => r.ms / r.baseMs)),
      incrementalCpuVsBaseline: spread(bi.map((r) => r.cpuMs / r.baseCpuMs)),
      baseIncrementalVsCp: spread(bi.map((r) => r.baseMs / r.cpMs)),
      baseIncrementalMs: spread(bi.map((r) => r.baseMs)),
      baseIncrementalModes: [...new Set(bi.map((r) => r.baseMode))],
    });
  }
  return res;
}

const r = (x) => `${fmt(x.median, 2)}× (${fmt(x.min, 2)}–${fmt(x.max, 2)}, n=${x.n})`;

export function printBackup(res) {
  const s = { ...res.summary, ...res.summary.dir };
  console.log(
    `\n### Backups (issue 17): ${s.virtualGiB} GiB disk, ${s.dataMiB} MiB of data (${fmt(s.diskActualMiB, 0)} MiB allocated), ${res.rounds} rounds alternated, median (min–max) of the per-round ratios\n`,
  );
  console.log('| target | measured | met? |\n|---|---|---|');
  const met = (ok) => (ok ? 'yes' : '**no**');
  if (s.dir && res.incremental.length) {
    console.log(
      `| incremental (${fmt(s.incChangedMiB, 0)} MiB changed): bytes read ÷ changed ≤ 1.2× | ${r(s.incReadVsChanged)} (rchar of the data-path process; modes ${s.incModes.join(',')}) | ${met(s.incReadVsChanged.max <= 1.2)} |`,
    );
    console.log(
      `| incremental: bytes added to the store ÷ changed ≤ 1.2× | ${r(s.incStoreVsChanged)} | ${met(s.incStoreVsChanged.max <= 1.2)} |`,
    );
    console.log(
      `| incremental: time ÷ cp (+ sync) of ${fmt(s.incChangedMiB, 0)} MiB ≤ 3× | ${r(s.incTimeVsCp)}; ${fmt(s.incMs.median / 1000, 2)} s vs ${fmt(s.incCpMs.median / 1000, 2)} s | ${met(s.incTimeVsCp.median <= 3)} |`,
    );
  }
  if (res.full.length) {
    console.log(
      `| full backup ≥ 0.7× cp (+ sync) of the same bytes, directory store | ${r(s.fullWriteVsCp)}; ${fmt(s.fullWriteMiBps, 0)} vs ${fmt(s.cpMiBps, 0)} MiB/s | ${met(s.fullWriteVsCp.median >= 0.7)} |`,
    );
    console.log(
      `| full restore ≥ 0.7× cp, directory store | ${r(s.fullRestoreVsCp)}; ${fmt(s.fullRestoreMiBps, 0)} MiB/s | ${met(s.fullRestoreVsCp.median >= 0.7)} |`,
    );
  }
  if (s.dir?.disk?.writeDisk) {
    const d = s.dir.disk;
    const line = (x) =>
      `requests ${x.readRequestKiB} KiB read / ${x.writeRequestKiB} KiB written, busy ${r(x.busy)}`;
    console.log(
      `| (the disk, /proc/diskstats) full backup: ${line(d.writeDisk)}; restore: ${line(d.restoreDisk)}; cp + sync: ${line(d.cpWriteMsDisk)} | | |`,
    );
  }
  if (s.s3) {
    console.log(
      `| full backup ≥ 0.7× plain multipart upload, S3 (Ceph) | ${r(s.s3.writeVsUpload)}; ${fmt(s.s3.writeMiBps, 0)} vs ${fmt(s.s3.uploadMiBps, 0)} MiB/s | ${met(s.s3.writeVsUpload.median >= 0.7)} |`,
    );
    console.log(
      `| full restore ≥ 0.7× plain download, S3 (Ceph) | ${r(s.s3.restoreVsDownload)}; ${fmt(s.s3.restoreMiBps, 0)} vs ${fmt(s.s3.downloadMiBps, 0)} MiB/s | ${met(s.s3.restoreVsDownload.median >= 0.7)} |`,
    );
  }
  if (s.dir?.daily)
    console.log(
      `| ten daily backups, ${fmt(s.daily.changedPerDayMiB, 0)} MiB (1 %) changed a day: store ≤ 1.2× (data + 9 × changed) | ${fmt(s.daily.storeMiB, 0)} MiB for ${fmt(s.daily.limitMiB, 0)} MiB: ${fmt(s.daily.vsLimit, 3)}× (modes ${s.daily.modes.join(',')}) | ${met(s.daily.vsLimit <= 1.2)} |`,
    );
  if (Number.isFinite(s.rssMaxMB))
    console.log(
      `| RSS of the data-path process ≤ 200 MB | max ${fmt(s.rssMaxMB, 0)} MB over every backup and restore (idle ${fmt(s.idleRssMB, 0)} MB)${res.full.length ? `; full backups ${fmt(s.rssFullWriteMB.median, 0)} (${fmt(s.rssFullWriteMB.min, 0)}–${fmt(s.rssFullWriteMB.max, 0)}) MB` : ''} | ${met(s.rssMaxMB <= 200)} |`,
    );
  if (res.worker) {
    const w = res.worker;
    console.log(
      `| worker RSS during a backup of the ${s.virtualGiB} GiB disk ≤ 200 MB (the production worker, libvirt node, ${w.store === 's3' ? 'S3 store (Ceph)' : 'directory store'}) | max **${fmt(w.rssMaxMB, 0)} MB**, median ${fmt(w.rssMedianMB, 0)} MB, ${fmt(w.rssStartMB, 0)} MB after its first second; action ${w.status} in ${fmt(w.seconds, 0)} s (${w.backup?.mode}, ${fmt(Number(w.backup?.size_bytes) / MiB, 0)} MiB) | ${met(w.status === 'succeeded' && w.rssMaxMB <= 200)} |`,
    );
  }
  if (res.workerWithEnv) {
    const w = res.workerWithEnv;
    console.log(
      `| the same with ${JSON.stringify(w.env)} | max **${fmt(w.rssMaxMB, 0)} MB**, median ${fmt(w.rssMedianMB, 0)} MB; action ${w.status} in ${fmt(w.seconds, 0)} s | ${met(w.status === 'succeeded' && w.rssMaxMB <= 200)} |`,
    );
  }
  const sb = s.baseline;
  if (sb?.writeVsBaseline) {
    console.log(
      `\nSide by side with the baseline ${sb.sha} (same rounds, order flipping): this build's time ÷ the baseline's, full backup ${r(sb.writeVsBaseline)} (CPU of the data-path process ${r(sb.writeCpuVsBaseline)}), full restore ${r(sb.restoreVsBaseline)}; the baseline beside cp: backup ${r(sb.baseWriteVsCp)}, restore ${r(sb.baseRestoreVsCp)}; its data-path RSS max ${fmt(sb.rssMaxMB, 0)} MB, full backups ${fmt(sb.rssFullWriteMB.median, 0)} (${fmt(sb.rssFullWriteMB.min, 0)}–${fmt(sb.rssFullWriteMB.max, 0)}) MB`,
    );
  }
  if (sb?.incrementalVsBaseline) {
    console.log(
      `Incremental beside the baseline ${sb.sha}'s of the same amount of change (same rounds, order flipping): this build's time ÷ the baseline's ${r(sb.incrementalVsBaseline)} (CPU ${r(sb.incrementalCpuVsBaseline)}); the baseline ${fmt(sb.baseIncrementalMs.median / 1000, 2)} s, ${r(sb.baseIncrementalVsCp)} cp (modes ${sb.baseIncrementalModes.join(',')})`,
    );
  }
  for (const [label, st] of [
    ['', res.stages],
    [` — baseline ${res.baseline?.sha}`, res.baseline?.stages],
  ]) {
    if (!st) continue;
    const gib = st.bytes / GiB;
    console.log(
      `\nThe full write step by step${label} (${st.chunks} chunks, one at a time, each step alone), per GiB of data: wall s (CPU s of the data-path process)`,
    );
    console.log(
      '| read | zero check + sha256 | seal (AES-256-GCM) | store put (+ fsync) | sum | cp + sync |\n|---|---|---|---|---|---|',
    );
    const cell = (x) => `${fmt(x.ms / 1000 / gib, 2)} (${fmt(x.cpuMs / 1000 / gib, 2)})`;
    const sum = ['read', 'zeroCheckAndSha256', 'seal', 'put'].reduce((a, k) => a + st[k].ms, 0);
    console.log(
      `| ${cell(st.read)} | ${cell(st.zeroCheckAndSha256)} | ${cell(st.seal)} | ${cell(st.put)} | ${fmt(sum / 1000 / gib, 2)} | ${fmt((st.cpMs ?? res.stages.cpMs) / 1000 / gib, 2)} |`,
    );
    const rs = st.restore;
    if (rs) {
      const rgib = rs.bytes / GiB;
      const rcell = (x) => `${fmt(x.ms / 1000 / rgib, 2)} (${fmt(x.cpuMs / 1000 / rgib, 2)})`;
      console.log(
        `\nThe full restore of those chunks step by step${label} (one at a time, through restoreDiskFrom), per GiB: wall s (CPU s of the data-path process; the final replace also its tool processes' CPU)`,
      );
      console.log(
        '| before the fill | get | open + sha256 | write into the temporary image | final replace | total | cp + sync |\n|---|---|---|---|---|---|---|',
      );
      console.log(
        `| ${fmt(rs.beforeFill.ms / 1000 / rgib, 2)} | ${rcell(rs.get)} | ${rcell(rs.openAndVerify)} | ${rcell(rs.write)} | ${rcell(rs.final)} + tools ${fmt(rs.final.toolCpuMs / 1000 / rgib, 2)} | ${fmt(rs.totalMs / 1000 / rgib, 2)} (${fmt(rs.totalCpuMs / 1000 / rgib, 2)}) | ${fmt((st.cpMs ?? res.stages.cpMs) / 1000 / gib, 2)} |`,
      );
      console.log(
        `final replace, its tool processes in order (ms): ${rs.tools.map((t) => `${t.cmd} ${fmt(t.ms, 0)}`).join(', ')}`,
      );
    }
  }
  console.log(
    `\nload average at the start and after each part: ${s.load.map((l) => l.map((x) => x.toFixed(1)).join('/')).join(' → ')}`,
  );
}

// Run on its own: npm run bench:backup [-- --quick]
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const log = (...a) => console.error(`[bench +${((Date.now() - started) / 1000).toFixed(0)}s]`, ...a);
  const quick = process.argv.includes('--quick');
  const adminUrl = process.env.DATABASE_ADMIN_URL ?? serviceEnv().DATABASE_ADMIN_URL;
  const appDir = buildApp(log);
  const baseArg = process.argv.find((a) => a.startsWith('--baseline='));
  const baseline = baseArg ? buildRef(baseArg.slice(11), log) : null;
  const res = await backupBench({ appDir, quick, adminUrl, log, baseline });
  printBackup(res);
  const dir = path.join(ROOT, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(
    dir,
    `backup-${quick ? 'quick' : 'full'}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  );
  const { dataChunks, ...diskInfo } = res.disk;
  fs.writeFileSync(
    file,
    JSON.stringify({ ...res, disk: { ...diskInfo, dataChunks: dataChunks.length } }, null, 2),
  );
  console.log(`\nresults: ${path.relative(ROOT, file)} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
