/**
 * A backup-store writer killed (SIGKILL) in the middle of a put never leaves a partial object: the key
 * holds the last acknowledged object or the one being written, whole, and only a temporary file that
 * no listing shows and the start-up sweep removes. The writer is a real process using the built store.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DirectoryStore, TEMP_DIR } from '../../src/backup-store/directory-store';
import { recordFigures, ROOT, sleep } from './support/fault-env';

const DIST = path.resolve(ROOT, process.env.FAULT_APP_DIST ?? 'dist');
const KEY = 'accounts/1/manifests/9';
const SIZE = 4 * 1024 * 1024;

/**
 * Rewrites KEY forever with bodies of one repeated byte (the round number), printing each acknowledged
 * one; argv[2] "deferred": puts with `durable: false`, each followed by a `sync` (as the data path
 * writes its chunks), so a kill also lands between a put and its sync.
 */
const WRITER = `
const { DirectoryStore } = require(${JSON.stringify(path.join(DIST, 'backup-store/directory-store.js'))});
const store = new DirectoryStore(process.argv[1]);
const deferred = process.argv[2] === 'deferred';
(async () => {
  for (let i = 1; ; i++) {
    await store.put(${JSON.stringify(KEY)}, Buffer.alloc(${SIZE}, i % 256), { durable: !deferred });
    if (deferred) await store.sync([${JSON.stringify(KEY)}]);
    process.stdout.write(i + '\\n');
  }
})();`;

describe('backup store: a writer killed mid-put', () => {
  it.each(['durable', 'deferred'])(
    '%s puts: the previous or the new object whole, never a part; the sweep removes its temporary file',
    async (mode) => {
      const root = await mkdtemp(path.join(tmpdir(), 'backup-store-crash-'));
      const rounds = 8;
      let checked = 0;
      const started = Date.now();
      try {
        for (let round = 0; round < rounds; round++) {
          const child = spawn(process.execPath, ['-e', WRITER, root, mode], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let acked = 0;
          child.stdout.on('data', (d: Buffer) => {
            const last = d.toString().trim().split('\n').pop();
            acked = Number(last);
          });
          while (acked < 2) await sleep(5);
          await sleep(round * 7); // a different point of the put each round
          child.kill('SIGKILL');
          await new Promise((r) => child.once('close', r)); // its output read to the end

          const store = new DirectoryStore(root);
          const body = await store.get(KEY);
          expect(body.length).toBe(SIZE);
          const value = body[0];
          expect(body.every((b) => b === value)).toBe(true);
          // Acknowledged puts are durable: the key holds the last one acknowledged or a later one.
          expect([acked % 256, (acked + 1) % 256]).toContain(value);
          const listed = [];
          for await (const o of store.list('')) listed.push(o.key);
          expect(listed).toEqual([KEY]);
          expect((await readdir(path.join(root, TEMP_DIR))).length).toBeLessThanOrEqual(1);
          await store.sweepTemporaryFiles(-1);
          expect(await readdir(path.join(root, TEMP_DIR))).toEqual([]);
          checked++;
        }
      } finally {
        await rm(root, { recursive: true, force: true });
      }
      recordFigures({
        guarantee: 'a killed backup-store writer leaves no partial object',
        file: 'test/faults/backup-store-crash.fault-spec.ts',
        test: `writer SIGKILLed mid-put (${mode} puts)`,
        faults: rounds,
        checked,
        lost: 0,
        ms: Date.now() - started,
      });
    },
    120_000,
  );
});
