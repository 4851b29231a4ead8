import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

import {
  alignedView,
  alignUp,
  DIRECT_IO_ALIGN,
  giveAlignedBuffer,
  takeAlignedBuffer,
} from '../common/aligned-buffers';
import { throwIfCancelled } from './store-key';

/**
 * Whole-chunk files written and read with O_DIRECT: the bytes go between the process and the disk
 * without passing through the page cache. On the hosts measured (docs/benchmarks.md *6*, "restores
 * through qemu-nbd, chunk files with O_DIRECT") a buffered write of a 4 MiB file cost 2.2–2.6 s of CPU
 * per GiB — the kernel finding, zeroing and later writing back fresh page-cache pages — against
 * 0.06–0.09 s with O_DIRECT, and the page cache would only hold chunks nobody reads again soon.
 *
 * A body in page-aligned memory (common/aligned-buffers.ts) is written and read in place, any other
 * is copied into (or read through) an aligned staging buffer; a file whose length is not a multiple
 * of the alignment is written padded and truncated back.
 */
/** Bodies smaller than this (manifests, keys) go through the page cache as before. */
export const DIRECT_IO_MIN_BYTES = 1024 * 1024;

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
    const own = alignedView(body, body.length);
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
      const own = alignedView(into, size);
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
