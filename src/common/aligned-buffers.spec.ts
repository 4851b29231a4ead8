import { execFileSync } from 'node:child_process';
import {
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { alignedView, giveAlignedBuffer, pageAlignedBuffer, takeAlignedBuffer } from './aligned-buffers';

const MIB = 1024 * 1024;
const ENVELOPE = 4 * MIB + 48;

/**
 * Runs `body` in a fresh Node process with `env`, this module imported as `m` (Node strips the types),
 * `fs` and `dir` (a directory for O_DIRECT files); returns what the body returns, as JSON.
 */
function inChild(env: Record<string, string>, dir: string, body: string): unknown {
  const script = `
    const fs = await import('node:fs');
    const m = await import(${JSON.stringify(path.join(__dirname, 'aligned-buffers.ts'))});
    const dir = ${JSON.stringify(dir)};
    const out = await (async () => { ${body} })();
    process.stdout.write(JSON.stringify(out));`;
  const stdout = execFileSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
  });
  return JSON.parse(stdout) as unknown;
}

/** In the child: an O_DIRECT read of 4 KiB into each buffer's aligned view ("ok" or the error code). */
const DIRECT_READS = `
  const file = dir + '/probe';
  fs.writeFileSync(file, Buffer.alloc(8192, 1));
  const buffers = [0, 1, 2].map(() => m.takeAlignedBuffer(${ENVELOPE}));
  const reads = buffers.map((b) => {
    const view = m.alignedView(b, 4096);
    if (!view) return 'no view';
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
    try { fs.readSync(fd, view, 0, 4096, 0); return 'ok'; } catch (e) { return e.code; } finally { fs.closeSync(fd); }
  });
  for (const b of buffers) b.fill(7);
  const huge = [...fs.readFileSync('/proc/self/smaps', 'utf8').matchAll(/AnonHugePages:\\s+(\\d+)/g)]
    .reduce((n, x) => n + Number(x[1]), 0);
  return { reads, offsets: buffers.map((b) => b.byteOffset), shared: buffers[0].buffer === buffers[1].buffer, huge };`;

describe('aligned buffers', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'aligned-buffers-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // In this process the memory comes from wherever the environment says (slabs or WebAssembly).
  it('hands out page-aligned memory, reused once given back', () => {
    const a = takeAlignedBuffer(ENVELOPE);
    expect(a.length).toBeGreaterThanOrEqual(ENVELOPE);
    expect(alignedView(a, ENVELOPE)?.length).toBe(ENVELOPE + 4096 - 48);
    giveAlignedBuffer(a);
    expect(takeAlignedBuffer(ENVELOPE)).toBe(a);
  });

  it('gives no view of memory it did not make, off the page grid, or padded past the buffer', () => {
    const a = pageAlignedBuffer(64 * 1024);
    expect(alignedView(Buffer.alloc(8192), 4096)).toBeNull();
    expect(alignedView(a.subarray(100), 4096)).toBeNull();
    expect(alignedView(a.subarray(a.length - 4096), 4097)).toBeNull();
    expect(alignedView(a.subarray(a.length - 4096), 4096)?.length).toBe(4096);
  });

  /** Whether the file system under tmpdir takes O_DIRECT (tmpfs does not): the reads below need it. */
  const directIoHere = (() => {
    const probe = mkdtempSync(path.join(tmpdir(), 'aligned-buffers-probe-'));
    try {
      writeFileSync(path.join(probe, 'f'), Buffer.alloc(4096));
      const fd = openSync(path.join(probe, 'f'), constants.O_RDONLY | constants.O_DIRECT);
      try {
        return readSync(fd, pageAlignedBuffer(4096), 0, 4096, 0) === 4096;
      } finally {
        closeSync(fd);
      }
    } catch {
      return false;
    } finally {
      rmSync(probe, { recursive: true, force: true });
    }
  })();
  const thp = (() => {
    try {
      return /\[(always|madvise)\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));
    } catch {
      return false;
    }
  })();

  (directIoHere ? it : it.skip)(
    'with glibc.malloc.hugetlb=1, carves them from one huge-page slab, page-aligned for O_DIRECT',
    () => {
      const r = inChild({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }, dir, DIRECT_READS) as {
        reads: string[];
        offsets: number[];
        shared: boolean;
        huge: number;
      };
      expect(r.reads).toEqual(['ok', 'ok', 'ok']);
      expect(r.shared).toBe(true);
      expect(r.offsets).toEqual([0, 1, 2].map((i) => 4096 - 16 + i * (ENVELOPE + 4096 - 48)));
      // At least the two whole huge pages inside each 4 MiB buffer (where the host lets madvise have them).
      if (thp) expect(r.huge).toBeGreaterThanOrEqual(3 * 2 * 1024);
    },
  );

  (directIoHere ? it : it.skip)('without the tunable, each buffer is its own WebAssembly memory', () => {
    const r = inChild({}, dir, DIRECT_READS) as { reads: string[]; offsets: number[]; shared: boolean };
    expect(r.reads).toEqual(['ok', 'ok', 'ok']);
    expect(r.offsets).toEqual([0, 0, 0]);
    expect(r.shared).toBe(false);
  });

  it('never pads a slab buffer into its neighbour', () => {
    const r = inChild(
      { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' },
      dir,
      `
      const a = m.takeAlignedBuffer(8192);
      const b = m.takeAlignedBuffer(8192);
      return {
        shared: a.buffer === b.buffer,
        inside: m.alignedView(a.subarray(4096), 4096)?.length ?? null,
        past: m.alignedView(a.subarray(4096), 4097),
      };`,
    ) as { shared: boolean; inside: number | null; past: unknown };
    expect(r).toEqual({ shared: true, inside: 4096, past: null });
  });
});
