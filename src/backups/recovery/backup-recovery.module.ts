import { Module } from '@nestjs/common';
import { BackupStoreModule } from '../../backup-store/backup-store.module';
import { AccountKeys, BackupMasterKey } from '../data/account-keys';
import { ChunkReferences } from '../data/chunk-references';
import { BackupReindex } from './backup-reindex';
import { MasterKeyRotation } from './master-key-rotation';

/**
 * The operator's recovery tools for backup storage (the operator CLI's `backups …` commands): rebuild
 * the database's index of a store from its manifests, and rotate the master key. Prisma and the
 * configuration come from the global modules; the stores from configuration, as in the workers.
 */
@Module({
  imports: [BackupStoreModule],
  providers: [BackupMasterKey, AccountKeys, ChunkReferences, BackupReindex, MasterKeyRotation],
  exports: [BackupReindex, MasterKeyRotation],
})
export class BackupRecoveryModule {}
