import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  BackupStore,
  BackupStoreError,
  BackupStoreErrorCode,
  GetOptions,
  PutOptions,
  StoreCallOptions,
  StoredObject,
} from './backup-store';
import { forEachLimited } from '../common/for-each-limited';
import { DIRECT_IO_MIN_BYTES, DirectIo } from './direct-io';
import { assertValidKey, assertValidPrefix, isKeySegment, throwIfCancelled } from './store-key';

/**
 * Objects as files under a root directory: in production a separate disk or an NFS mount.
 *
 * The root must exist: the store never creates it, so a missing mount fails (`unavailable`) instead of
 * filling the host's own disk. A put writes a temporary file in `<root>/~tmp/` (a name no key can
 * have, so `list` never shows it), fsyncs it, renames it over the key and fsyncs the key's directory:
 * readers see the old object or the new one, never a part. Temporary files live in one directory so
 * that sweeping the ones a crashed writer left costs one directory read, not a walk of every object.
 * A put with `durable: false` leaves both fsyncs to `sync`, which fsyncs the files, then each of their
 * directories up to the root once (directories a put created included): a put no longer waits for
 * the disk, and the kernel writes the data back meanwhile, so the later fsyncs find little to do.
 *
 * Two limits of a file tree that S3 does not have, both `invalid_key` on put: a key cannot also be the
 * "directory" of other keys (`a` and `a/b`), and a segment is at most 255 bytes (a file name). The key
 * layout of the data path never does either.
 */
export const TEMP_DIR = '~tmp';

type Errno = NodeJS.ErrnoException;

function errnoCode(e: unknown): string | undefined {
  return (e as Errno | undefined)?.code;
}

function mapError(e: unknown, what: string): BackupStoreError {
  if (e instanceof BackupStoreError) return e;
  const code = errnoCode(e);
  const detail = `${what}: ${(e as Error)?.message ?? String(e)}`;
  if ((e as Error)?.name === 'AbortError') return new BackupStoreError('cancelled', detail);
  const byErrno: Record<string, BackupStoreErrorCode> = {
    ENOSPC: 'insufficient_storage',
    EDQUOT: 'insufficient_storage',
    EFBIG: 'insufficient_storage',
    ESTALE: 'unavailable',
    ENOTCONN: 'unavailable',
    ETIMEDOUT: 'unavailable',
    EHOSTDOWN: 'unavailable',
  };
  return new BackupStoreError((code && byErrno[code]) || 'storage_error', detail);
}

export class DirectoryStore implements BackupStore {
  readonly kind = 'directory';
  /** Whether (and how) chunk-sized files bypass the page cache: probed once, on first use (direct-io.ts). */
  private direct: Promise<DirectIo | null> | null;

  /** `directIo: false` keeps every file in the page cache (tests of that path; O_DIRECT is probed). */
  constructor(
    readonly root: string,
    o: { directIo?: boolean } = {},
  ) {
    if (!path.isAbsolute(root)) throw new Error(`a directory store needs an absolute path, got "${root}"`);
    this.direct = o.directIo === false ? Promise.resolve(null) : null;
  }

  /** DirectIo for a body of `bytes`, or null for the page cache (the probe makes the temp directory). */
  private async directIoFor(bytes: number): Promise<DirectIo | null> {
    if (bytes < DIRECT_IO_MIN_BYTES) return null;
    if (this.direct === null) {
      const probing = DirectIo.probe(path.join(this.root, TEMP_DIR));
      this.direct = probing;
      // A failed probe (not a refusal) decides nothing: the next call probes again.
      probing.catch(() => (this.direct === probing ? (this.direct = null) : undefined));
    }
    return this.direct.catch(() => null);
  }

  private pathOf(key: string): string {
    return path.join(this.root, ...key.split('/'));
  }

  /** The root is there (a missing mount is `unavailable`, never silently recreated on the host). */
  private async requireRoot(): Promise<void> {
    try {
      const st = await fs.stat(this.root);
      if (st.isDirectory()) return;
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw mapError(e, `stat ${this.root}`);
    }
    throw new BackupStoreError('unavailable', `backup directory ${this.root} does not exist`);
  }

