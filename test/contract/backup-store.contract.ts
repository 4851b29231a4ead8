import { randomBytes } from 'node:crypto';
import {
  BACKUP_STORE_ERROR_CODES,
  BackupStore,
  BackupStoreError,
  BackupStoreErrorCode,
  StoredObject,
} from '../../src/backup-store/backup-store';

/**
 * The one suite every `BackupStore` must pass (the specification is `src/backup-store/backup-store.ts`).
 * A store's spec file calls `describeBackupStoreContract` with a harness factory: the store under test,
 * empty and used by this suite only, plus what the suite needs to observe that nothing was left behind.
 */
export interface StoreHarness {
  /** The store under test, empty. */
  readonly store: BackupStore;
  /** The same storage with a multipart threshold of ~8 MiB (stores without one: the same store). */
  readonly storeWithSmallParts: BackupStore;
  /** Anything a put left that is no object: temporary files, unfinished multipart uploads. */
  leftovers(): Promise<string[]>;
  /** A store of this kind whose storage cannot be reached. */
  unreachable(): BackupStore;
  dispose(): Promise<void>;
}

const MiB = 1024 * 1024;

async function rejection(p: Promise<unknown>): Promise<BackupStoreError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BackupStoreError);
    expect(BACKUP_STORE_ERROR_CODES).toContain((e as BackupStoreError).code);
    return e as BackupStoreError;
  }
  throw new Error('expected a rejection, the call succeeded');
}

async function expectCode(p: Promise<unknown>, code: BackupStoreErrorCode): Promise<BackupStoreError> {
  const e = await rejection(p);
  expect(e.code).toBe(code);
  return e;
}

async function collect(it: AsyncIterable<StoredObject>): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  for await (const o of it) out.push(o);
  return out;
}

