/* global performance, Buffer */
// The two steps of a full backup's write that cost the most CPU per byte (docs/benchmarks.md *6*),
// each in two ways side by side, alternated round by round in one process: sealing a 4 MiB chunk
// (the one-shot cipher call + Buffer.concat the data path used before, against `seal` of this build
// into a reused envelope) and the directory store's put (a durable put per chunk — file fsync, rename,
// directory fsync — against puts with `durable: false` synced 64 at a time, as the data path now
// writes). Wall time and this process's CPU, both in seconds per GiB of chunk data.
//
//   npm run --silent build && node bench/backup-put.mjs [--chunks=64] [--rounds=6] [--dir=/var/tmp]
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : dflt;
};
const CHUNKS = Number(arg('chunks', '64'));
const ROUNDS = Number(arg('rounds', '6'));
const CHUNK = 4 * 1024 * 1024;
const SYNC_BATCH = 64; // SYNC_BATCH_CHUNKS of chunked-backup-data-path.ts

const { seal } = await import(path.join(ROOT, 'dist/backups/data/sealed-box.js'));
const { DirectoryStore } = await import(path.join(ROOT, 'dist/backup-store/directory-store.js'));

const key = { id: crypto.randomBytes(16), key: crypto.randomBytes(32) };
const chunks = Array.from({ length: 8 }, () => crypto.randomBytes(CHUNK));
const MAGIC = Buffer.from('VPB1', 'latin1');

/** The envelope as sealed-box.ts built it before: one update of the whole chunk, then a concat. */
function sealOneShot(plain, aad) {
  const nonce = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = cipher.update(plain);
  const final = cipher.final();
  return Buffer.concat([MAGIC, key.id, nonce, body, final, cipher.getAuthTag()]);
}

const envelope = Buffer.allocUnsafe(CHUNK + 48);
const sealVariants = {
  oneShot: (i) => sealOneShot(chunks[i % 8], `chunk:1:${i}`),
  pieces: (i) => seal(key, chunks[i % 8], `chunk:1:${i}`, envelope),
};

const work = fs.mkdtempSync(path.join(arg('dir', os.tmpdir()), 'bench-backup-put-'));
const sealed = chunks.map((c, i) => seal(key, c, `chunk:1:${i}`));
const keyOf = (round, i) => `accounts/1/chunks/${(i % 256).toString(16).padStart(2, '0')}/r${round}-${i}`;
const putVariants = {
  durable: async (store, round) => {
    await forEach4(CHUNKS, (i) => store.put(keyOf(round, i), sealed[i % 8]));
  },
  deferred: async (store, round) => {
    for (let from = 0; from < CHUNKS; from += SYNC_BATCH) {
      const keys = [];
      await forEach4(Math.min(SYNC_BATCH, CHUNKS - from), async (j) => {
        await store.put(keyOf(round, from + j), sealed[(from + j) % 8], { durable: false });
        keys.push(keyOf(round, from + j));
      });
      await store.sync(keys);
    }
  },
};

/** Four at a time (the data path's lanes were CHUNKS_IN_FLIGHT = 4 when this was measured). */
async function forEach4(n, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function timed(fn) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  const gib = (CHUNKS * CHUNK) / 2 ** 30;
  return { wall: (performance.now() - t0) / 1000 / gib, cpu: (c.user + c.system) / 1e6 / gib };
}

const results = { seal: {}, put: {} };
const load = [os.loadavg()[0]];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? ['b', 'a'] : ['a', 'b'];
    for (const which of order) {
      const name = which === 'a' ? 'oneShot' : 'pieces';
      const r = await timed(async () => {
        for (let i = 0; i < CHUNKS; i++) sealVariants[name](i);
      });
      (results.seal[name] ??= []).push(r);
    }
    for (const which of order) {
      const name = which === 'a' ? 'durable' : 'deferred';
      const root = path.join(work, `${name}-${round}`);
      fs.mkdirSync(root);
      const store = new DirectoryStore(root);
      const r = await timed(() => putVariants[name](store, round));
      (results.put[name] ??= []).push(r);
      fs.rmSync(root, { recursive: true, force: true });
    }
    load.push(os.loadavg()[0]);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
console.log(
  `${CHUNKS} chunks of 4 MiB × ${ROUNDS} rounds, alternated; load average ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}`,
);
console.log('| step | variant | wall s/GiB, median (range) | CPU s/GiB, median (range) |\n|---|---|---|---|');
for (const [step, variants] of Object.entries(results)) {
  for (const [name, rs] of Object.entries(variants)) {
    console.log(`| ${step} | ${name} | ${fmt(rs.map((r) => r.wall))} | ${fmt(rs.map((r) => r.cpu))} |`);
  }
}
