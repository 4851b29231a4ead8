import { Global, Module } from '@nestjs/common';
import { BackupMetrics } from './backup-metrics';
import { JobMetrics } from './job-metrics';
import { MetricsService } from './metrics.service';

/** The registry and the job and backup recorders, for whichever role imports a metrics module. */
@Global()
@Module({
  providers: [MetricsService, JobMetrics, BackupMetrics],
  exports: [MetricsService, JobMetrics, BackupMetrics],
})
export class MetricsCoreModule {}
