import { MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { ApiMetricsCollectors } from './api-collectors';
import { HttpMetricsMiddleware } from './http-metrics.middleware';
import { MetricsController } from './metrics.controller';
import { MetricsCoreModule } from './metrics-core.module';
import { QueueBoard } from './queue-board';

export { MetricsCoreModule } from './metrics-core.module';
export { WorkerMetricsModule } from './worker-metrics.module';

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
