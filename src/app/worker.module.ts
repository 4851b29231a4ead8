import { DynamicModule, Module } from '@nestjs/common';
import { CommonModule } from '../common/common.module';
import { loggerModule } from '../common/logging';
import { AppConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { IdempotencyModule } from '../idempotency/idempotency.module';
import { JobsWorkerModule } from '../jobs/jobs-worker.module';
import { WorkerMetricsModule } from '../metrics/metrics.module';
import { PrismaModule } from '../prisma/prisma.module';
import { RedisModule } from '../redis/redis.module';

/** The job worker process: one per hypervisor node, consuming that node's queue. */
@Module({})
export class WorkerModule {
  static forConfig(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        ConfigModule.forConfig(config),
        loggerModule('worker'),
        CommonModule,
        PrismaModule,
        RedisModule,
        IdempotencyModule,
        JobsWorkerModule,
        WorkerMetricsModule,
      ],
    };
  }
}
