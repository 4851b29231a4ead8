import { readFileSync } from 'node:fs';

/**
 * Page-aligned memory for I/O with O_DIRECT, which wants the buffer, the file offset and the length
 * aligned to the device's block. Node has no call that allocates aligned memory; two sources give it:
 *
 * - **Huge-page slabs** (when glibc started the process with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
 *   as the worker's entry point does: src/app/malloc-env.ts):
 *   glibc serves an allocation this large with its own `mmap` and, with that tunable, marks it for
 *   transparent huge pages (`madvise(MADV_HUGEPAGE)`, which a host's THP setting `madvise` honours).
 *   The kernel places a mapping whose length is whole huge pages on a huge-page boundary, and glibc's
 *   chunk header puts the data 16 bytes into it, so the page-aligned bytes start at 4096 − 16. Buffers
 *   are carved from there. Why: an O_DIRECT request is cut at the device's segment limit (254 on the
 *   virtio disks measured, docs/benchmarks.md *6*), and a segment is physically contiguous memory —
 *   ~1 MiB of scattered 4 KiB pages against 4 MiB (the request limit) from huge pages.
 * - **WebAssembly memories** otherwise: V8 maps each by itself, so it starts on a page. V8 reserves
 *   (not commits) ~10 GiB of address space for each: the process's virtual size grows by that per
 *   buffer alive.
 *
 * Either way buffers are shared through `takeAlignedBuffer` / `giveAlignedBuffer`, bounding their
 * number by how many are in use at once.
 */
export const DIRECT_IO_ALIGN = 4096;
/**
 * Aligned buffers kept for reuse once given back (`giveAlignedBuffer`); more exist while more are in
 * use. Few: a kept buffer's pages stay in the process's RSS between backups.
 */
const KEPT_ALIGNED_BUFFERS = 8;
const WASM_PAGE_BYTES = 64 * 1024;
const MIB = 1024 * 1024;
/** A slab's mapping: whole 2 MiB huge pages, room for 15 chunk envelopes (4 MiB + 4 KiB). */
const SLAB_MAPPING_BYTES = 64 * MIB;
/** glibc's header before the data of a chunk it mapped by itself (two size words, x86-64 and arm64). */
const GLIBC_MMAP_CHUNK_HEADER = 16;
/** The allocation whose mapping is exactly SLAB_MAPPING_BYTES: glibc adds its header and rounds up to a page. */
const SLAB_REQUEST_BYTES = SLAB_MAPPING_BYTES - DIRECT_IO_ALIGN;
/** Where a slab's page-aligned bytes start, and how far they go. */
const SLAB_FIRST_ALIGNED = DIRECT_IO_ALIGN - GLIBC_MMAP_CHUNK_HEADER;
const SLAB_LAST_ALIGNED = SLAB_FIRST_ALIGNED + SLAB_MAPPING_BYTES - 2 * DIRECT_IO_ALIGN;

// The one WebAssembly API used here (the project's type libraries leave WebAssembly out).
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
};

export function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
}

/**
 * Memory this module made: where its page-aligned bytes start, and where each buffer handed out of it
 * ends (ascending; one for a WebAssembly memory), so that `alignedView`'s padding never reaches into a
 * neighbour buffer of the same slab.
 */
const ALIGNED = new WeakMap<ArrayBufferLike, { readonly first: number; readonly ends: number[] }>();

/** What a process's environment must hold for its buffers to come from huge-page slabs (with glibc). */
export const HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1';

/**
 * Whether buffers come from huge-page slabs: glibc is the C library (the process report names its
 * version) and the environment the process started with — what glibc read, kept in
 * `/proc/self/environ` even after the entry point removed its own settings from `process.env`
 * (src/app/malloc-env.ts) — has GLIBC_TUNABLES holding HUGE_PAGE_TUNABLE. Read once.
 */
let slabsEnabled: boolean | null = null;
export function alignedBuffersUseHugePages(): boolean {
  if (slabsEnabled === null) {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
      ?.header;
    slabsEnabled = !!header?.glibcVersionRuntime && startupTunables().includes(HUGE_PAGE_TUNABLE);
  }
  return slabsEnabled;
}

/** The tunables of GLIBC_TUNABLES in the environment this process started with (none if unreadable). */
function startupTunables(): string[] {
  let environ: string;
  try {
    environ = readFileSync('/proc/self/environ', 'latin1');
  } catch {
    return [];
  }
  const entry = environ.split('\0').find((kv) => kv.startsWith('GLIBC_TUNABLES='));
  return entry ? entry.slice('GLIBC_TUNABLES='.length).split(':') : [];
}

/** The slab buffers are carved from now; a full one is left to the buffers carved from it. */
let slab: { readonly memory: ArrayBuffer; next: number } | null = null;

function fromSlab(size: number): Buffer | null {
  if (size > SLAB_LAST_ALIGNED - SLAB_FIRST_ALIGNED) return null;
  if (!slab || slab.next + size > SLAB_LAST_ALIGNED) {
    const memory = Buffer.allocUnsafeSlow(SLAB_REQUEST_BYTES).buffer as ArrayBuffer;
    ALIGNED.set(memory, { first: SLAB_FIRST_ALIGNED, ends: [] });
    slab = { memory, next: SLAB_FIRST_ALIGNED };
  }
  const out = Buffer.from(slab.memory, slab.next, size);
  slab.next += size;
  ALIGNED.get(slab.memory)!.ends.push(slab.next);
  return out;
}

/** A page-aligned buffer of at least `bytes` (whole 4 KiB pages from a slab, else whole 64 KiB pages). */
export function pageAlignedBuffer(bytes: number): Buffer {
  const fromHugePages = alignedBuffersUseHugePages() ? fromSlab(alignUp(Math.max(1, bytes))) : null;
  if (fromHugePages) return fromHugePages;
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
  ALIGNED.set(memory, { first: 0, ends: [memory.byteLength] });
  return Buffer.from(memory);
}

const freeAligned: Buffer[] = [];

/** A page-aligned buffer of at least `bytes`: one given back earlier, or a new one. */
export function takeAlignedBuffer(bytes: number): Buffer {
  const i = freeAligned.findIndex((b) => b.length >= bytes);
  return i >= 0 ? freeAligned.splice(i, 1)[0] : pageAlignedBuffer(bytes);
}

/** Gives back a buffer from `takeAlignedBuffer` nothing uses any more (after a failure: do not). */
export function giveAlignedBuffer(buffer: Buffer): void {
  if (freeAligned.length < KEPT_ALIGNED_BUFFERS) freeAligned.push(buffer);
}

/**
 * `length` bytes from `at`'s start, padded to the alignment, as a view of the same memory when that
 * memory is aligned there and the padding stays within the buffer handed out that `at` is part of
 * (O_DIRECT can use it as it is); else null. A writer through this view zeroes the padding: whoever puts a body in
 * aligned memory gives up the bytes after it, up to the next 4 KiB, for the duration of the write (the
 * backup data path's envelopes hold one body each).
 */
export function alignedView(at: Buffer, length: number): Buffer | null {
  const padded = alignUp(length);
  const memory = ALIGNED.get(at.buffer);
  if (!memory || at.byteOffset < memory.first || (at.byteOffset - memory.first) % DIRECT_IO_ALIGN !== 0)
    return null;
  const end = memory.ends.find((e) => e > at.byteOffset);
  if (end === undefined || at.byteOffset + padded > end) return null;
  return Buffer.from(at.buffer, at.byteOffset, padded);
}
