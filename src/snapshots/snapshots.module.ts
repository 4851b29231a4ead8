import { Module } from '@nestjs/common';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { SnapshotRepository } from './snapshot.repository';
import { SnapshotsController } from './snapshots.controller';
import { SnapshotsService } from './snapshots.service';

@Module({
  imports: [JobsCoreModule],
  controllers: [SnapshotsController],
  providers: [SnapshotsService, SnapshotRepository],
  exports: [SnapshotsService],
})
export class SnapshotsModule {}
