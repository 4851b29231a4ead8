import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { BackupStoreSpec, DEFAULT_BACKUP_STORE } from '../config/backup-stores';
import { BackupStores, NamedBackupStore } from '../backups/data/backup-stores';
import { PrismaService } from '../prisma/prisma.service';
import { BackupStore, BackupStoreError } from './backup-store';
import { DirectoryStore } from './directory-store';
import type { S3Store } from './s3-store';

/** Temporary files older than this are a crashed writer's (other nodes may be writing right now). */
const STALE_TEMP_MS = 3_600_000;

export function createBackupStore(spec: BackupStoreSpec): BackupStore {
  return spec.kind === 'directory' ? new DirectoryStore(spec.path) : new (s3StoreClass())(spec);
}

/**
 * The S3 store, its module loaded on first use: the AWS SDK it brings adds ~33 MB to a process's
 * memory, and most processes (every API, a worker whose node stores into a directory) never use it.
 */
function s3StoreClass(): typeof S3Store {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded lazily on purpose
  return (require('./s3-store') as typeof import('./s3-store')).S3Store;
}

/**
 * The configured backup stores, and which one a node uses (its `backup_store` column). One instance per
 * store per process, made on first use. A backup written through a node's store is readable through
 * any node that names the same store: that is how a backup restores onto another host.
 */
@Injectable()
export class BackupStoreRegistry implements BackupStores, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(BackupStoreRegistry.name);
  private readonly stores = new Map<string, BackupStore>();

  constructor(
    private readonly config: AppConfig,
    private readonly prisma: PrismaService,
  ) {}

  /** Names a node may use: the configured stores, and `default` (a node's store unless told otherwise). */
  names(): string[] {
    return [...new Set([DEFAULT_BACKUP_STORE, ...this.config.backupStores.keys()])].sort();
  }

  isKnown(name: string): boolean {
    return name === DEFAULT_BACKUP_STORE || this.config.backupStores.has(name);
  }

  /** The store of that name; `unavailable` when it is not configured in this process. */
  byName(name: string): BackupStore {
    const made = this.stores.get(name);
    if (made) return made;
    const spec = this.config.backupStores.get(name);
    if (!spec) {
      throw new BackupStoreError(
        'unavailable',
        name === DEFAULT_BACKUP_STORE
          ? 'the default backup store is not configured (set BACKUP_DIR or BACKUP_STORES)'
          : `backup store "${name}" is not configured (BACKUP_STORES)`,
      );
    }
    const store = createBackupStore(spec);
    this.stores.set(name, store);
    return store;
  }

  /**
   * The store a node's backups go to now (by node id, or its row), with its name. A backup records the
   * name when its create starts and is read back through `byName`, whatever the node uses later.
   */
  async forNode(node: number | { readonly backupStore: string }): Promise<NamedBackupStore> {
    let name: string;
    if (typeof node === 'number') {
      const row = await this.prisma.node.findUnique({ where: { id: node }, select: { backupStore: true } });
      if (!row) throw new BackupStoreError('storage_error', `node ${node} does not exist`);
      name = row.backupStore;
    } else {
      name = node.backupStore;
    }
    return { name, store: this.byName(name) };
  }

  /** A worker clears what crashed writers left in its directory stores (one directory read each). */
  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.workerNode) return;
    for (const [name, spec] of this.config.backupStores) {
      if (spec.kind !== 'directory') continue;
      try {
        const removed = await new DirectoryStore(spec.path).sweepTemporaryFiles(STALE_TEMP_MS);
        if (removed) this.logger.log(`backup store ${name}: removed ${removed} stale temporary files`);
      } catch (e) {
        this.logger.warn(`backup store ${name}: sweeping temporary files failed: ${(e as Error).message}`);
      }
    }
  }

  onModuleDestroy(): void {
    for (const store of this.stores.values()) if (store.kind === 's3') (store as S3Store).close();
  }
}
