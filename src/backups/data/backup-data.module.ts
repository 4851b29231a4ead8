import { DynamicModule, Module, Type } from '@nestjs/common';
import { HypervisorModule } from '../../hypervisor/hypervisor.module';
import { BACKUP_DATA_PATH } from '../backup-data-path';
import { AccountKeys, BackupMasterKey } from './account-keys';
import { ChunkReferences } from './chunk-references';
import { ChunkedBackupDataPath } from './chunked-backup-data-path';

/**
 * The backup data path for the worker's backup jobs, over the worker's driver (`HypervisorModule`,
 * whose driver must be a `BackupCapableDriver`) and the stores module given, which exports
 * `BACKUP_STORES` (backup-stores.ts). Prisma, the configuration and the clock come from the global
 * modules.
 */
@Module({})
export class BackupDataModule {
  static withStores(stores: Type | DynamicModule): DynamicModule {
    return {
      module: BackupDataModule,
      imports: [HypervisorModule, stores],
      providers: [
        BackupMasterKey,
        AccountKeys,
        ChunkReferences,
        ChunkedBackupDataPath,
        { provide: BACKUP_DATA_PATH, useExisting: ChunkedBackupDataPath },
      ],
      exports: [BACKUP_DATA_PATH],
    };
  }
}
