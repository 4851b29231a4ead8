/**
 * The backup data path as the backup jobs see it: turn a server's disk into chunks and a manifest in
 * backup storage, rebuild a disk from a manifest, and release what a deleted backup held.
 *
 * The jobs own the backup rows and actions; the data path owns chunks, manifests, chunk references
 * and account keys. Layout in a store (see the implementation for the formats): content-addressed,
 * encrypted chunks per account, and one manifest per backup listing every chunk of the whole disk,
 * written last, so any backup restores from its own manifest alone.
 */

import {
  FullReadReason,
  OperationOptions,
  ServerRef,
  SnapshotConsistency,
} from '../hypervisor/hypervisor-driver';
import { BackupKind } from '../generated/prisma/enums';

/** The backup a job writes or reads: enough to find its manifest and keys. */
export interface BackupRef {
  readonly id: number;
  readonly accountId: number;
  /**
   * The backup store (by name) that holds, or will hold, the backup: its node's store when its create
   * job started, recorded on its row, so it is found there from any node and after the node changes
   * store.
   */
  readonly storeName: string;
}

/**
 * What the backup's row says of it, written into its manifest so the database's index can be rebuilt
 * from the store alone (manifest.ts `ManifestIndex`).
 */
export interface BackupFacts {
  readonly serverId: number;
  readonly name: string;
  readonly description: string;
  readonly kind: BackupKind;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
}

export interface WriteBackupInput {
  readonly backup: BackupRef;
  readonly facts: BackupFacts;
  readonly server: ServerRef;
  /** The server's latest completed, non-corrupt backup to be incremental from, with its checkpoint. */
  readonly base: { readonly backup: BackupRef; readonly checkpoint: string } | null;
  /** The checkpoint name this backup creates on the disk. */
  readonly checkpoint: string;
}

export interface WriteBackupResult {
  /** Guest-visible disk data the backup holds (non-zero chunks × their size). */
  readonly sizeBytes: number;
  /** Bytes this backup added to backup storage (chunks no earlier backup had stored). */
  readonly storedBytes: number;
  readonly mode: 'full' | 'incremental';
  readonly modeReason: FullReadReason | null;
  readonly consistency: SnapshotConsistency;
  readonly checkpoint: string;
}

export interface BackupDataPath {
  /**
   * Read the server's disk (only what changed since `base` when possible), store new chunks, then
   * write the manifest. Nothing of a failed or cancelled write is visible as a backup, and the chunks
   * it referenced are released. Errors: the driver's and the store's, `cancelled`.
   */
  writeBackup(
    input: WriteBackupInput,
    onProgress: (pct: number) => void,
    opts?: OperationOptions,
  ): Promise<WriteBackupResult>;

  /**
   * Rebuild `target`'s disk from the backup's manifest, verifying every chunk's hash, sparse where
   * chunks are zero, and replace the disk atomically (the driver's `restoreDiskFrom`). A missing or
   * corrupt chunk fails the restore with the disk untouched.
   */
  restoreBackup(
    backup: BackupRef,
    target: ServerRef,
    onProgress: (pct: number) => void,
    opts?: OperationOptions,
  ): Promise<void>;

  /** Release the backup's chunk references and remove its manifest. Idempotent. Returns bytes freed. */
  deleteBackup(backup: BackupRef): Promise<{ readonly freedBytes: number }>;

  /** Re-read every chunk of the backup and check its hash. */
  verifyBackup(
    backup: BackupRef,
    opts?: OperationOptions,
  ): Promise<{ readonly ok: true } | { readonly ok: false; readonly problem: string }>;
}

/** DI token under which the data path is provided. */
export const BACKUP_DATA_PATH = Symbol('BACKUP_DATA_PATH');
