import { Global, MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { ApiMetricsCollectors } from './api-collectors';
import { HttpMetricsMiddleware } from './http-metrics.middleware';
import { JobMetrics } from './job-metrics';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';
import { QueueBoard } from './queue-board';
import { WorkerMetricsServer } from './worker-metrics.server';

/** The registry and the job recorder, for whichever role imports a metrics module. */
@Global()
@Module({ providers: [MetricsService, JobMetrics], exports: [MetricsService, JobMetrics] })
export class MetricsCoreModule {}

/** API role: `/metrics`, HTTP timing of every request, scrape-time gauges, the admin queue dashboard. */
@Module({
  imports: [MetricsCoreModule, AuthModule, JobsCoreModule],
  controllers: [MetricsController],
  providers: [ApiMetricsCollectors, QueueBoard],
})
export class ApiMetricsModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(HttpMetricsMiddleware).forRoutes('*');
  }
}

/** Worker role: job metrics, served by a small listener on `WORKER_METRICS_PORT` (off by default). */
@Module({ imports: [MetricsCoreModule], providers: [WorkerMetricsServer], exports: [WorkerMetricsServer] })
export class WorkerMetricsModule {}
