import { Module } from '@nestjs/common';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { BackupScheduler } from './backup-scheduler';

/** Automatic backups, retention and verification schedules (runs in every API process). */
@Module({ imports: [JobsCoreModule], providers: [BackupScheduler], exports: [BackupScheduler] })
export class BackupScheduleModule {}
