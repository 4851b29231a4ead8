import { BackupStore, isBackupStoreError } from '../../backup-store/backup-store';
import { takeAlignedBuffer } from '../../common/aligned-buffers';
import { sha256HexHere } from '../../common/sha256-thread';
import { BackupDataError } from './backup-data-errors';
import { CHUNK_SIZE_BYTES, chunkKey, manifestKey } from './backup-layout';
import { BackupManifest, chunkAad, decodeManifest, encodeManifest, manifestAad } from './manifest';
import { open, seal, SEAL_OVERHEAD_BYTES, SealingKey, sealInPlace } from './sealed-box';

/** The bytes a chunk of `plainBytes` takes in a store. */
export function storedChunkBytes(plainBytes: number): number {
  return plainBytes + SEAL_OVERHEAD_BYTES;
}

/**
 * A buffer from the process's pool of page-aligned buffers (common/aligned-buffers.ts) that a whole
 * sealed chunk fits in: no fresh 4 MiB buffer (mapped, zeroed and faulted in) per chunk, and a
 * directory store writes and reads it in place with O_DIRECT. Given back with `giveAlignedBuffer` once
 * nothing holds a view of it; after a failure it is dropped instead.
 */
export function takeEnvelopeBuffer(): Buffer {
  return takeAlignedBuffer(storedChunkBytes(CHUNK_SIZE_BYTES));
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

  /**
   * Seal and store a chunk whose plaintext is the first `length` bytes of `buffer` (from
   * `takeEnvelopeBuffer`); returns the bytes stored. It is sealed in place, so those bytes are gone
   * afterwards. Durable only after `syncChunks` of its id: a backup's chunks are flushed together,
   * before anything records them as stored.
   */
  async putChunk(chunkId: string, buffer: Buffer, length: number, signal?: AbortSignal): Promise<number> {
    const sealed = sealInPlace(this.key, buffer, length, chunkAad(this.accountId, chunkId));
    await this.store.put(chunkKey(this.accountId, chunkId), sealed, { signal, durable: false });
    return sealed.length;
  }

  /** Make the chunks put so far durable (the store's `sync`). */
  async syncChunks(chunkIds: readonly string[], signal?: AbortSignal): Promise<void> {
    await this.store.sync(
      chunkIds.map((id) => chunkKey(this.accountId, id)),
      { signal },
    );
  }

  /**
   * The chunk's plaintext, verified: its hash is `chunkId` and its length `length`. The sealed chunk is
   * read into `buffer` (from `takeEnvelopeBuffer`) and opened there, in place: the plaintext is the
   * start of `buffer`, returned. A reader then needs one chunk buffer per chunk in flight, not two.
   * After a failure what `buffer` holds is not to be used.
   */
  async getChunk(chunkId: string, length: number, buffer: Buffer, signal?: AbortSignal): Promise<Buffer> {
    const sealed = await this.getOrCorrupt(
      chunkKey(this.accountId, chunkId),
      `chunk ${chunkId}`,
      signal,
      buffer,
    );
    if (sealed.length !== storedChunkBytes(length)) {
      throw new BackupDataError(
        'backup_corrupt',
        `chunk ${chunkId}: ${sealed.length} bytes stored, ${storedChunkBytes(length)} expected`,
      );
    }
    // Opened into `buffer` whether or not the store read into it (small objects come back in a buffer
    // of the store's); in place, each plaintext byte lands before its ciphertext byte, already read.
    const plain = open(this.key, sealed, chunkAad(this.accountId, chunkId), buffer);
    if (!plain)
      throw new BackupDataError('backup_corrupt', `chunk ${chunkId}: does not open with the account key`);
    // On this thread: a restore waits on the disk, and the round trip to the hash thread made it
    // 1.07–1.19× slower (docs/benchmarks.md *6*).
    if (plain.length !== length || sha256HexHere(plain) !== chunkId) {
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

  private async getOrCorrupt(
    key: string,
    what: string,
    signal?: AbortSignal,
    into?: Buffer,
  ): Promise<Buffer> {
    try {
      return await this.store.get(key, { signal, into });
    } catch (e) {
      if (isBackupStoreError(e) && e.code === 'not_found') {
        throw new BackupDataError('backup_corrupt', `${what}: missing from backup storage`);
      }
      throw e;
    }
  }
}
