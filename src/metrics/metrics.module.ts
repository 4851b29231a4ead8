import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { JobsCoreModule } from '../jobs/jobs-core.module';
import { ApiMetricsCollectors } from './api-collectors';
import { MetricsController } from './metrics.controller';
import { MetricsCoreModule } from './metrics-core.module';
import { QueueBoard } from './queue-board';
import { RequestRecorder } from './request-recorder';

export { MetricsCoreModule } from './metrics-core.module';
export { WorkerMetricsModule } from './worker-metrics.module';

/** API role: `/metrics`, scrape-time gauges, the admin queue dashboard (HTTP timing: RequestRecorder). */
@Module({
  imports: [MetricsCoreModule, AuthModule, JobsCoreModule],
  controllers: [MetricsController],
  providers: [ApiMetricsCollectors, QueueBoard, RequestRecorder],
  exports: [RequestRecorder],
})
export class ApiMetricsModule {}
