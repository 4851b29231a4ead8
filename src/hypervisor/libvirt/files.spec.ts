import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileHasher, HASH_READ_BYTES, sha256File } from './files';

describe('sha256File', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'files-spec-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function fileOf(name: string, content: Buffer): Promise<string> {
    const f = path.join(dir, name);
    await fsp.writeFile(f, content);
    return f;
  }
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  it('awaits before() ahead of each read: a file its writer is still extending is hashed whole', async () => {
    const content = randomBytes(5 * 4096 + 17);
    const f = await fileOf('growing', content.subarray(0, 4096));
    let written = 4096;
    const asked: number[] = [];
    const r = await sha256File(f, {
      readBytes: 4096,
      // The writer appends only what the next read is about to reach: without the wait the pass
      // would end at the first 4096 bytes.
      before: async (end) => {
        asked.push(end);
        if (end > written && written < content.length) {
          const next = Math.min(end, content.length);
          await fsp.appendFile(f, content.subarray(written, next));
          written = next;
        }
      },
    });
    expect(r).toEqual({ sha256: digest(content), bytes: content.length });
    expect(asked.slice(0, 6)).toEqual([1, 2, 3, 4, 5, 6].map((k) => k * 4096));
  });

  it.each([
    ['empty', 0],
    ['shorter than one read', 999],
    ['exactly two reads', 2 * 4096],
    ['two reads and one byte', 2 * 4096 + 1],
    ['many reads and a partial one', 37 * 4096 + 123],
  ])('hashes every byte once, in order: %s', async (_name, size) => {
    const content = randomBytes(size);
    const f = await fileOf(`f-${size}`, content);
    const seen: number[] = [];
    const r = await sha256File(f, { readBytes: 4096, onBytes: (n) => seen.push(n) });
    expect(r).toEqual({ sha256: digest(content), bytes: size });
    // running count: increasing, one call per block, ending at the size
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.length).toBe(Math.ceil(size / 4096));
    if (size > 0) expect(seen.at(-1)).toBe(size);
  });

  it('uses large reads by default and gives the same digest as with small ones', async () => {
    expect(HASH_READ_BYTES).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    const content = randomBytes(HASH_READ_BYTES * 2 + 12345);
    const f = await fileOf('big', content);
    const calls: number[] = [];
    const r = await new FileHasher().sha256(f, { onBytes: (n) => calls.push(n) });
    expect(r.sha256).toBe(digest(content));
    expect(calls).toEqual([HASH_READ_BYTES, 2 * HASH_READ_BYTES, content.length]);
  });

  it('a flipped byte changes the digest', async () => {
    const content = randomBytes(3 * 4096);
    const a = await sha256File(await fileOf('a', content), { readBytes: 4096 });
    content[content.length >> 1] ^= 0x01;
    const b = await sha256File(await fileOf('b', content), { readBytes: 4096 });
    expect(b.bytes).toBe(a.bytes);
    expect(b.sha256).not.toBe(a.sha256);
  });

  it('stops with an AbortError when the signal aborts, also before the first read', async () => {
    const f = await fileOf('abort', randomBytes(64 * 4096));
    const ac = new AbortController();
    let blocks = 0;
    const p = sha256File(f, {
      readBytes: 4096,
      signal: ac.signal,
      onBytes: () => {
        if (++blocks === 3) ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(blocks).toBe(3);
    await expect(sha256File(f, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('a missing file is ENOENT', async () => {
    await expect(sha256File(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('sha256File memory', () => {
  it('reuses its read buffers: many hashes in a row do not pile up external memory', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'files-spec-mem-'));
    try {
      const f = path.join(dir, 'f');
      await fsp.writeFile(f, randomBytes(HASH_READ_BYTES + 1));
      await sha256File(f); // the buffers exist from here on
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < 20; i++) await sha256File(f);
      // 20 hashes with fresh buffers would hold 20 × 2 × 4 MiB until a GC; reused, nothing grows.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 * HASH_READ_BYTES);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
