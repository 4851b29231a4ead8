import { Module } from '@nestjs/common';
import { HypervisorModule } from '../hypervisor/hypervisor.module';
import { ActionRunner } from './action-runner.service';
import { ActionStore } from './action-store';
import { JobsCoreModule } from './jobs-core.module';
import { NodeWorkerService } from './node-worker.service';

@Module({
  imports: [JobsCoreModule, HypervisorModule],
  providers: [ActionStore, ActionRunner, NodeWorkerService],
  exports: [NodeWorkerService, HypervisorModule],
})
export class JobsWorkerModule {}
