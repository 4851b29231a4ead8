import { Module } from '@nestjs/common';
import { BACKUP_STORES } from '../backups/data/backup-stores';
import { BackupStoreRegistry } from './backup-store.registry';

/**
 * The backup stores of configuration, per node: the registry, also as the data path's `BACKUP_STORES`
 * (`BackupDataModule.withStores(BackupStoreModule)`). AppConfig and Prisma are global.
 */
@Module({
  providers: [BackupStoreRegistry, { provide: BACKUP_STORES, useExisting: BackupStoreRegistry }],
  exports: [BackupStoreRegistry, BACKUP_STORES],
})
export class BackupStoreModule {}
