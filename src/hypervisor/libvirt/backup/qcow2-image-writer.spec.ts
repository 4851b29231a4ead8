import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { pageAlignedBuffer } from '../../../common/aligned-buffers';
import { isHypervisorError } from '../../hypervisor-driver';
import { Qcow2ImageWriter } from './qcow2-image-writer';

const execFileAsync = promisify(execFile);
const MIB = 1024 * 1024;

async function qemuImg(...args: string[]): Promise<string> {
  return (await execFileAsync('qemu-img', args, { maxBuffer: 64 * MIB })).stdout;
}

/** The guest's view of `image`, through qemu: its raw bytes. */
async function guestBytes(image: string, dir: string): Promise<Buffer> {
  const raw = path.join(dir, `${path.basename(image)}.raw`);
  await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', image, raw);
  return fsp.readFile(raw);
}

interface MapRow {
  start: number;
  length: number;
  data: boolean;
}

describe('Qcow2ImageWriter', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qcow2-writer-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('writes an image qemu checks clean and reads back as written, holes unallocated', async () => {
    // 4 KiB clusters: an L2 table maps 2 MiB and a refcount block counts 8 MiB of file, so 40 MiB of
    // data spans many of each; the size is not whole clusters, so the last write is short.
    const size = 64 * MIB + 1536;
    const image = path.join(dir, 'small.qcow2');
    const w = await Qcow2ImageWriter.create(image, size, { clusterBits: 12 });
    const expected = Buffer.alloc(size);
    const writes: [number, Buffer][] = [];
    for (let o = 0; o < 64 * MIB; o += 4 * MIB) {
      if ((o / (4 * MIB)) % 3 === 1) continue; // every third chunk a hole
      writes.push([o, randomBytes(4 * MIB)]);
    }
    writes.push([64 * MIB, randomBytes(1536)]);
    writes.reverse(); // the host clusters are taken in arrival order, not the guest's
    // Overlapping in time, as a restore's lanes write; aligned memory goes through O_DIRECT.
    await Promise.all(
      writes.map(async ([o, data], i) => {
        const body = i % 2 === 0 ? data : pageAlignedBuffer(data.length).subarray(0, data.length);
        data.copy(body);
        await w.write(o, body);
        data.copy(expected, o);
      }),
    );
    await w.finish();

    await qemuImg('check', '-f', 'qcow2', image); // exit 0: no errors, no leaks
    const info = JSON.parse(await qemuImg('info', '--output=json', image)) as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': size, 'cluster-size': 4096 });
    expect((await guestBytes(image, dir)).equals(expected)).toBe(true);
    const map = JSON.parse(await qemuImg('map', '--output=json', image)) as MapRow[];
    const hole = (o: number) => map.find((e) => e.start <= o && o < e.start + e.length)!;
    expect(hole(4 * MIB).data).toBe(false);
    expect(hole(8 * MIB - 1).data).toBe(false);
    expect(hole(0).data).toBe(true);
    // Only what was written takes space: 44 MiB of data and the tables.
    const { blocks } = await fsp.stat(image);
    expect(blocks * 512).toBeLessThan(46 * MIB);
  });

  it('at the default 64 KiB clusters writes whole chunks in place, and a cluster written twice holds the last write', async () => {
    const size = 256 * MIB;
    const image = path.join(dir, 'default.qcow2');
    const w = await Qcow2ImageWriter.create(image, size);
    const chunk = pageAlignedBuffer(4 * MIB);
    const expected = Buffer.alloc(size);
    for (const o of [200 * MIB, 0, 128 * MIB - 4 * MIB]) {
      randomBytes(4 * MIB).copy(chunk);
      await w.write(o, chunk);
      chunk.copy(expected, o);
    }
    const again = randomBytes(128 * 1024); // two clusters inside the first chunk written
    await w.write(200 * MIB + 64 * 1024, again);
    again.copy(expected, 200 * MIB + 64 * 1024);
    await w.finish();
    await qemuImg('check', '-f', 'qcow2', image);
    expect((await guestBytes(image, dir)).equals(expected)).toBe(true);
  });

  it('a write over clusters written before and holes between them keeps the written ones in place, across L2 tables', async () => {
    // 4 KiB clusters: an L2 table maps 2 MiB. Small writes one after another (runs that continue each
    // other), then out of order, then one write over all of them and the holes between.
    const size = 8 * MIB;
    const image = path.join(dir, 'rewrite.qcow2');
    const w = await Qcow2ImageWriter.create(image, size, { clusterBits: 12 });
    const expected = Buffer.alloc(size);
    const write = async (o: number, length: number) => {
      const data = randomBytes(length);
      await w.write(o, data);
      data.copy(expected, o);
    };
    for (let o = 1 * MIB; o < 1 * MIB + 64 * 1024; o += 4096) await write(o, 4096);
    for (const o of [3 * MIB, 2 * MIB - 8192, 5 * MIB + 4096, 2 * MIB + 4096]) await write(o, 8192);
    const before = (await fsp.stat(image)).size;
    await write(1 * MIB + 32 * 1024, 5 * MIB); // to 6 MiB + 32 KiB, over three table boundaries
    await write(size - 4096, 4096);
    await w.finish();
    await qemuImg('check', '-f', 'qcow2', image);
    expect((await guestBytes(image, dir)).equals(expected)).toBe(true);
    // The clusters written before were not taken again: the file grew by the rest only.
    const written = 64 * 1024 + 4 * 8192;
    const overlap = 32 * 1024 + 4 * 8192; // the last half of the first run and the four pairs
    expect(before).toBe((1 + written / 4096) * 4096);
    const map = JSON.parse(await qemuImg('map', '--output=json', image)) as MapRow[];
    const dataBytes = map.filter((e) => e.data).reduce((sum, e) => sum + e.length, 0);
    expect(dataBytes).toBe(written + 5 * MIB - overlap + 4096);
    const { size: fileSize } = await fsp.stat(image);
    const tables = 4 /* L2 */ + 1 /* L1 */ + 1 /* refcount block */ + 1; /* refcount table */
    expect(fileSize).toBe((1 + dataBytes / 4096 + tables) * 4096);
  });

  it("holds a few bytes per write, not an L2 table per 512 MiB written to: small writes over a 512 GiB disk's every table", async () => {
    const size = 512 * 1024 * MIB;
    const tables = size / (512 * MIB); // at 64 KiB clusters an L2 table maps 512 MiB
    const image = path.join(dir, 'sparse.qcow2');
    const w = await Qcow2ImageWriter.create(image, size);
    const cluster = pageAlignedBuffer(64 * 1024);
    // What stays reachable, the collector run first (else it could run mid-loop and hide the growth).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const held = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = held();
    for (let t = 0; t < tables; t++) {
      cluster.fill(t % 251);
      await w.write(t * 512 * MIB + (t % 8192) * 64 * 1024, cluster);
    }
    const grew = held() - before;
    // A table kept whole is 32 KiB each (32 MiB here); a run is a few bytes.
    expect(grew).toBeLessThan(tables * 4 * 1024);
    await w.finish();

    await qemuImg('check', '-f', 'qcow2', image);
    const map = JSON.parse(await qemuImg('map', '--output=json', image)) as MapRow[];
    const data = map.filter((e) => e.data).map((e) => [e.start, e.length]);
    expect(data).toEqual(
      Array.from({ length: tables }, (_, t) => [t * 512 * MIB + (t % 8192) * 64 * 1024, 64 * 1024]),
    );
    const reads = Array.from({ length: tables }, (_, t) => [
      '-c',
      `read -q -P ${t % 251} ${t * 512 * MIB + (t % 8192) * 64 * 1024} 64k`,
    ]).flat();
    expect(await execFileAsync('qemu-io', ['-r', '-f', 'qcow2', ...reads, image])).toEqual({
      stdout: '',
      stderr: '',
    });
  });

  it('writes through the page cache where the file system refuses O_DIRECT (tmpfs)', async () => {
    const shm = await fsp.mkdtemp('/dev/shm/qcow2-writer-');
    try {
      const image = path.join(shm, 'tmpfs.qcow2');
      const w = await Qcow2ImageWriter.create(image, 8 * MIB);
      const data = pageAlignedBuffer(4 * MIB)
        .fill(7)
        .subarray(0, 4 * MIB);
      await w.write(4 * MIB, data);
      await w.finish();
      await qemuImg('check', '-f', 'qcow2', image);
      const bytes = await guestBytes(image, dir);
      expect(bytes.subarray(4 * MIB).equals(data)).toBe(true);
      expect(bytes.subarray(0, 4 * MIB).equals(Buffer.alloc(4 * MIB))).toBe(true);
    } finally {
      await fsp.rm(shm, { recursive: true, force: true });
    }
  });

  it('an image nothing was written to is an empty disk of the size', async () => {
    const image = path.join(dir, 'empty.qcow2');
    const w = await Qcow2ImageWriter.create(image, 3 * 1024 * MIB);
    await w.finish();
    await qemuImg('check', '-f', 'qcow2', image);
    const map = JSON.parse(await qemuImg('map', '--output=json', image)) as MapRow[];
    expect(map).toEqual([expect.objectContaining({ start: 0, length: 3 * 1024 * MIB, data: false })]);
  });

  it('refuses writes that are not whole clusters, outside the disk, or after the finish; a file that exists', async () => {
    const image = path.join(dir, 'refusals.qcow2');
    const w = await Qcow2ImageWriter.create(image, 8 * MIB);
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: unknown) => (isHypervisorError(e) ? `${e.code}: ${e.detail}` : String(e)),
      );
    expect(await code(w.write(512, Buffer.alloc(64 * 1024)))).toMatch(
      /^hypervisor_error: .*whole 65536-byte clusters/,
    );
    expect(await code(w.write(0, Buffer.alloc(1000)))).toMatch(/whole 65536-byte clusters/);
    expect(await code(w.write(8 * MIB - 64 * 1024, Buffer.alloc(128 * 1024)))).toMatch(/outside the disk/);
    expect(await code(w.write(0, Buffer.alloc(0)))).toMatch(/outside the disk/);
    await w.finish();
    expect(await code(w.write(0, Buffer.alloc(64 * 1024)))).toMatch(/after it was finished/);
    await expect(Qcow2ImageWriter.create(image, 8 * MIB)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(Qcow2ImageWriter.create(path.join(dir, 'odd.qcow2'), 1000)).rejects.toMatchObject({
      code: 'hypervisor_error',
    });
  });
});
