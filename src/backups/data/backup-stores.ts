import { BackupStore } from '../../backup-store/backup-store';

/** A backup store with the name chunks are shared under (a node's `backup_store`). */
export interface NamedBackupStore {
  readonly name: string;
  readonly store: BackupStore;
}

/**
 * How the data path finds a backup's store: by the name recorded with the backup. Provided under
 * `BACKUP_STORES` by whoever owns the stores' configuration (the store registry); the name decides
 * which chunks can be shared, so two names must never point at the same location.
 */
export interface BackupStores {
  /** The store of that name; a BackupStoreError `unavailable` when this process does not configure it. */
  byName(name: string): BackupStore;
}

export const BACKUP_STORES = Symbol('BACKUP_STORES');
