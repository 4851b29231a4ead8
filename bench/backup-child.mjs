/* global performance, Buffer */
// A long-lived process holding the real backup data path of the bench build (ChunkedBackupDataPath over
// the libvirt driver, the directory store or the S3 store, account keys and chunk references in
// Postgres), as a worker holds it; plus the plain S3 multipart upload/download it is compared with, in
// the same process and with the same client library and settings. The parent sends one JSON command
// per line and samples this process's RSS meanwhile. Each answer carries the bytes this process read
// and wrote through system calls during the command (/proc/self/io rchar/wchar) and the CPU time this
// process used meanwhile (all its threads: user + system).
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance as nodePerformance } from 'node:perf_hooks';
import readline from 'node:readline';
import { pipeline } from 'node:stream/promises';

const require = createRequire(import.meta.url);
const dist = (p) => require(path.join(process.argv[2], 'dist', p));
// The worker's libuv pool size where the build sets one (before this process reads any file).
try {
  dist('app/worker-threadpool.js').applyWorkerThreadpool();
} catch {
  /* a build without it: libuv's default */
}
const { LibvirtHypervisorDriver } = dist('hypervisor/libvirt/libvirt-hypervisor-driver.js');
const { ProcessRunner } = dist('hypervisor/libvirt/process-runner.js');
const { ChunkedBackupDataPath } = dist('backups/data/chunked-backup-data-path.js');
const { AccountKeys, BackupMasterKey } = dist('backups/data/account-keys.js');
const { ChunkReferences } = dist('backups/data/chunk-references.js');
const { DirectoryStore } = dist('backup-store/directory-store.js');
const { S3Store } = dist('backup-store/s3-store.js');
const { seal, open } = dist('backups/data/sealed-box.js');
const { BackupObjects } = dist('backups/data/backup-objects.js');
/** The stages' hash step: a chunk's sha256 on this thread, its cost measured as such. */
const sha256Hex = (data) => crypto.createHash('sha256').update(data).digest('hex');
const { PrismaService } = dist('prisma/prisma.service.js');
const { Clock } = dist('common/clock.js');
/**
 * A chunk buffer as the build's data path allocates it: page-aligned memory from its pool where the
 * build has one (a directory store with O_DIRECT reads and writes such memory in place), else a plain one.
 */
const chunkBuffer = (() => {
  try {
    const { takeAlignedBuffer } = dist('common/aligned-buffers.js');
    return (bytes) => takeAlignedBuffer(bytes);
  } catch {
    return (bytes) => Buffer.allocUnsafe(bytes);
  }
})();
const s3 = require(require.resolve('@aws-sdk/client-s3', { paths: [process.argv[2]] }));

/** The tool processes the driver ran during the current command (restore stages time them by name). */
let toolLog = [];
class TracedRunner extends ProcessRunner {
  async run(cmd, args, o) {
    const rec = { cmd: path.basename(cmd), sub: args[0], start: performance.now(), end: null };
    toolLog.push(rec);
    try {
      return await super.run(cmd, args, o);
    } finally {
      rec.end = performance.now();
    }
  }
}

/**
 * Where a write's time goes: each call of these methods during a `write` command, as
 * [name, start, end] in ms from the command's start (the incremental's fixed cost, step by step).
 */
let spans = null;
const traced = (name, fn) =>
  async function (...args) {
    const rec = spans ? [name, performance.now(), null] : null;
    if (rec) spans.push(rec);
    try {
      return await fn.apply(this, args);
    } finally {
      if (rec) rec[2] = performance.now();
    }
  };
for (const [cls, names] of [
  [AccountKeys, ['forAccount']],
  [ChunkReferences, ['acquire', 'markStored']],
  [BackupObjects, ['getManifest', 'putManifest', 'putChunk', 'syncChunks', 'getChunk']],
]) {
  for (const n of names) cls.prototype[n] = traced(n, cls.prototype[n]);
}

// argv[3]: the run's directory (the driver's only image root); the rest comes from the environment.
const env = process.env;
const driver = new LibvirtHypervisorDriver({
  uri: env.LIBVIRT_URI || 'qemu:///system',
  imageRoots: [process.argv[3]],
  runner: new TracedRunner(),
});
const s3Options = env.BENCH_S3_BUCKET
  ? {
      endpoint: env.CEPH_S3_ENDPOINT,
      region: 'us-east-1',
      bucket: env.BENCH_S3_BUCKET,
      prefix: '',
      credentials: { accessKeyId: env.CEPH_S3_ACCESS_KEY, secretAccessKey: env.CEPH_S3_SECRET_KEY },
    }
  : null;
