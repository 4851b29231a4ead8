import { Module } from '@nestjs/common';
import { HypervisorModule } from '../hypervisor/hypervisor.module';
import { ActionRunner } from './action-runner.service';
import { ActionStore } from './action-store';
import { Heartbeats } from './heartbeats';
import { JobsCoreModule } from './jobs-core.module';
import { NodeWorkerService } from './node-worker.service';

@Module({
  imports: [JobsCoreModule, HypervisorModule],
  providers: [ActionStore, Heartbeats, ActionRunner, NodeWorkerService],
  exports: [NodeWorkerService, HypervisorModule],
})
export class JobsWorkerModule {}
