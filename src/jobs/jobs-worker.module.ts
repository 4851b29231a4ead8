import { Module } from '@nestjs/common';
import { BackupStoreModule } from '../backup-store/backup-store.module';
import { BackupDataModule } from '../backups/data/backup-data.module';
import { HypervisorModule } from '../hypervisor/hypervisor.module';
import { ActionRunner } from './action-runner.service';
import { ActionStore } from './action-store';
import { Heartbeats } from './heartbeats';
import { JobsCoreModule } from './jobs-core.module';
import { ActionRunLocks } from './action-run-locks';
import { NodeWorkerService } from './node-worker.service';
import { PowerStateReconciler } from './power-state-reconciler';
import { SafetyCopyStore } from '../restore-undo/safety-copy-store';
import { SafetyCopyTaker } from '../restore-undo/safety-copy-taker';
import { SafetyCopySweeper } from '../restore-undo/safety-copy-sweeper';

/** The node worker: its runner reaches the hypervisor driver and, for backups, the data path over the stores. */
@Module({
  imports: [JobsCoreModule, HypervisorModule, BackupDataModule.withStores(BackupStoreModule)],
  providers: [
    ActionStore,
    Heartbeats,
    ActionRunner,
    NodeWorkerService,
    PowerStateReconciler,
    ActionRunLocks,
    // Undo of a restore: the safety copy each restore takes first, and the removal of expired ones.
    SafetyCopyStore,
    SafetyCopyTaker,
    SafetyCopySweeper,
  ],
  exports: [NodeWorkerService, SafetyCopySweeper, HypervisorModule],
})
export class JobsWorkerModule {}