const stores = {
  dir: new DirectoryStore(env.BENCH_STORE_DIR),
  ...(s3Options ? { s3: new S3Store(s3Options) } : {}),
};
const prisma = new PrismaService({ databaseUrl: env.DATABASE_URL });
const masterKey = new BackupMasterKey({ backupMasterKey: Buffer.from(env.BACKUP_MASTER_KEY, 'base64') });
const openRead = driver.openBackupRead.bind(driver);
/** The main thread's utilization between the read session's open and its close (the data path). */
let dataPathElu = null;
driver.openBackupRead = traced('openBackupRead', async (...args) => {
  const session = await openRead(...args);
  const opened = nodePerformance.eventLoopUtilization();
  const close = session.close.bind(session);
  session.close = traced('close', (...a) => {
    dataPathElu ??= nodePerformance.eventLoopUtilization(opened).utilization;
    return close(...a);
  });
  session.read = traced('read', session.read.bind(session));
  return session;
});
const dataPath = new ChunkedBackupDataPath(
  driver,
  { byName: (name) => stores[name] },
  new AccountKeys(prisma, masterKey),
  new ChunkReferences(prisma),
  new Clock(),
);
// The plain S3 side: a client configured as S3Store configures its own (s3-store.ts).
const client = s3Options
  ? new s3.S3Client({
      endpoint: s3Options.endpoint,
      region: s3Options.region,
      credentials: s3Options.credentials,
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
  : null;

function io() {
  const t = fs.readFileSync('/proc/self/io', 'utf8');
  const get = (k) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(t)[1]);
  return { rchar: get('rchar'), wchar: get('wchar') };
}

/** The file's bytes as one multipart upload, 16 MiB parts, 4 at once: what S3Store does for a large body. */
async function plainUpload(file, key) {
  const Bucket = s3Options.bucket;
  const PART = 16 * 1024 * 1024;
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  try {
    const { UploadId } = await client.send(new s3.CreateMultipartUploadCommand({ Bucket, Key: key }));
    const count = Math.ceil(size / PART);
    const etags = new Array(count);
    let next = 0;
    const lane = async () => {
      while (next < count) {
        const i = next++;
        const body = Buffer.allocUnsafe(Math.min(PART, size - i * PART));
        fs.readSync(fd, body, 0, body.length, i * PART);
        const out = await client.send(
          new s3.UploadPartCommand({
            Bucket,
            Key: key,
            UploadId,
            PartNumber: i + 1,
            Body: body,
            ContentLength: body.length,
          }),
        );
        etags[i] = out.ETag;
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, count) }, lane));
    await client.send(
      new s3.CompleteMultipartUploadCommand({
        Bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
  } finally {
    fs.closeSync(fd);
  }
}

/** The object streamed into a file, then fsynced (a restore fsyncs its disk). */
async function plainDownload(key, file) {
  const out = await client.send(new s3.GetObjectCommand({ Bucket: s3Options.bucket, Key: key }));
  await pipeline(out.Body, fs.createWriteStream(file));
  const fd = fs.openSync(file, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

/**
 * Where a full write's time goes: the steps of the data path for each chunk of a full read, one chunk
 * at a time (no overlap), each step timed alone (wall and this process's CPU): the driver session's
 * read (into one reused buffer), the zero check and sha256, sealing (into one reused envelope), and the store's put (with
 * `durable: false`, and the store's `sync` of each 64 chunks and of the rest at the end, as the data
 * path writes). No references, no manifest.
 */
async function stages(server, store, checkpoint) {
  const CHUNK = 4 * 1024 * 1024;
  const SYNC_BATCH = 64; // SYNC_BATCH_CHUNKS of chunked-backup-data-path.ts
  const zeros = Buffer.alloc(CHUNK);
  const envelope = chunkBuffer(CHUNK + 48);
  // As the data path reads (a build whose session has no `into` returns a fresh buffer instead).
  const readBuffer = chunkBuffer(CHUNK);
  const key = { id: crypto.randomBytes(16), key: crypto.randomBytes(32) };
  const out = { chunks: 0, bytes: 0 };
  const written = [];
  let unsynced = [];
  const sync = async () => {
    const t = performance.now();
    const c = process.cpuUsage();
    await stores[store].sync(unsynced);
    add('put', t, c);
    unsynced = [];
  };
  const add = (name, t0, c0) => {
    const c = process.cpuUsage(c0);
    out[name] ??= { ms: 0, cpuMs: 0 };
    out[name].ms += performance.now() - t0;
    out[name].cpuMs += (c.user + c.system) / 1000;
  };
  const session = await driver.openBackupRead(server, { since: null, checkpoint });
  try {
    for (const e of session.extents) {
      for (let o = Math.floor(e.offset / CHUNK) * CHUNK; o < e.offset + e.length; o += CHUNK) {
        const len = Math.min(CHUNK, session.virtualSizeBytes - o);
        let t = performance.now();
        let c = process.cpuUsage();
        const data = await session.read(o, len, { into: readBuffer });
        add('read', t, c);
        [t, c] = [performance.now(), process.cpuUsage()];
        const zero = data.equals(zeros.subarray(0, len));
        const id = sha256Hex(data);
        add('zeroCheckAndSha256', t, c);
        if (zero) continue;
        [t, c] = [performance.now(), process.cpuUsage()];
        const sealed = seal(key, data, `chunk:0:${id}`, envelope);
        add('seal', t, c);
        [t, c] = [performance.now(), process.cpuUsage()];
        await stores[store].put(`stages/${id.slice(0, 2)}/${id}`, sealed, { durable: false });
        add('put', t, c);
        unsynced.push(`stages/${id.slice(0, 2)}/${id}`);
        if (unsynced.length >= SYNC_BATCH) await sync();
        written.push({ offset: o, length: len, id });
        out.chunks++;
        out.bytes += len;
      }
    }
    await sync();
  } finally {
    await session.close({ keepCheckpoint: false });
  }
  lastStages = { key, size: session.virtualSizeBytes, written };
  return out;
}

/** What the last `stages` stored: the chunks `restoreStages` restores. */
let lastStages = null;

/** CPU seconds of this process's waited-for children (the driver's tool processes): /proc/self/stat. */
function childrenCpuMs() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 of proc(5) (cutime, cstime), counted from the state (field 3) here.
  return ((Number(f[13]) + Number(f[14])) * 1000) / 100; // USER_HZ is 100 on Linux
}

/**
 * Where a full restore's time goes: the chunks the step-by-step write stored, restored one at a time
 * into the server's disk through the driver's `restoreDiskFrom`, as the data path restores: the store's
 * get, opening the envelope and checking its sha256, the write into the driver's temporary image; then
 * what the driver does after the last write (the final replace: the temporary image turned into the
 * disk, checked and swapped in), its tool processes timed by name, with their CPU.
 */
async function restoreStages(server, store) {
  const { key, size, written } = lastStages;
  const out = { chunks: 0, bytes: 0 };
  // As the data path gets and opens (a build whose store or `open` takes no buffer allocates one).
  const plainBuffer = chunkBuffer(4 * 1024 * 1024);
  const envelope = chunkBuffer(4 * 1024 * 1024 + 48);
  const add = (name, t0, c0) => {
    const c = process.cpuUsage(c0);
    out[name] ??= { ms: 0, cpuMs: 0 };
    out[name].ms += performance.now() - t0;
    out[name].cpuMs += (c.user + c.system) / 1000;
  };
  let fillStart = 0;
  let fillEnd = 0;
  let fillCpu = null;
  let childCpu = 0;
  toolLog = [];
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await driver.restoreDiskFrom(
    server,
    size,
    async (disk) => {
      fillStart = performance.now();
      for (const chunk of written) {
        let t = performance.now();
        let c = process.cpuUsage();
        const sealed = await stores[store].get(`stages/${chunk.id.slice(0, 2)}/${chunk.id}`, {
          into: envelope,
        });
        add('get', t, c);
        [t, c] = [performance.now(), process.cpuUsage()];
        const plain = open(key, sealed, `chunk:0:${chunk.id}`, plainBuffer);
        if (!plain || plain.length !== chunk.length || sha256Hex(plain) !== chunk.id)
          throw new Error(`restore stages: chunk ${chunk.id} does not open`);
        add('openAndVerify', t, c);
        [t, c] = [performance.now(), process.cpuUsage()];
        await disk.write(chunk.offset, plain);
        add('write', t, c);
        out.chunks++;
        out.bytes += chunk.length;
      }
      fillEnd = performance.now();
      fillCpu = process.cpuUsage();
      childCpu = childrenCpuMs();
    },
    () => undefined,
    { dataBytes: out.bytes },
  );
  const end = performance.now();
  const c = process.cpuUsage(fillCpu);
  out.final = { ms: end - fillEnd, cpuMs: (c.user + c.system) / 1000, toolCpuMs: childrenCpuMs() - childCpu };
  out.beforeFill = { ms: fillStart - t0 };
  out.tools = toolLog
    .filter((r) => r.start >= fillEnd)
    .map((r) => ({ cmd: `${r.cmd} ${r.sub}`, ms: r.end - r.start }));
  out.totalMs = end - t0;
  out.totalCpuMs = (() => {
    const u = process.cpuUsage(c0);
    return (u.user + u.system) / 1000;
  })();
  return out;
}

async function run(cmd) {
  const ref = (b) => ({ id: b.id, accountId: b.accountId, storeName: cmd.store });
  switch (cmd.op) {
    case 'state':
      return driver.getPowerState(cmd.server);
    case 'write': {
      spans = [];
      dataPathElu = null;
      const t0 = performance.now();
      const written = await dataPath.writeBackup(
        {
          backup: ref(cmd.backup),
          // What the backup's row would say (written into its manifest's index).
          facts: {
            serverId: cmd.server.id,
            name: `bench-${cmd.backup.id}`,
            description: '',
            kind: 'manual',
            createdAt: new Date(),
            expiresAt: null,
          },
          server: cmd.server,
          base: cmd.base ? { backup: ref(cmd.base), checkpoint: `vps-backup-${cmd.base.id}` } : null,
          checkpoint: `vps-backup-${cmd.backup.id}`,
        },
        () => undefined,
      );
      const at = (t) => Math.round((t - t0) * 10) / 10;
      const out = { ...written, spans: spans.map(([n, a, b]) => [n, at(a), at(b)]), dataPathElu };
      spans = null;
      return out;
    }
    case 'stages':
      return stages(cmd.server, cmd.store, `vps-backup-${cmd.checkpointId}`);
    case 'restoreStages':
      return restoreStages(cmd.server, cmd.store);
    case 'restore': {
      // The main thread's utilization over the whole restore.
      const started = nodePerformance.eventLoopUtilization();
      await dataPath.restoreBackup(ref(cmd.backup), cmd.server, () => undefined);
      return { elu: nodePerformance.eventLoopUtilization(started).utilization };
    }
    case 'delete':
      return dataPath.deleteBackup(ref(cmd.backup));
    case 'plainUpload':
      return plainUpload(cmd.file, cmd.key);
    case 'plainDownload':
      return plainDownload(cmd.key, cmd.file);
    case 'plainDelete':
      return client.send(new s3.DeleteObjectCommand({ Bucket: s3Options.bucket, Key: cmd.key }));
    case 'bucket':
      if (cmd.create) return client.send(new s3.CreateBucketCommand({ Bucket: s3Options.bucket }));
      return client.send(new s3.DeleteBucketCommand({ Bucket: s3Options.bucket }));
    case 'sha256': {
      const h = crypto.createHash('sha256');
      for await (const c of fs.createReadStream(cmd.file, { highWaterMark: 1 << 20 })) h.update(c);
      return h.digest('hex');
    }
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const cmd = JSON.parse(line);
  const before = io();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  try {
    const result = await run(cmd);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const after = io();
    const plain =
      result && typeof result === 'object' && !('$metadata' in result)
        ? result
        : typeof result === 'string'
          ? result
          : null;
    process.stdout.write(
      `${JSON.stringify({ ok: true, ms, cpuMs: (c.user + c.system) / 1000, rchar: after.rchar - before.rchar, wchar: after.wchar - before.wchar, result: plain })}\n`,
    );
  } catch (e) {
    process.stdout.write(
      `${JSON.stringify({ ok: false, ms: performance.now() - t0, error: `${e?.code ?? ''} ${e?.message ?? e} ${e?.detail ?? ''}` })}\n`,
    );
  }
}
await prisma.$disconnect();
