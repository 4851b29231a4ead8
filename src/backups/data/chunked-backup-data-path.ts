import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { giveAlignedBuffer } from '../../common/aligned-buffers';
import { Clock } from '../../common/clock';
import { forEachLimited } from '../../common/for-each-limited';
import { sha256Hex } from '../../common/sha256-thread';
import { hvError, progressGuard, throwIfAborted } from '../../hypervisor/driver-errors';
import {
  BackupCapableDriver,
  BackupReadSession,
  DiskExtent,
  HYPERVISOR_DRIVER,
  OperationOptions,
  ServerRef,
} from '../../hypervisor/hypervisor-driver';
import { BackupMetrics } from '../../metrics/backup-metrics';
import { BackupDataPath, BackupRef, WriteBackupInput, WriteBackupResult } from '../backup-data-path';
import { AccountKeys } from './account-keys';
import { BackupDataError, isBackupDataError } from './backup-data-errors';
import {
  chunkCount,
  chunkLength,
  chunkOffset,
  CHUNK_SIZE_BYTES,
  extentsByChunk,
  touchedChunks,
} from './backup-layout';
import { BackupObjects, storedChunkBytes, takeEnvelopeBuffer } from './backup-objects';
import { BACKUP_STORES, BackupStores } from './backup-stores';
import { ChunkAcquirer, ChunkReferences, ChunkSpace } from './chunk-references';
import { BackupManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from './manifest';

/**
 * Chunks a write reads, hashes, seals and stores at once, and a restore or a verify fetches, opens
 * (and writes) at once: memory ≈ this × 4 MiB (a chunk is sealed in the buffer it was read into, and
 * opened in the buffer it was fetched into). Each waits mostly on the disk — its read, then its
 * O_DIRECT write, one request each — so more in flight keep the disk's queue fuller; the worker's libuv
 * pool has room for them (app/worker-threadpool.ts), and its RSS target bounds the number
 * (docs/benchmarks.md *6*).
 */
export const CHUNKS_IN_FLIGHT = 6;
/**
 * Chunks uploaded before the store makes them durable together (`sync`) and they are marked stored:
 * one flush per batch instead of a wait per upload; the ids of one batch are all this holds.
 */
export const SYNC_BATCH_CHUNKS = 64;
/** Carried-over chunk references taken per statement in an incremental write. */
const CARRY_BATCH = 1000;
const ZEROS = Buffer.alloc(CHUNK_SIZE_BYTES);

interface Opened {
  readonly space: ChunkSpace;
  readonly objects: BackupObjects;
}

/**
 * The backup data path over fixed-size, content-addressed, encrypted chunks (docs/backups.md "Data
 * path"): each backup's manifest lists every chunk of the disk, chunks are shared by reference, and
 * references in Postgres decide when a chunk may go (chunk-references.ts).
 */
@Injectable()
export class ChunkedBackupDataPath implements BackupDataPath {
  private readonly log = new Logger('BackupDataPath');

  constructor(
    @Inject(HYPERVISOR_DRIVER) private readonly driver: BackupCapableDriver,
    @Inject(BACKUP_STORES) private readonly stores: BackupStores,
    private readonly keys: AccountKeys,
    private readonly refs: ChunkReferences,
    private readonly clock: Clock,
    @Optional() private readonly metrics: BackupMetrics = BackupMetrics.none,
  ) {}

  async writeBackup(
    input: WriteBackupInput,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<WriteBackupResult> {
    const { backup, signal } = { backup: input.backup, signal: opts.signal };
    throwIfAborted(signal);
    const progress = progressGuard(onProgress);
    // References an earlier attempt of this backup left (its clean-up failed too) go first, while the
    // disk is opened: the write then holds exactly the chunks its manifest names (`confirmHeld`).
    const leftovers = this.refs.release(backup.id);
    leftovers.catch(() => undefined); // awaited before the first chunk; handled until then
    // The account's key is in the store before any chunk it seals: the store alone restores.
    const { space, objects } = await this.open(backup, { copyKey: true });
    let baseManifest = await this.usableBase(input, space, objects, signal);
    let session = await this.driver.openBackupRead(input.server, {
      since: baseManifest ? input.base!.checkpoint : null,
      checkpoint: input.checkpoint,
      signal,
    });
    let modeReason = session.fullReason;
    if (
      baseManifest &&
      session.mode === 'incremental' &&
      session.virtualSizeBytes !== baseManifest.virtualSizeBytes
    ) {
      // Only the view tells the disk's size now; a resized disk's chunks do not line up with the base's,
      // so this backup reads the whole disk.
      await session.close({ keepCheckpoint: false });
      session = await this.driver.openBackupRead(input.server, {
        since: null,
        checkpoint: input.checkpoint,
        signal,
      });
      baseManifest = null;
      modeReason = 'disk_resized';
    }
    try {
      await leftovers;
      const written = await this.writeChunks(backup, session, baseManifest, space, objects, progress, signal);
      throwIfAborted(signal);
      const f = input.facts;
      this.metrics.uploaded(
        await objects.putManifest(
          {
            ...written.manifest,
            index: {
              serverId: f.serverId,
              name: f.name,
              description: f.description,
              kind: f.kind,
              createdAt: f.createdAt.toISOString(),
              completedAt: this.clock.now().toISOString(),
              expiresAt: f.expiresAt?.toISOString() ?? null,
              modeReason,
              consistency: session.consistency,
              checkpoint: session.checkpoint,
              sizeBytes: written.sizeBytes,
              storedBytes: written.storedBytes,
            },
          },
          signal,
        ),
      );
      await session.close({ keepCheckpoint: true });
      progress(100);
      return {
        sizeBytes: written.sizeBytes,
        storedBytes: written.storedBytes,
        mode: session.mode,
        modeReason,
        consistency: session.consistency,
        checkpoint: session.checkpoint,
      };
    } catch (e) {
      await session.close({ keepCheckpoint: false });
      await this.releaseQuietly(backup, space, objects);
      throw e;
    }
  }

  async restoreBackup(
    backup: BackupRef,
    target: ServerRef,
    onProgress: (pct: number) => void,
    opts: OperationOptions = {},
  ): Promise<void> {
    const signal = opts.signal;
    throwIfAborted(signal);
    const progress = progressGuard(onProgress);
    const { objects } = await this.open(backup);
    const manifest = await objects.getManifest(backup.id, signal);
    const present = indicesWithData(manifest);
    let done = 0;
    await this.driver.restoreDiskFrom(
      target,
      manifest.virtualSizeBytes,
      (disk) =>
        forEachLimited(present, CHUNKS_IN_FLIGHT, async (i) => {
          throwIfAborted(signal);
          const length = chunkLength(i, manifest.virtualSizeBytes);
          const buffer = takeEnvelopeBuffer();
          const data = await objects.getChunk(manifest.chunks[i]!, length, buffer, signal);
          await disk.write(chunkOffset(i), data);
          giveAlignedBuffer(buffer); // the writer is done with it once its write resolved
          this.metrics.restored(data.length);
          progress((++done * 99) / Math.max(1, present.length));
        }),
      // The fill's own count is the progress that means something here.
      () => undefined,
      { ...opts, dataBytes: dataBytesOf(manifest.chunks, manifest.virtualSizeBytes) },
    );
    progress(100);
  }

  async deleteBackup(backup: BackupRef): Promise<{ readonly freedBytes: number }> {
    const { space, objects } = await this.open(backup);
    // The manifest first: from then on the backup cannot be restored, so releasing its chunks
    // cannot take data from under a restore that could still start.
    await objects.deleteManifest(backup.id);
    await this.refs.release(backup.id);
    return { freedBytes: await this.collect(space, objects) };
  }

  async verifyBackup(
    backup: BackupRef,
    opts: OperationOptions = {},
  ): Promise<{ readonly ok: true } | { readonly ok: false; readonly problem: string }> {
    const signal = opts.signal;
    try {
      const { objects } = await this.open(backup);
      const manifest = await objects.getManifest(backup.id, signal);
      const seen = new Set<string>();
      const distinct = indicesWithData(manifest).filter((i) => {
        const id = manifest.chunks[i]!;
        return seen.has(id) ? false : (seen.add(id), true);
      });
      await forEachLimited(distinct, CHUNKS_IN_FLIGHT, async (i) => {
        throwIfAborted(signal);
        const buffer = takeEnvelopeBuffer();
        await objects.getChunk(
          manifest.chunks[i]!,
          chunkLength(i, manifest.virtualSizeBytes),
          buffer,
          signal,
        );
        giveAlignedBuffer(buffer);
      });
      return { ok: true };
    } catch (e) {
      if (isBackupDataError(e) && e.code === 'backup_corrupt')
        return { ok: false, problem: e.detail ?? e.message };
      throw e;
    }
  }

  private async open(backup: BackupRef, opts: { copyKey?: boolean } = {}): Promise<Opened> {
    const store = this.stores.byName(backup.storeName);
    const key = await this.keys.forAccount(backup.accountId, opts.copyKey ? store : undefined);
    return {
      space: { store: backup.storeName, accountId: backup.accountId },
      objects: new BackupObjects(store, backup.accountId, key),
    };
  }

  /**
   * The base's manifest when an incremental write can build on it: same store (chunks are shared only
   * within one) and readable. Otherwise null, and the disk is read whole.
   */
  private async usableBase(
    input: WriteBackupInput,
    space: ChunkSpace,
    objects: BackupObjects,
    signal: AbortSignal | undefined,
  ): Promise<BackupManifest | null> {
    const base = input.base;
    if (!base || base.backup.accountId !== input.backup.accountId) return null;
    if (base.backup.storeName !== space.store) return null;
    try {
      return await objects.getManifest(base.backup.id, signal);
    } catch (e) {
      if (isBackupDataError(e) && e.code === 'backup_corrupt') {
        this.log.warn(
          `backup ${input.backup.id}: base ${base.backup.id} unusable (${e.detail}); reading the whole disk`,
        );
        return null;
      }
      throw e;
    }
  }

  private async writeChunks(
    backup: BackupRef,
    session: BackupReadSession,
    base: BackupManifest | null,
    space: ChunkSpace,
    objects: BackupObjects,
    progress: (pct: number) => void,
    signal: AbortSignal | undefined,
  ): Promise<{ manifest: Omit<BackupManifest, 'index'>; sizeBytes: number; storedBytes: number }> {
    const size = session.virtualSizeBytes;
    const chunks: (string | null)[] = new Array<string | null>(chunkCount(size)).fill(null);
    const touched = touchedChunks(session.extents, size);
    const changed = session.mode === 'incremental' ? extentsByChunk(session.extents, size) : null;
    // Taken while the changed chunks are read (the two touch different chunks of the manifest); its
    // failure stops the chunks not yet started and is what the write throws.
    let failed: { error: unknown } | null = null;
    const carrying = changed
      ? this.carryFromBase(backup, session, base, chunks, touched, space).catch((error: unknown) => {
          failed = { error };
        })
      : Promise.resolve();
    let storedBytes = 0;
    let done = 0;
    // Chunks uploaded and not yet durable: synced, then marked stored, a batch at a time.
    let unsynced: string[] = [];
    const syncBatch = async (): Promise<void> => {
      const ids = unsynced;
      unsynced = [];
      await objects.syncChunks(ids, signal);
      await this.refs.markStored(space, ids);
    };
    const acquiring = new ChunkAcquirer(this.refs, space, backup.id);
    try {
      await forEachLimited(touched, CHUNKS_IN_FLIGHT, async (i) => {
        throwIfAborted(signal);
        if (failed) throw failed.error;
        // Read (or, for a changed chunk, built: changedChunk) at the start of a buffer it is then
        // sealed in.
        const into = takeEnvelopeBuffer();
        const length = chunkLength(i, size);
        const data = changed
          ? await this.changedChunk(backup, session, base!, objects, i, changed.get(i)!, into, signal)
          : await session.read(chunkOffset(i), length, { signal, into });
        if (data.length !== length) {
          throw hvError('hypervisor_error', `backup read of chunk ${i}: ${data.length} bytes, not ${length}`);
        }
        // A partly changed chunk counts only what was read from the disk (changedChunk).
        if (!changed) this.metrics.read(data.length);
        chunks[i] = null;
        let sync = false;
        if (data.equals(ZEROS.subarray(0, data.length))) this.metrics.deduplicated('zero', data.length);
        else {
          const chunkId = await sha256Hex(data);
          chunks[i] = chunkId;
          const held = await acquiring.acquire({ chunkId, sizeBytes: storedChunkBytes(data.length) });
          if (!held.stored) {
            const bytes = await objects.putChunk(chunkId, into, data.length, signal);
            this.metrics.uploaded(bytes);
            unsynced.push(chunkId);
            if (held.inserted) storedBytes += bytes;
            sync = unsynced.length >= SYNC_BATCH_CHUNKS;
          } else this.metrics.deduplicated('stored', data.length);
        }
        // Hashed, sealed and stored: nothing holds a view of the buffer any more.
        giveAlignedBuffer(into);
        if (sync) await syncBatch();
        progress((++done * 99) / Math.max(1, touched.length));
      });
    } finally {
      // Nothing of this write outlives it (a failed write's clean-up releases what it took).
      await carrying;
    }
    if (failed) throw (failed as { error: unknown }).error;
    await syncBatch();
    // The references were taken without a flush each: one flush for all, and all still there, before a
    // manifest can name the chunks (chunk-references.ts).
    await this.refs.confirmHeld(backup.id, new Set(chunks.filter((c) => c !== null)).size);
    const sizeBytes = dataBytesOf(chunks, size);
    const manifest: Omit<BackupManifest, 'index'> = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      backupId: backup.id,
      accountId: backup.accountId,
      virtualSizeBytes: size,
      chunkSizeBytes: CHUNK_SIZE_BYTES,
      mode: session.mode,
      chunks,
    };
    return { manifest, sizeBytes, storedBytes };
  }

  /**
   * A chunk of an incremental write, built in `into` (returned: its start): outside the changed
   * extents an incremental view reads as the base backup had it (the driver's promise, not the disk's
   * bytes: a running server's view holds the changed clusters only), so the base's chunk is the
   * starting point and the changed parts are read over it. Only the changed bytes are read from the
   * disk.
   */
  private async changedChunk(
    backup: BackupRef,
    session: BackupReadSession,
    base: BackupManifest,
    objects: BackupObjects,
    i: number,
    parts: readonly DiskExtent[],
    into: Buffer,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    const start = chunkOffset(i);
    const length = chunkLength(i, session.virtualSizeBytes);
    if (parts.length === 1 && parts[0].offset === start && parts[0].length === length) {
      this.metrics.read(length);
      return session.read(start, length, { signal, into });
    }
    const baseId = base.chunks[i];
    let data: Buffer;
    try {
      data = baseId ? await objects.getChunk(baseId, length, into, signal) : into.subarray(0, length).fill(0);
    } catch (e) {
      if (!isBackupDataError(e) || e.code !== 'backup_corrupt') throw e;
      throw new BackupDataError(
        'backup_base_unavailable',
        `backup ${backup.id}: base chunk ${baseId} of chunk ${i} unreadable (${e.detail})`,
      );
    }
    for (const part of parts) {
      const read = await session.read(part.offset, part.length, {
        signal,
        into: data.subarray(part.offset - start),
      });
      this.metrics.read(read.length);
    }
    return data;
  }

  /**
   * An incremental read lists only what changed: every other chunk is the base's, and this backup
   * takes its own reference on it before its manifest is written. A base chunk no longer stored (its
   * backup deleted meanwhile) cannot be rebuilt from an incremental view: the write fails, retryably.
   */
  private async carryFromBase(
    backup: BackupRef,
    session: BackupReadSession,
    base: BackupManifest | null,
    chunks: (string | null)[],
    touched: readonly number[],
    space: ChunkSpace,
  ): Promise<void> {
    if (!base || base.virtualSizeBytes !== session.virtualSizeBytes) {
      throw new BackupDataError(
        'backup_base_unavailable',
        `backup ${backup.id}: incremental read without a base manifest of the same disk size`,
      );
    }
    const isTouched = new Uint8Array(chunks.length);
    for (const i of touched) isTouched[i] = 1;
    const carried: { chunkId: string; sizeBytes: number }[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const id = base.chunks[i];
      if (isTouched[i] || !id) continue;
      chunks[i] = id;
      carried.push({ chunkId: id, sizeBytes: storedChunkBytes(chunkLength(i, base.virtualSizeBytes)) });
    }
    for (let from = 0; from < carried.length; from += CARRY_BATCH) {
      const held = await this.refs.acquire(space, backup.id, carried.slice(from, from + CARRY_BATCH));
      const gone = held.find((c) => !c.stored);
      if (gone) {
        throw new BackupDataError(
          'backup_base_unavailable',
          `backup ${backup.id}: base chunk ${gone.chunkId} is no longer stored`,
        );
      }
    }
  }

  /** Removes the space's chunks no backup holds; returns (and counts) the bytes freed. */
  private async collect(space: ChunkSpace, objects: BackupObjects): Promise<number> {
    const { freedBytes } = await this.refs.collect(space, (chunkId) => objects.deleteChunk(chunkId));
    this.metrics.freed(freedBytes);
    return freedBytes;
  }

  /** A failed write's cleanup: its references released and what they alone held removed. */
  private async releaseQuietly(backup: BackupRef, space: ChunkSpace, objects: BackupObjects): Promise<void> {
    try {
      await this.refs.release(backup.id);
      await this.collect(space, objects);
    } catch (e) {
      // Deleting the failed backup later releases them again (idempotent); never hide the first error.
      this.log.warn(`backup ${backup.id}: releasing a failed write's chunks failed: ${String(e)}`);
    }
  }
}

/** Indices of the manifest's chunks that hold data (the others are zeros: holes in a rebuilt disk). */
function indicesWithData(manifest: BackupManifest): number[] {
  const out: number[] = [];
  manifest.chunks.forEach((id, i) => {
    if (id) out.push(i);
  });
  return out;
}

/** The guest data a manifest's chunks hold (what a restore writes): non-zero chunks × their length. */
function dataBytesOf(chunks: readonly (string | null)[], virtualSizeBytes: number): number {
  return chunks.reduce((sum, id, i) => (id ? sum + chunkLength(i, virtualSizeBytes) : sum), 0);
}
