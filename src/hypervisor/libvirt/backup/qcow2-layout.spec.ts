import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { DiskExtent, isHypervisorError } from '../../hypervisor-driver';
import { MapEntry } from '../tools/qemu-img';
import { clusterAligned } from './mapped-image';
import { QCOW2_HEADER } from './qcow2-format';
import { Qcow2Layout, readQcow2Layout } from './qcow2-layout';

const K = 1024;
const M = 1024 * K;
const run = promisify(execFile);

/** The image's data as `qemu-img map` says, merged the same way: the reference the reader must match. */
async function mappedData(file: string): Promise<{ start: number; length: number; offset: number }[]> {
  const { stdout } = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', file]);
  const out: { start: number; length: number; offset: number }[] = [];
  for (const e of JSON.parse(stdout) as Array<Record<string, unknown>>) {
    if (e.data !== true || e.zero === true) continue;
    const [start, length, offset] = [Number(e.start), Number(e.length), Number(e.offset)];
    const last = out.at(-1);
    if (last && last.start + last.length === start && last.offset + last.length === offset)
      last.length += length;
    else out.push({ start, length, offset });
  }
  return out;
}

const runs = (data: readonly MapEntry[]) =>
  data.map((e) => ({ start: e.start, length: e.length, offset: e.offset as number }));

async function layout(file: string, bitmap: string | null = null): Promise<Qcow2Layout> {
  const fh = await fsp.open(file, 'r');
  try {
    return await readQcow2Layout(fh, file, bitmap);
  } finally {
    await fh.close();
  }
}

async function refusal(file: string, bitmap: string | null = null): Promise<string> {
  try {
    await layout(file, bitmap);
  } catch (e) {
    return isHypervisorError(e) ? `${e.code}: ${e.detail}` : `not a driver error: ${String(e)}`;
  }
  return 'read';
}

/** qemu-io writes (`-z`: as zeros, `discard`), one process: what a guest's writes do to the image. */
async function io(file: string, ...commands: string[]): Promise<void> {
  await run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
}

