import { Module } from '@nestjs/common';
import { ActionsModule } from '../actions/actions.module';
import { BackupsModule } from '../backups/backups.module';
import { SnapshotsModule } from '../snapshots/snapshots.module';
import { RestoreUndoController } from './restore-undo.controller';
import { RestoreUndoService } from './restore-undo.service';

/** The API's share of undo: `POST /api/v1/actions/{id}/undo/`. The worker's is in JobsWorkerModule. */
@Module({
  imports: [ActionsModule, SnapshotsModule, BackupsModule],
  controllers: [RestoreUndoController],
  providers: [RestoreUndoService],
})
export class RestoreUndoModule {}
