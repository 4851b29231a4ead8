import { Module } from '@nestjs/common';
import { HypervisorModule } from '../hypervisor/hypervisor.module';
import { ActionRunner } from './action-runner.service';
import { JobsCoreModule } from './jobs-core.module';
import { NodeWorkerService } from './node-worker.service';

@Module({
  imports: [JobsCoreModule, HypervisorModule],
  providers: [ActionRunner, NodeWorkerService],
  exports: [NodeWorkerService, HypervisorModule],
})
export class JobsWorkerModule {}
