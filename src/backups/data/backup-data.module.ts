import { Module } from '@nestjs/common';
import { BACKUP_DATA_PATH } from '../backup-data-path';
import { AccountKeys, BackupMasterKey } from './account-keys';
import { ChunkReferences } from './chunk-references';
import { ChunkedBackupDataPath } from './chunked-backup-data-path';

/**
 * The backup data path for the worker's backup jobs. Needs, from the importing context, the worker's
 * `HYPERVISOR_DRIVER` (a `BackupCapableDriver`), `BACKUP_STORES` (the store registry) and Prisma.
 */
@Module({
  providers: [
    BackupMasterKey,
    AccountKeys,
    ChunkReferences,
    ChunkedBackupDataPath,
    { provide: BACKUP_DATA_PATH, useExisting: ChunkedBackupDataPath },
  ],
  exports: [BACKUP_DATA_PATH],
})
export class BackupDataModule {}
