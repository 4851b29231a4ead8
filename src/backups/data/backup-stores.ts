import { BackupStore } from '../../backup-store/backup-store';

/** A backup store with the name chunks are shared under (a node's `backup_store`). */
export interface NamedBackupStore {
  readonly name: string;
  readonly store: BackupStore;
}

/**
 * How the data path finds the store a node uses. Provided under `BACKUP_STORES` by whoever owns the
 * stores' configuration (the store registry); its name decides which chunks can be shared, so two
 * nodes that write through the same store must give the same name.
 */
export interface BackupStores {
  forNode(nodeId: number): Promise<NamedBackupStore>;
}

export const BACKUP_STORES = Symbol('BACKUP_STORES');
