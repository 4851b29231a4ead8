import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { pageAlignedBuffer } from '../../../common/aligned-buffers';

import { MapEntry } from '../tools/qemu-img';
import { clusterAligned, MappedImage } from './mapped-image';

const K = 64 * 1024;
const execFileAsync = promisify(execFile);

const entry = (start: number, length: number, o: Partial<MapEntry> = {}): MapEntry => ({
  start,
  length,
  depth: 0,
  present: true,
  zero: false,
  data: true,
  offset: null,
  ...o,
});

describe('clusterAligned', () => {
  it('rounds out to 64 KiB clusters, merges touching and overlapping extents, clips to the disk', () => {
    expect(
      clusterAligned(
        [
          { offset: 3 * K + 100, length: 10 },
          { offset: 0, length: 1 },
          { offset: K - 1, length: 2 },
          { offset: 10 * K, length: 0 },
          { offset: 5 * K, length: 2 * K },
          { offset: 11 * K + 7, length: K },
        ],
        11 * K + 100,
      ),
    ).toEqual([
      { offset: 0, length: 2 * K },
      { offset: 3 * K, length: K },
      { offset: 5 * K, length: 2 * K },
      { offset: 11 * K, length: 100 },
    ]);
  });
});

describe('MappedImage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'mapped-image-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('reads guest ranges from their host offsets, zeros elsewhere, across entries', async () => {
    const file = path.join(dir, 'img');
    // Host layout: guest [K, 2K) at host 0; guest [3K, 4K) at host K.
    await fsp.writeFile(file, Buffer.concat([Buffer.alloc(K, 'a'), Buffer.alloc(K, 'b')]));
    const img = await MappedImage.open(
      file,
      [
        entry(0, K, { data: false, present: false, zero: true }),
        entry(K, K, { offset: 0 }),
        entry(2 * K, K, { data: false, zero: true }),
        entry(3 * K, K, { offset: K }),
      ],
      4 * K,
    );
    try {
      const got = await img.read(K - 2, 2 * K + 4);
      expect(got.subarray(0, 2).equals(Buffer.alloc(2))).toBe(true);
      expect(got.subarray(2, K + 2).equals(Buffer.alloc(K, 'a'))).toBe(true);
      expect(got.subarray(K + 2, 2 * K + 2).equals(Buffer.alloc(K))).toBe(true);
      expect(got.subarray(2 * K + 2).toString()).toBe('bb');
      // Into a buffer holding other bytes: every hole (leading, between, trailing) zeroed over them.
      const into = Buffer.alloc(4 * K + 1, 0xee);
      const reused = await img.read(0, 4 * K, into);
      expect(reused.buffer).toBe(into.buffer);
      expect(reused.length).toBe(4 * K);
      expect(reused.equals(await img.read(0, 4 * K))).toBe(true);
      expect(into[4 * K]).toBe(0xee);
      const tail = await img.read(K + 1, 2 * K - 1, into);
      expect(tail.subarray(0, K - 1).equals(Buffer.alloc(K - 1, 'a'))).toBe(true);
      expect(tail.subarray(K - 1).equals(Buffer.alloc(K))).toBe(true);
      await expect(img.read(0, 2 * K, Buffer.alloc(K))).rejects.toThrow(RangeError);
      expect(img.dataExtents()).toEqual([
        { offset: K, length: K },
        { offset: 3 * K, length: K },
      ]);
    } finally {
      await img.close();
    }
  });

  it('reads into page-aligned memory with O_DIRECT (the page cache untouched), the same bytes as without', async () => {
    const file = path.join(dir, 'img');
    const host = randomBytes(4 * K);
    await fsp.writeFile(file, host);
    await fsp.open(file, 'r').then(async (h) => {
      await h.datasync();
      await h.close();
    });
    // Drop the file from the page cache (POSIX_FADV_DONTNEED through dd), then read it directly.
    await execFileAsync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    const entries = [entry(0, 2 * K, { offset: 2 * K }), entry(2 * K, 2 * K, { offset: 0 })];
    const img = await MappedImage.open(file, entries, 4 * K);
    try {
      const aligned = pageAlignedBuffer(4 * K).fill(0xee);
      const got = await img.read(0, 4 * K, aligned);
      expect(got.buffer).toBe(aligned.buffer);
      const expected = Buffer.concat([host.subarray(2 * K), host.subarray(0, 2 * K)]);
      expect(got.equals(expected)).toBe(true);
      const { stdout } = await execFileAsync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file]);
      expect(Number(stdout.trim())).toBe(0);
      // An unaligned piece (not a multiple of the block) goes through the page cache: the same bytes.
      expect((await img.read(100, 5000, pageAlignedBuffer(K))).equals(expected.subarray(100, 5100))).toBe(
        true,
      );
    } finally {
      await img.close();
    }
  });

  it('refuses an image whose data lies in a backing file or in compressed clusters', async () => {
    const file = path.join(dir, 'img');
    await fsp.writeFile(file, '');
    await expect(MappedImage.open(file, [entry(0, K, { depth: 1, offset: 0 })], K)).rejects.toMatchObject({
      code: 'hypervisor_error',
    });
    await expect(MappedImage.open(file, [entry(0, K, { offset: null })], K)).rejects.toMatchObject({
      code: 'hypervisor_error',
    });
  });
});
