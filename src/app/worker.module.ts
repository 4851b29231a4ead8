import { DynamicModule, Global, Module, OnModuleDestroy } from '@nestjs/common';
import { BackupStoreModule } from '../backup-store/backup-store.module';
import { CommonModule } from '../common/common.module';
import { loggerModule } from '../common/logging';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { JobsWorkerModule } from '../jobs/jobs-worker.module';
import { NodeWorkerService } from '../jobs/node-worker.service';
import { WorkerMetricsModule } from '../metrics/worker-metrics.module';
import { PrismaModule } from '../prisma/prisma.module';
import { RedisModule } from '../redis/redis.module';
import { SafetyCopySweeper } from '../restore-undo/safety-copy-sweeper';

/**
 * The worker's share of the idempotency records: only the service (the dispatcher drops expired keys),
 * not the API's HTTP interceptor, which would load the API's request/response machinery.
 */
@Global()
@Module({ providers: [IdempotencyService], exports: [IdempotencyService] })
export class WorkerIdempotencyModule {}

/**
 * The job worker process: one per hypervisor node, consuming that node's queue. It imports only what
 * the worker runs; nothing here may import an API module (controllers, DTOs, OpenAPI, Express,
 * bull-board), so the worker process never loads them (see test/unit/worker-footprint.spec.ts).
 */
@Module({})
export class WorkerModule implements OnModuleDestroy {
  constructor(
    private readonly worker: NodeWorkerService,
    private readonly sweeper: SafetyCopySweeper,
  ) {}

  /**
   * Closing stops taking work and lets running jobs finish before anything they use closes. Nest runs
   * every onModuleDestroy (this root module's first, the global Prisma and Redis last) before any
   * onApplicationShutdown; a job left running would meet closed pools, and Prisma disconnecting while
   * the job's transaction was starting leaves that connection checked out and never finishes.
   */
  async onModuleDestroy(): Promise<void> {
    await Promise.all([this.worker.stop(), this.sweeper.stop()]);
  }

  static forConfig(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        ConfigModule.forConfig(config),
        loggerModule('worker'),
        CommonModule,
        PrismaModule,
        RedisModule,
        WorkerIdempotencyModule,
        JobsWorkerModule,
        WorkerMetricsModule,
        // The node's backup store; at start-up it sweeps what crashed writers left in directory stores.
        BackupStoreModule,
      ],
    };
  }
}