/** Run `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

const INVALID_KEYS = [
  '',
  '/a',
  'a/',
  'a//b',
  'Upper',
  'a/../b',
  '.',
  '..',
  'a b',
  'é',
  'a\\b',
  'a~b',
  'x'.repeat(513),
];

export function describeBackupStoreContract(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`BackupStore contract: ${name}`, () => {
    let h: StoreHarness;
    beforeEach(async () => {
      h = await makeHarness();
    });
    afterEach(async () => {
      await h?.dispose();
    });

    it('chunk-sized objects of any length round-trip, durable or not, into reused buffers or not', async () => {
      // Lengths around the block sizes a store may align its I/O to (a sealed 4 MiB chunk is 4 MiB + 48).
      const lengths = [4 * MiB + 48, 4 * MiB, MiB + 1, 2 * MiB - 4095];
      const reused = Buffer.alloc(4 * MiB + 4096, 0xee);
      for (const [n, length] of lengths.entries()) {
        const key = `accounts/1/chunks/cs/${n}`;
        const body = randomBytes(length);
        await h.store.put(key, body, { durable: n % 2 === 0 });
        if (n % 2 === 1) await h.store.sync([key]);
        expect((await h.store.get(key)).equals(body)).toBe(true);
        const got = await h.store.get(key, { into: reused });
        expect(got.equals(body)).toBe(true);
        expect(await h.store.head(key)).toMatchObject({ sizeBytes: length });
        // Too small a buffer: the bytes all the same.
        expect((await h.store.get(key, { into: Buffer.alloc(length - 1) })).equals(body)).toBe(true);
      }
      expect(await h.leftovers()).toEqual([]);
    });

    it('put then get returns the same bytes; head gives size and time', async () => {
      const body = randomBytes(100_000);
      const before = Date.now();
      await h.store.put('accounts/1/chunks/ab/abc', body);
      expect((await h.store.get('accounts/1/chunks/ab/abc')).equals(body)).toBe(true);
      // Into a reused buffer holding other bytes (read there or not), or one too small: the same bytes.
      for (const into of [Buffer.alloc(200_000, 0xee), Buffer.alloc(10, 0xee)]) {
        const got = await h.store.get('accounts/1/chunks/ab/abc', { into });
        expect(got.equals(body)).toBe(true);
        if (got.buffer === into.buffer) expect(into[body.length]).toBe(0xee);
      }
      const head = await h.store.head('accounts/1/chunks/ab/abc');
      expect(head).toMatchObject({ key: 'accounts/1/chunks/ab/abc', sizeBytes: 100_000 });
      expect(head!.modifiedAt.getTime()).toBeGreaterThan(before - 5 * 60_000);
      await h.store.put('empty', Buffer.alloc(0));
      expect((await h.store.get('empty')).length).toBe(0);
      expect(await h.leftovers()).toEqual([]);
    });

    it('a put over an existing key replaces the whole object', async () => {
      await h.store.put('m/1', Buffer.from('first version, longer than the second'));
      await h.store.put('m/1', Buffer.from('second'));
      expect((await h.store.get('m/1')).toString()).toBe('second');
      expect((await h.store.head('m/1'))!.sizeBytes).toBe(6);
    });

    it('a put with durable: false is whole to readers at once; sync takes its keys, missing ones too', async () => {
      const bodies = Array.from({ length: 12 }, () => randomBytes(300_000));
      const keys = bodies.map((_, i) => `accounts/1/chunks/${i % 3}${i}/chunk-${i}`);
      await inParallel(
        bodies.map((b, i) => [keys[i], b] as const),
        4,
        ([k, b]) => h.store.put(k, b, { durable: false }),
      );
      for (const [i, k] of keys.entries()) expect((await h.store.get(k)).equals(bodies[i])).toBe(true);
      await h.store.put(keys[0], Buffer.from('replaced'), { durable: false });
      expect((await h.store.get(keys[0])).toString()).toBe('replaced');
      await h.store.sync([...keys, keys[1], 'accounts/1/chunks/none/missing']);
      await h.store.sync([]);
      expect((await collect(h.store.list('accounts/1/'))).map((o) => o.key)).toEqual([...keys].sort());
      expect(await h.leftovers()).toEqual([]);
      await expectCode(h.store.sync(['a//b']), 'invalid_key');
      const aborted = new AbortController();
      aborted.abort();
      await expectCode(h.store.sync(keys, { signal: aborted.signal }), 'cancelled');
    });

    it('get of a missing key is not_found; head is null', async () => {
      await expectCode(h.store.get('no/such/key'), 'not_found');
      await expectCode(h.store.get('no/such/key', { into: Buffer.alloc(8192) }), 'not_found');
      expect(await h.store.head('no/such/key')).toBeNull();
      await h.store.put('some/dir/obj', Buffer.from('x'));
      // A "directory" of other keys is no object.
      await expectCode(h.store.get('some/dir'), 'not_found');
      await expectCode(h.store.get('some/dir', { into: Buffer.alloc(8192) }), 'not_found');
      expect(await h.store.head('some/dir')).toBeNull();
    });

    it('invalid keys and prefixes are invalid_key for every call', async () => {
      for (const key of INVALID_KEYS) {
        await expectCode(h.store.put(key, Buffer.from('x')), 'invalid_key');
        await expectCode(h.store.get(key), 'invalid_key');
        await expectCode(h.store.head(key), 'invalid_key');
        await expectCode(h.store.delete(key), 'invalid_key');
      }
      await expectCode(collect(h.store.list('../')), 'invalid_key');
      await expectCode(collect(h.store.list('A')), 'invalid_key');
      const longest = `${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(110)}`;
      expect(Buffer.byteLength(longest)).toBe(512);
      await h.store.put(longest, Buffer.from('the longest key'));
      expect((await h.store.get(longest)).toString()).toBe('the longest key');
      expect(await collect(h.store.list(''))).toHaveLength(1);
    });

    it('delete removes the object and is idempotent', async () => {
      await h.store.delete('never/written');
      await h.store.put('d/1', Buffer.from('x'));
      await h.store.delete('d/1');
      await h.store.delete('d/1');
      await expectCode(h.store.get('d/1'), 'not_found');
      expect(await collect(h.store.list('d/'))).toEqual([]);
    });

    it('list gives every key under a prefix in byte order, across pages of 1000', async () => {
      const many = Array.from({ length: 1005 }, (_, i) => `p/n/${String(i).padStart(4, '0')}`);
      const tricky = ['p/a-b', 'p/a/c', 'p/a.d', 'p/a_e', 'p/a0', 'q/other'];
      await inParallel([...many, ...tricky], 16, (k) => h.store.put(k, Buffer.from(k)));
      const all = await collect(h.store.list('p/'));
      const expected = [...many, ...tricky.filter((k) => k.startsWith('p/'))].sort((a, b) =>
        Buffer.compare(Buffer.from(a), Buffer.from(b)),
      );
      expect(all.map((o) => o.key)).toEqual(expected);
      expect(all.find((o) => o.key === 'p/a-b')!.sizeBytes).toBe(5);
      // A partial last segment matches keys and "directories" alike.
      expect((await collect(h.store.list('p/a'))).map((o) => o.key)).toEqual([
        'p/a-b',
        'p/a.d',
        'p/a/c',
        'p/a0',
        'p/a_e',
      ]);
      expect((await collect(h.store.list('p/n/099'))).map((o) => o.key)).toEqual(
        Array.from({ length: 10 }, (_, i) => `p/n/099${i}`),
      );
      expect(await collect(h.store.list('nothing/here/'))).toEqual([]);
      expect((await collect(h.store.list(''))).length).toBe(1005 + tricky.length);
    }, 120_000);

    it('a large object goes up whole (multipart where the store has it)', async () => {
      const body = randomBytes(21 * MiB);
      await h.storeWithSmallParts.put('big/one', body);
      expect((await h.store.get('big/one')).equals(body)).toBe(true);
      expect((await h.store.head('big/one'))!.sizeBytes).toBe(body.length);
      expect(await h.leftovers()).toEqual([]);
    }, 60_000);

    it('a cancelled put leaves no object, keeps the one it would replace, and leaves nothing behind', async () => {
      const before = new AbortController();
      before.abort();
      await expectCode(h.store.put('c/1', Buffer.from('x'), { signal: before.signal }), 'cancelled');
      expect(await h.store.head('c/1')).toBeNull();

      for (const store of [h.store, h.storeWithSmallParts]) {
        const during = new AbortController();
        const put = store.put('c/2', randomBytes(40 * MiB), { signal: during.signal });
        setImmediate(() => during.abort());
        await expectCode(put, 'cancelled');
        expect(await h.store.head('c/2')).toBeNull();
      }

      await h.store.put('c/3', Buffer.from('old'));
      const replacing = new AbortController();
      const put = h.store.put('c/3', randomBytes(40 * MiB), { signal: replacing.signal });
      setImmediate(() => replacing.abort());
      await expectCode(put, 'cancelled');
      expect((await h.store.get('c/3')).toString()).toBe('old');
      expect((await collect(h.store.list('c/'))).map((o) => o.key)).toEqual(['c/3']);
      expect(await h.leftovers()).toEqual([]);
    }, 60_000);

    it('reads and listings stop with cancelled when the signal has fired', async () => {
      await h.store.put('r/1', Buffer.from('x'));
      const aborted = new AbortController();
      aborted.abort();
      await expectCode(h.store.get('r/1', { signal: aborted.signal }), 'cancelled');
      await expectCode(h.store.head('r/1', { signal: aborted.signal }), 'cancelled');
      await expectCode(collect(h.store.list('r/', { signal: aborted.signal })), 'cancelled');
    });

    it('unreachable storage is unavailable (retryable), with no location in the message', async () => {
      const store = h.unreachable();
      const e = await expectCode(store.put('u/1', Buffer.from('x')), 'unavailable');
      expect(e.retryable).toBe(true);
      expect(e.message).toBe('backup storage: unavailable');
      await expectCode(store.get('u/1'), 'unavailable');
    }, 60_000);
  });
}
