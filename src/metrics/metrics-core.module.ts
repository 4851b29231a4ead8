import { Global, Module } from '@nestjs/common';
import { JobMetrics } from './job-metrics';
import { MetricsService } from './metrics.service';

/** The registry and the job recorder, for whichever role imports a metrics module. */
@Global()
@Module({ providers: [MetricsService, JobMetrics], exports: [MetricsService, JobMetrics] })
export class MetricsCoreModule {}
