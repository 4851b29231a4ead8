import { Module } from '@nestjs/common';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { BackupRepository } from './backup.repository';
import { BackupPolicyController, BackupsController } from './backups.controller';
import { BackupsService } from './backups.service';

@Module({
  imports: [JobsCoreModule],
  controllers: [BackupsController, BackupPolicyController],
  providers: [BackupsService, BackupRepository],
  exports: [BackupsService],
})
export class BackupsModule {}
