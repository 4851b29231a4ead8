import { createHash } from 'node:crypto';
import { promises as fsp, constants as fsConstants } from 'node:fs';
import * as path from 'node:path';

/** Small file-system helpers for the libvirt driver: durable writes, tolerant removal, hashing. */

export async function fsyncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, fsConstants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a rename / unlink in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Gives `file` the second name `link` (a hard link); a missing `file` is fine. Returns whether it linked. */
export async function linkIfExists(file: string, link: string): Promise<boolean> {
  try {
    await fsp.link(file, link);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Removes a file; a missing file is fine. Returns whether something was removed. */
export async function removeIfExists(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Best-effort removal used on failure paths (never throws). */
export async function removeQuietly(...files: string[]): Promise<void> {
  for (const f of files) {
    try {
      await fsp.unlink(f);
    } catch {
      /* ignore */
    }
  }
}

export async function fileSize(file: string): Promise<number | null> {
  try {
    const st = await fsp.stat(file);
    return st.isFile() ? st.size : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * Bytes the file occupies on its file system (`st_blocks` × 512): what `qemu-img info` reports as a
 * file's `actual-size`, without a process.
 */
export async function allocatedBytes(file: string): Promise<number> {
  return (await fsp.stat(file)).blocks * 512;
}

export async function isFile(file: string): Promise<boolean> {
  return (await fileSize(file)) !== null;
}

/** Bytes available to this (root) process in the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const st = await fsp.statfs(dir);
  return Number(st.bavail) * Number(st.bsize);
}

export interface HashOptions {
  readonly signal?: AbortSignal;
  readonly onBytes?: (done: number) => void;
  /**
   * Awaited before each read, with the offset the read may reach: keeps the pass behind a writer
   * that fills the same pages (see create-copy). It must settle once `signal` aborts.
   */
  readonly before?: (end: number) => Promise<void>;
}

/** Size of each read of {@link sha256File}: large reads keep the per-call overhead negligible. */
export const HASH_READ_BYTES = 4 * 1024 * 1024;

/**
 * Read buffers kept between hashes: without them every hash would leave its buffers to the garbage
 * collector, which V8 only runs once tens of MiB of such external memory have piled up — the process's
 * RSS would creep up over a few copies instead of staying flat. At most this many are kept (enough for
 * two hashes at once); more hashes at once allocate and drop their own.
 */
const SPARE_BUFFERS = 4;
const spareBuffers: Buffer[] = [];

function takeBuffer(size: number): Buffer {
  const i = spareBuffers.findIndex((b) => b.length === size);
  return i >= 0 ? spareBuffers.splice(i, 1)[0] : Buffer.allocUnsafeSlow(size);
}

function giveBack(b: Buffer): void {
  if (b.length === HASH_READ_BYTES && spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(b);
}

function abortError(): Error {
  const e = new Error('hashing aborted');
  e.name = 'AbortError';
  return e;
}

/**
 * sha256 (hex) and byte length of a file. Reads `HASH_READ_BYTES` at a time into two buffers used in
 * turn, so the next read (libuv thread pool: a page-cache copy or a disk read) runs while the current
 * block is hashed (this thread, SHA-NI where the CPU has it): the pass runs at the speed of the slower
 * of the two instead of their sum. Memory: the two buffers (reused by the next hash), whatever the
 * file size. Calls `onBytes` with the running count; stops with an AbortError when `signal` aborts
 * (checked before every block).
 */
export async function sha256File(
  file: string,
  opts: HashOptions & { readBytes?: number } = {},
): Promise<{ sha256: string; bytes: number }> {
  if (opts.signal?.aborted) throw abortError();
  const size = opts.readBytes ?? HASH_READ_BYTES;
  const hash = createHash('sha256');
  const fh = await fsp.open(file, fsConstants.O_RDONLY);
  const bufs = [takeBuffer(size), takeBuffer(size)];
  let total = 0;
  let turn = 0;
  const read = (buf: Buffer, at: number): Promise<{ bytesRead: number }> =>
    opts.before ? opts.before(at + size).then(() => fh.read(buf, 0, size, at)) : fh.read(buf, 0, size, at);
  let pending: Promise<{ bytesRead: number }> | null = read(bufs[0], 0);
  try {
    for (;;) {
      const { bytesRead } = await pending;
      pending = null;
      if (bytesRead === 0) break;
      const block = bufs[turn].subarray(0, bytesRead);
      total += bytesRead;
      if (opts.signal?.aborted) throw abortError();
      turn ^= 1;
      pending = read(bufs[turn], total); // the other buffer: not the one being hashed
      hash.update(block);
      opts.onBytes?.(total);
    }
  } finally {
    // A read still in flight (an abort, a throwing listener) must finish before the handle closes.
    if (pending) await pending.catch(() => undefined);
    await fh.close();
    bufs.forEach(giveBack);
  }
  return { sha256: hash.digest('hex'), bytes: total };
}

/** The hashing the libvirt driver does (its manifests); injectable so tests can slow it down or fail it. */
export class FileHasher {
  sha256(file: string, opts: HashOptions = {}): Promise<{ sha256: string; bytes: number }> {
    return sha256File(file, opts);
  }
}

/** Writes `content` to `target` atomically and durably: temp file, fsync, rename, fsync dir. */
export async function writeFileDurably(
  target: string,
  content: string,
  tmpSuffix = '.partial',
): Promise<void> {
  const tmp = target + tmpSuffix;
  const fh = await fsp.open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(content, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, target);
  await fsyncDir(path.dirname(target));
}
