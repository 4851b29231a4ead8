/**
 * Page-aligned memory for I/O with O_DIRECT, which wants the buffer, the file offset and the length
 * aligned to the device's block. Node has no call that allocates aligned memory; a WebAssembly memory
 * is one V8 maps by itself, so it starts on a page. Each is its own WebAssembly memory, for which V8
 * reserves (not commits) ~10 GiB of address space: the process's virtual size grows by that per buffer
 * alive, so the buffers of the whole process are shared through `takeAlignedBuffer` /
 * `giveAlignedBuffer`, bounding their number by how many are in use at once.
 */
export const DIRECT_IO_ALIGN = 4096;
/**
 * Aligned buffers kept for reuse once given back (`giveAlignedBuffer`); more exist while more are in
 * use. Few: a kept buffer's pages stay in the process's RSS between backups.
 */
const KEPT_ALIGNED_BUFFERS = 8;
const WASM_PAGE_BYTES = 64 * 1024;

// The one WebAssembly API used here (the project's type libraries leave WebAssembly out).
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum: number; shared: true }) => {
    readonly buffer: SharedArrayBuffer;
  };
};

export function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
}

/** Memory `pageAlignedBuffer` made (see `alignedView`). */
const ALIGNED_MEMORY = new WeakSet<ArrayBufferLike>();

/**
 * A page-aligned buffer of at least `bytes`, its length rounded up to whole 64 KiB pages. Its memory is
 * shared (a SharedArrayBuffer), so another thread can read it without a copy (common/sha256-thread.ts).
 */
export function pageAlignedBuffer(bytes: number): Buffer {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer;
  ALIGNED_MEMORY.add(memory);
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
 * memory is aligned there and has room for the padding (O_DIRECT can use it as it is); else null. A
 * writer through this view zeroes the padding: whoever puts a body in aligned memory gives up the
 * bytes after it, up to the next 4 KiB, for the duration of the write (the backup data path's
 * envelopes hold one body each).
 */
export function alignedView(at: Buffer, length: number): Buffer | null {
  const padded = alignUp(length);
  if (!ALIGNED_MEMORY.has(at.buffer) || at.byteOffset % DIRECT_IO_ALIGN !== 0) return null;
  if (at.byteOffset + padded > at.buffer.byteLength) return null;
  return Buffer.from(at.buffer, at.byteOffset, padded);
}