describe('readQcow2Layout', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qcow2-layout-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['64 KiB clusters over several L2 tables', 65536],
    ['4 KiB clusters: many L2 tables', 4096],
  ])('finds the data where qemu-img map does (%s)', async (_what, clusterSize) => {
    const file = path.join(dir, 'disk.qcow2');
    // Not a whole number of clusters: the last one is partial.
    const size = 1536 * M + 4 * K;
    await run('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      `cluster_size=${clusterSize}`,
      file,
      String(size),
    ]);
    await io(
      file,
      'write -P 1 0 192k',
      'write -P 2 700m 3m',
      'write -P 3 1000m 64k',
      'write -P 4 1536m 4k', // the partial last cluster
      'write -z 701m 128k', // zero clusters inside data
      'discard 1000m 64k',
      'write -P 5 10m 1m', // allocated after the others: not contiguous with its neighbours on the host
      'write -P 6 512m 64k', // the first cluster of an L2 table (64 KiB clusters)
    );
    const got = await layout(file);
    expect(got.virtualSize).toBe(size);
    expect(got.dirty).toBeNull();
    expect(runs(got.data)).toEqual(await mappedData(file));
    expect(got.data.length).toBeGreaterThan(4);
    expect(got.data.every((e) => e.depth === 0 && e.data && !e.zero)).toBe(true);
  });

  it("lists a bitmap's dirty ranges: what was written since it was added, at its granularity", async () => {
    const file = path.join(dir, 'disk.qcow2');
    const size = 3 * 1024 * M;
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(size)]);
    await io(file, 'write -P 1 0 8m', 'write -P 1 2g 8m');
    await run('qemu-img', ['bitmap', '--add', '-f', 'qcow2', file, 'b0']);
    const firstWrites: DiskExtent[] = [
      { offset: 4 * M + 100, length: 10 }, // inside a cluster: the whole cluster is dirty
      { offset: 2048 * M - 64 * K, length: 192 * K }, // across 2 GiB
      { offset: size - 4 * K, length: 4 * K }, // the last cluster
    ];
    await io(file, ...firstWrites.map((w) => `write -P 7 ${w.offset} ${w.length}`));
    // A second bitmap, coarser, sees only what comes after it.
    await run('qemu-img', ['bitmap', '--add', '-g', String(M), '-f', 'qcow2', file, 'b1']);
    const later: DiskExtent = { offset: 100 * M + 10 * K, length: 20 * K };
    await io(file, `write -P 8 ${later.offset} ${later.length}`, 'write -z 1g 64k');
    const zeroWrite: DiskExtent = { offset: 1024 * M, length: 64 * K };

    const b0 = await layout(file, 'b0');
    expect(b0.dirty).toEqual(clusterAligned([...firstWrites, later, zeroWrite], size));
    const b1 = await layout(file, 'b1');
    expect(b1.dirty).toEqual([
      { offset: 100 * M, length: M },
      { offset: 1024 * M, length: M },
    ]);
    expect(runs(b1.data)).toEqual(await mappedData(file));

    // A fresh bitmap: nothing dirty.
    await run('qemu-img', ['bitmap', '--add', '-f', 'qcow2', file, 'b2']);
    expect((await layout(file, 'b2')).dirty).toEqual([]);
  });

  it('reads a bitmap table entry without a cluster whose flag says all ones as all dirty', async () => {
    // qemu writes a full cluster of set bits as a cluster; another writer may store the flag instead.
    // 16 MiB at 512-byte granularity is exactly one 4 KiB cluster of bits: one table entry.
    const file = path.join(dir, 'disk.qcow2');
    const size = 16 * M;
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', file, String(size)]);
    await run('qemu-img', ['bitmap', '--add', '-g', '512', '-f', 'qcow2', file, 'all']);
    await io(file, `write -P 17 0 ${size}`);
    expect((await layout(file, 'all')).dirty).toEqual([{ offset: 0, length: size }]);
    // The bits' cluster is the only 4 KiB of 0xff in the file (the data is 0x11); the table entry is
    // the one 8-byte word naming its offset. It becomes "no cluster, all ones", the cluster zeros.
    const image = await fsp.readFile(file);
    const ones = Buffer.alloc(4 * K, 0xff);
    let bits = -1;
    for (let at = 0; at < image.length && bits < 0; at += 4 * K) {
      if (image.subarray(at, at + 4 * K).equals(ones)) bits = at;
    }
    const word = Buffer.alloc(8);
    word.writeBigUInt64BE(BigInt(bits));
    const entries: number[] = [];
    for (let at = 0; at < image.length; at += 8)
      if (image.subarray(at, at + 8).equals(word)) entries.push(at);
    expect(bits).toBeGreaterThan(0);
    expect(entries).toHaveLength(1);
    const patch = async (entry: bigint, cluster: Buffer | null) => {
      word.writeBigUInt64BE(entry);
      const fh = await fsp.open(file, 'r+');
      await fh.write(word, 0, 8, entries[0]);
      if (cluster) await fh.write(cluster, 0, cluster.length, bits);
      await fh.close();
    };
    await patch(1n, Buffer.alloc(4 * K));
    expect((await layout(file, 'all')).dirty).toEqual([{ offset: 0, length: size }]);
    // The same entry without the flag: nothing dirty.
    await patch(0n, null);
    expect((await layout(file, 'all')).dirty).toEqual([]);
  });

  it('refuses a bitmap that is missing, disabled or left in use', async () => {
    const file = path.join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(64 * M)]);
    await run('qemu-img', ['bitmap', '--add', '-f', 'qcow2', file, 'on']);
    await run('qemu-img', ['bitmap', '--add', '--disable', '-f', 'qcow2', file, 'off']);
    expect(await refusal(file, 'on')).toBe('read');
    expect(await refusal(file, 'nope')).toMatch(/^hypervisor_error: .*no consistent bitmap nope/);
    expect(await refusal(file, 'off')).toMatch(/bitmap off is not consistent/);
    // A qemu killed with the image open leaves its bitmaps in use (and the autoclear bit as it was).
    const held = execFile('qemu-io', ['-f', 'qcow2', file]);
    await new Promise((resolve) => held.stdout?.once('data', resolve));
    held.kill('SIGKILL');
    await new Promise((resolve) => held.once('exit', resolve));
    expect(await refusal(file, 'on')).toMatch(/bitmap on is not consistent/);
    // The map alone is still read.
    expect(await refusal(file)).toBe('read');
  });

  it('refuses what is not read in place: a backing file, compressed clusters, encryption, not qcow2', async () => {
    const base = path.join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(4 * M)]);
    const overlay = path.join(dir, 'overlay.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
    expect(await refusal(overlay)).toMatch(/^hypervisor_error: .*backing file; it cannot be read in place/);

    await io(base, 'write -P 9 0 1m');
    const compressed = path.join(dir, 'compressed.qcow2');
    await run('qemu-img', ['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', base, compressed]);
    expect(await refusal(compressed)).toMatch(/compressed cluster at 0/);

    const encrypted = path.join(dir, 'encrypted.qcow2');
    await run('qemu-img', [
      'create',
      '-q',
      '--object',
      'secret,id=s0,data=secret',
      '-f',
      'qcow2',
      '-o',
      'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10',
      encrypted,
      String(4 * M),
    ]);
    expect(await refusal(encrypted)).toMatch(/encrypted/);

    // A damaged header asks for an L1 table of 4 G entries: refused before anything that size is read.
    const damaged = path.join(dir, 'damaged.qcow2');
    await fsp.copyFile(base, damaged);
    const l1Size = Buffer.alloc(4);
    l1Size.writeUInt32BE(0xffffffff);
    const fh = await fsp.open(damaged, 'r+');
    await fh.write(l1Size, 0, 4, QCOW2_HEADER.l1Size);
    await fh.close();
    expect(await refusal(damaged)).toMatch(/an L1 table of 4294967295 entries/);

    const raw = path.join(dir, 'raw.img');
    await fsp.writeFile(raw, Buffer.alloc(4 * K));
    expect(await refusal(raw)).toMatch(/not a qcow2 image/);
    const short = path.join(dir, 'short.img');
    await fsp.writeFile(short, Buffer.alloc(10));
    expect(await refusal(short)).toMatch(/past the end of the file/);
  });
});