  async put(key: string, body: Buffer, opts: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    const target = this.pathOf(key);
    const tempDir = path.join(this.root, TEMP_DIR);
    const temp = path.join(tempDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
    const durable = opts.durable ?? true;
    let renamed = false;
    try {
      // Directories are made when a call finds them missing, not checked before every put: a chunk's
      // put is then its file's own system calls and the rename. The root is never made (requireRoot).
      await this.writeTemp(temp, body, durable, key, opts.signal).catch(async (e: unknown) => {
        if (errnoCode(e) !== 'ENOENT') throw e;
        await this.requireRoot();
        await fs.mkdir(tempDir, { recursive: true });
        await this.writeTemp(temp, body, durable, key, opts.signal);
      });
      throwIfCancelled(opts.signal);
      await fs.rename(temp, target).catch(async (e: unknown) => {
        if (errnoCode(e) !== 'ENOENT') throw e;
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.rename(temp, target);
      });
      renamed = true;
      if (durable) await syncDirectory(path.dirname(target));
    } catch (e) {
      if (!renamed) await fs.rm(temp, { force: true }).catch(() => undefined);
      if (opts.signal?.aborted && !renamed) throw new BackupStoreError('cancelled');
      // A key that is another key's directory (or the reverse): only a caller can make this.
      if (
        ['EISDIR', 'ENOTDIR', 'ENOTEMPTY', 'EEXIST', 'ENAMETOOLONG'].includes(errnoCode(e) ?? '') &&
        !renamed
      )
        throw new BackupStoreError('invalid_key', `put ${key}: ${(e as Error).message}`);
      throw mapError(e, `put ${key}`);
    }
  }

  /** Writes `body` as the new file `temp` (fsynced when `durable`); ENOENT when its directory is missing. */
  private async writeTemp(
    temp: string,
    body: Buffer,
    durable: boolean,
    key: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const direct = await this.directIoFor(body.length);
    if (direct) {
      await direct.writeNew(temp, body, signal);
      if (durable) await syncPath(temp, `put ${key}`);
      return;
    }
    const file = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o640);
    try {
      await file.writeFile(body, { signal });
      if (durable) await file.sync();
    } finally {
      await file.close();
    }
  }

