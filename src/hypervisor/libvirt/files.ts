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

export async function isFile(file: string): Promise<boolean> {
  return (await fileSize(file)) !== null;
}

/** Bytes available to this (root) process in the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const st = await fsp.statfs(dir);
  return Number(st.bavail) * Number(st.bsize);
}

/**
 * sha256 (hex) and byte length of a file, read in 1 MiB blocks. Calls `onBytes` with the running
 * count; stops with an AbortError when `signal` aborts.
 */
export async function sha256File(
  file: string,
  opts: { signal?: AbortSignal; onBytes?: (done: number) => void } = {},
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  const fh = await fsp.open(file, fsConstants.O_RDONLY);
  const buf = Buffer.allocUnsafe(1024 * 1024);
  let total = 0;
  try {
    for (;;) {
      if (opts.signal?.aborted) {
        const e = new Error('hashing aborted');
        e.name = 'AbortError';
        throw e;
      }
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      total += bytesRead;
      opts.onBytes?.(total);
    }
  } finally {
    await fh.close();
  }
  return { sha256: hash.digest('hex'), bytes: total };
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
