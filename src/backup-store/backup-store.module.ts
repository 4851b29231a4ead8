import { Module } from '@nestjs/common';
import { BackupStoreRegistry } from './backup-store.registry';

/** The backup stores of configuration, per node (the registry); AppConfig and Prisma are global. */
@Module({ providers: [BackupStoreRegistry], exports: [BackupStoreRegistry] })
export class BackupStoreModule {}