  async sync(keys: readonly string[], opts: StoreCallOptions = {}): Promise<void> {
    for (const key of keys) assertValidKey(key);
    throwIfCancelled(opts.signal);
    await this.requireRoot();
    const unique = [...new Set(keys)];
    const dirs = new Set<string>();
    for (const key of unique) {
      const segments = key.split('/');
      for (let n = segments.length - 1; n >= 0; n--) {
        const dir = path.join(this.root, ...segments.slice(0, n));
        if (dirs.has(dir)) break; // its ancestors are in already
        dirs.add(dir);
      }
    }
    // Nothing is promised before every fsync is done, so their order is free: the files, then the
    // directories that name them.
    await forEachLimited(unique, SYNCS_IN_FLIGHT, async (key) => {
      throwIfCancelled(opts.signal);
      await syncPath(this.pathOf(key), `sync ${key}`);
    });
    await forEachLimited([...dirs], SYNCS_IN_FLIGHT, async (dir) => {
      throwIfCancelled(opts.signal);
      await syncPath(dir, 'sync');
    });
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    try {
      if (opts.into) {
        const direct = await this.directIoFor(opts.into.length);
        const read = direct && (await direct.readInto(this.pathOf(key), opts.into, opts.signal));
        return read || (await readInto(this.pathOf(key), opts.into, opts.signal));
      }
      return await fs.readFile(this.pathOf(key), { signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) throw new BackupStoreError('cancelled');
      if (['ENOENT', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG'].includes(errnoCode(e) ?? '')) {
        await this.requireRoot();
        throw new BackupStoreError('not_found', `get ${key}`);
      }
      throw mapError(e, `get ${key}`);
    }
  }

  async head(key: string, opts: StoreCallOptions = {}): Promise<StoredObject | null> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    try {
      const st = await fs.stat(this.pathOf(key));
      return st.isFile() ? { key, sizeBytes: st.size, modifiedAt: st.mtime } : null;
    } catch (e) {
      if (['ENOENT', 'ENOTDIR', 'ENAMETOOLONG'].includes(errnoCode(e) ?? '')) {
        await this.requireRoot();
        return null;
      }
      throw mapError(e, `head ${key}`);
    }
  }

  async delete(key: string, opts: StoreCallOptions = {}): Promise<void> {
    assertValidKey(key);
    throwIfCancelled(opts.signal);
    await this.requireRoot();
    try {
      await fs.unlink(this.pathOf(key));
    } catch (e) {
      if (['ENOENT', 'ENOTDIR', 'ENAMETOOLONG'].includes(errnoCode(e) ?? '')) return;
      if (errnoCode(e) === 'EISDIR' || errnoCode(e) === 'EPERM') {
        // A directory of other keys is no object: nothing to delete.
        const st = await fs.stat(this.pathOf(key)).catch(() => null);
        if (st?.isDirectory()) return;
      }
      throw mapError(e, `delete ${key}`);
    }
  }

  /**
   * Keys in byte order, as S3 lists them. A directory is visited as its name followed by "/" (so "a-b"
   * comes before "a/c"); memory holds one directory's entries per level, never the whole listing.
   */
  async *list(prefix: string, opts: StoreCallOptions = {}): AsyncIterable<StoredObject> {
    assertValidPrefix(prefix);
    throwIfCancelled(opts.signal);
    await this.requireRoot();
    const slash = prefix.lastIndexOf('/');
    const base = prefix.slice(0, slash + 1); // complete segments, "" or ending in "/"
    const partial = prefix.slice(slash + 1);
    yield* this.walk(base, partial, opts.signal);
  }

  private async *walk(dirKey: string, partial: string, signal?: AbortSignal): AsyncGenerator<StoredObject> {
    const dir = dirKey ? this.pathOf(dirKey.slice(0, -1)) : this.root;
    let entries: { name: string; dir: boolean; sortKey: string }[];
    try {
      entries = (await fs.readdir(dir, { withFileTypes: true }))
        .filter((d) => isKeySegment(d.name) && d.name.startsWith(partial) && (d.isFile() || d.isDirectory()))
        .map((d) => ({
          name: d.name,
          dir: d.isDirectory(),
          sortKey: d.isDirectory() ? `${d.name}/` : d.name,
        }))
        .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    } catch (e) {
      if (['ENOENT', 'ENOTDIR'].includes(errnoCode(e) ?? '')) return;
      throw mapError(e, `list ${dirKey}`);
    }
    for (const entry of entries) {
      throwIfCancelled(signal);
      const key = dirKey + entry.name;
      if (entry.dir) {
        yield* this.walk(`${key}/`, '', signal);
        continue;
      }
      try {
        const st = await fs.stat(this.pathOf(key));
        yield { key, sizeBytes: st.size, modifiedAt: st.mtime };
      } catch (e) {
        if (errnoCode(e) !== 'ENOENT') throw mapError(e, `list ${key}`); // deleted meanwhile: skip
      }
    }
  }

  /**
   * Remove temporary files a crashed writer left, once older than `olderThanMs` (other nodes may be
   * writing to the same directory right now). Returns how many were removed.
   */
  async sweepTemporaryFiles(olderThanMs: number, now = Date.now()): Promise<number> {
    const tempDir = path.join(this.root, TEMP_DIR);
    let names: string[];
    try {
      names = await fs.readdir(tempDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return 0;
      throw mapError(e, `sweep ${tempDir}`);
    }
    let removed = 0;
    for (const name of names) {
      const file = path.join(tempDir, name);
      const st = await fs.stat(file).catch(() => null);
      if (st?.isFile() && now - st.mtimeMs > olderThanMs) {
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }
}

/** fsyncs a store runs at once in `sync`: enough to let the file system batch its journal commits. */
const SYNCS_IN_FLIGHT = 8;

/** fsync of a file or directory of the store; one removed meanwhile is skipped (nothing to keep). */
async function syncPath(file: string, what: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY);
  } catch (e) {
    if (['ENOENT', 'ENOTDIR'].includes(errnoCode(e) ?? '')) return;
    throw mapError(e, what);
  }
  try {
    await handle.sync();
  } catch (e) {
    throw mapError(e, what);
  } finally {
    await handle.close();
  }
}

/**
 * The file's bytes in `into` when they fit (else in a buffer of their own): one `pread` of the whole
 * object into memory the caller reuses, where `readFile` maps a fresh buffer and reads it in pieces.
 */
async function readInto(file: string, into: Buffer, signal: AbortSignal | undefined): Promise<Buffer> {
  const handle = await fs.open(file, constants.O_RDONLY);
  try {
    const { size } = await handle.stat();
    if (size > into.length) return await handle.readFile({ signal });
    let at = 0;
    while (at < size) {
      throwIfCancelled(signal);
      // A replaced key is a new file: this open one keeps its size, so a short read only continues.
      const { bytesRead } = await handle.read(into, at, size - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return into.subarray(0, at);
  } finally {
    await handle.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
