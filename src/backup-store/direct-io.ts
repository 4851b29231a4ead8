import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

import { throwIfCancelled } from './store-key';

/**
 * Whole-chunk files written and read with O_DIRECT: the bytes go between the process and the disk
 * without passing through the page cache. On the hosts measured (docs/benchmarks.md *6*, "Chunk files
 * with O_DIRECT") a buffered write of a 4 MiB file cost 2.2–2.6 s of CPU per GiB — the kernel finding,
 * zeroing and later writing back fresh page-cache pages — against 0.06–0.09 s with O_DIRECT, and the
 * page cache would only hold chunks nobody reads again soon.
 *
 * O_DIRECT wants the buffer, the file offset and the length aligned to the device's block: a body in
 * memory from `pageAlignedBuffer` is written and read in place, any other is copied into (or read
 * through) a page-aligned staging buffer; a file whose length is not a multiple of ALIGN is written
 * padded and truncated back. Node has no call that allocates aligned memory; a WebAssembly memory is
 * one V8 maps by itself, so it starts on a page.
 */
export const DIRECT_IO_ALIGN = 4096;
/** Bodies smaller than this (manifests, keys) go through the page cache as before. */
export const DIRECT_IO_MIN_BYTES = 1024 * 1024;
/**
 * Aligned buffers kept for reuse once given back (`giveAlignedBuffer`); more exist while more are in
 * use. Few: a kept buffer's pages stay in the process's RSS between backups.
 */
const KEPT_ALIGNED_BUFFERS = 4;
const WASM_PAGE_BYTES = 64 * 1024;

// The one WebAssembly API used here (the project's type libraries leave WebAssembly out).
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
};

function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
}

/** Memory `pageAlignedBuffer` made: a body in it is written and read in place (see `inPlace`). */
const ALIGNED_MEMORY = new WeakSet<ArrayBufferLike>();

/**
 * A page-aligned buffer of at least `bytes`, its length rounded up to whole 64 KiB pages. A caller
 * that keeps its chunk bodies in such buffers (the backup data path's envelopes) spares a directory
 * store with O_DIRECT the copy into its staging buffer. Each is a WebAssembly memory, for which V8
 * reserves (not commits) ~10 GiB of address space: the process's virtual size grows by that per
 * buffer alive, so the buffers of the whole process are shared through `takeAlignedBuffer` /
 * `giveAlignedBuffer`, bounding their number by how many are in use at once.
 */
export function pageAlignedBuffer(bytes: number): Buffer {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
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
 * memory is aligned and has room for the padding; else null.
 */
function inPlace(at: Buffer, length: number): Buffer | null {
  const padded = alignUp(length);
  if (!ALIGNED_MEMORY.has(at.buffer) || at.byteOffset % DIRECT_IO_ALIGN !== 0) return null;
  if (at.byteOffset + padded > at.buffer.byteLength) return null;
  return Buffer.from(at.buffer, at.byteOffset, padded);
}

export class DirectIo {
  /**
   * `DirectIo` for files in the directory `dir` (made if missing; its parent must exist) when its file system takes O_DIRECT (an
   * aligned write of a probe file there succeeds); null when it refuses it (EINVAL), or when this
   * process cannot make aligned memory: the caller keeps to buffered I/O. Other errors are thrown.
   */
  static async probe(dir: string): Promise<DirectIo | null> {
    const io = new DirectIo();
    const file = path.join(dir, `probe-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await fs.mkdir(dir).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      await io.writeNew(file, Buffer.alloc(DIRECT_IO_ALIGN), undefined);
      return io;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EINVAL' || e instanceof RangeError) return null;
      throw e;
    } finally {
      await fs.rm(file, { force: true }).catch(() => undefined);
    }
  }

  /** Creates `file` (it must not exist) holding `body`; not synced. */
  async writeNew(file: string, body: Buffer, signal: AbortSignal | undefined): Promise<void> {
    const padded = alignUp(body.length);
    const own = inPlace(body, body.length);
    const staging = own ?? takeAlignedBuffer(padded);
    let ok = false;
    try {
      if (!own) body.copy(staging, 0);
      // The padding is cut off again by the truncate; zeros, not whatever the memory held before.
      staging.fill(0, body.length, padded);
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;
      const handle = await fs.open(file, flags, 0o640);
      try {
        let at = 0;
        while (at < padded) {
          throwIfCancelled(signal);
          const { bytesWritten } = await handle.write(staging, at, padded - at, at);
          if (bytesWritten <= 0 || bytesWritten % DIRECT_IO_ALIGN !== 0) {
            throw new Error(`direct write of ${file}: ${bytesWritten} bytes at ${at}`);
          }
          at += bytesWritten;
        }
        if (padded !== body.length) await handle.truncate(body.length);
      } finally {
        await handle.close();
      }
      ok = true;
    } finally {
      // A buffer an aborted write may still be reading from is not handed out again.
      if (ok && !own) giveAlignedBuffer(staging);
    }
  }

  /**
   * The bytes of `file` in `into` when they fit, else null (the caller reads it its own way). A file
   * replaced meanwhile is a new file: the one opened keeps its bytes.
   */
  async readInto(file: string, into: Buffer, signal: AbortSignal | undefined): Promise<Buffer | null> {
    const handle = await fs.open(file, constants.O_RDONLY | constants.O_DIRECT);
    try {
      const { size } = await handle.stat();
      if (size > into.length) return null;
      const padded = alignUp(size);
      const own = inPlace(into, size);
      const staging = own ?? takeAlignedBuffer(padded);
      let at = 0;
      while (at < size) {
        throwIfCancelled(signal);
        const { bytesRead } = await handle.read(staging, at, padded - at, at);
        if (bytesRead === 0) break;
        at += bytesRead;
        if (at % DIRECT_IO_ALIGN !== 0) break; // a short read ends at the end of the file
      }
      const length = Math.min(at, size);
      if (!own) {
        staging.copy(into, 0, 0, length);
        giveAlignedBuffer(staging);
      }
      return into.subarray(0, length);
    } finally {
      await handle.close();
    }
  }
}
