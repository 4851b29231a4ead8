import { createHash } from 'node:crypto';
import { BackupStore, isBackupStoreError } from '../../backup-store/backup-store';
import { BackupDataError } from './backup-data-errors';
import { chunkKey, manifestKey } from './backup-layout';
import { BackupManifest, chunkAad, decodeManifest, encodeManifest, manifestAad } from './manifest';
import { open, seal, SEAL_OVERHEAD_BYTES, SealingKey } from './sealed-box';

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The bytes a chunk of `plainBytes` takes in a store. */
export function storedChunkBytes(plainBytes: number): number {
  return plainBytes + SEAL_OVERHEAD_BYTES;
}

/**
 * One account's sealed objects in one store: chunks and manifests are written sealed with the
 * account's key and read back opened and checked — a chunk against its id (its plaintext's sha256) and
 * length, a manifest against the backup it must describe. Whatever fails a check is `backup_corrupt`.
 */
export class BackupObjects {
  constructor(
    readonly store: BackupStore,
    private readonly accountId: number,
    private readonly key: SealingKey,
  ) {}

  /** Seal and store a chunk; returns the bytes stored. */
  async putChunk(chunkId: string, plain: Buffer, signal?: AbortSignal): Promise<number> {
    const sealed = seal(this.key, plain, chunkAad(this.accountId, chunkId));
    await this.store.put(chunkKey(this.accountId, chunkId), sealed, { signal });
    return sealed.length;
  }

  /** The chunk's plaintext, verified: its hash is `chunkId` and its length `length`. */
  async getChunk(chunkId: string, length: number, signal?: AbortSignal): Promise<Buffer> {
    const sealed = await this.getOrCorrupt(chunkKey(this.accountId, chunkId), `chunk ${chunkId}`, signal);
    const plain = open(this.key, sealed, chunkAad(this.accountId, chunkId));
    if (!plain)
      throw new BackupDataError('backup_corrupt', `chunk ${chunkId}: does not open with the account key`);
    if (plain.length !== length || sha256Hex(plain) !== chunkId) {
      throw new BackupDataError('backup_corrupt', `chunk ${chunkId}: content does not match its id`);
    }
    return plain;
  }

  /** Seal and store a manifest; returns the bytes stored. */
  async putManifest(manifest: BackupManifest, signal?: AbortSignal): Promise<number> {
    const sealed = seal(this.key, encodeManifest(manifest), manifestAad(this.accountId, manifest.backupId));
    await this.store.put(manifestKey(this.accountId, manifest.backupId), sealed, { signal });
    return sealed.length;
  }

  async getManifest(backupId: number, signal?: AbortSignal): Promise<BackupManifest> {
    const sealed = await this.getOrCorrupt(manifestKey(this.accountId, backupId), 'manifest', signal);
    const json = open(this.key, sealed, manifestAad(this.accountId, backupId));
    if (!json) throw new BackupDataError('backup_corrupt', `manifest of backup ${backupId}: does not open`);
    return decodeManifest(json, { accountId: this.accountId, backupId });
  }

  async deleteManifest(backupId: number): Promise<void> {
    await this.store.delete(manifestKey(this.accountId, backupId));
  }

  async deleteChunk(chunkId: string): Promise<void> {
    await this.store.delete(chunkKey(this.accountId, chunkId));
  }

  private async getOrCorrupt(key: string, what: string, signal?: AbortSignal): Promise<Buffer> {
    try {
      return await this.store.get(key, { signal });
    } catch (e) {
      if (isBackupStoreError(e) && e.code === 'not_found') {
        throw new BackupDataError('backup_corrupt', `${what}: missing from backup storage`);
      }
      throw e;
    }
  }
}

/**
 * Runs `work` on every item with at most `limit` in flight, in order of start; the first failure stops
 * new starts and is rethrown once the running ones settled (so no work outlives the call).
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const lane = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure) throw (failure as { error: unknown }).error;
}
