import { Module } from '@nestjs/common';
import { ReadinessModule } from '../health/readiness.module';
import { MetricsCoreModule } from './metrics-core.module';
import { WorkerMetricsServer } from './worker-metrics.server';

/**
 * Worker role: job metrics, served by a small listener on `WORKER_METRICS_PORT` (off by default).
 * In its own file so that the worker does not load the API's metrics controller, HTTP middleware,
 * auth guards and queue dashboard (bull-board, Express) that `metrics.module.ts` brings in.
 */
@Module({
  imports: [MetricsCoreModule, ReadinessModule],
  providers: [WorkerMetricsServer],
  exports: [WorkerMetricsServer],
})
export class WorkerMetricsModule {}
