import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds; HTTP requests are mostly milliseconds, a slow database query shows in the upper buckets. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds; jobs copy whole disks, from a second (delete) to well over an hour (a large create). */
const JOB_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400];

export type JobOutcome = 'succeeded' | 'failed' | 'skipped' | 'retry' | 'error';

/**
 * The process's Prometheus registry and instruments (prom-client). One registry per application
 * instance rather than prom-client's global one, so several apps in one process (tests) do not clash.
 * Both roles register every instrument; each role fills in its own: the API the HTTP histogram and the
 * scrape-time gauges (see ApiMetricsCollectors), the worker the job instruments (see JobMetrics).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  readonly jobDuration = new Histogram({
    name: 'vps_job_duration_seconds',
    help: 'Duration of one job attempt by kind and outcome (succeeded, failed, skipped, retry, error)',
    labelNames: ['kind', 'outcome'] as const,
    buckets: JOB_BUCKETS,
    registers: [this.registry],
  });

  readonly jobsActive = new Gauge({
    name: 'vps_jobs_active',
    help: 'Jobs running now in this worker, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly jobsDeferred = new Counter({
    name: 'vps_jobs_deferred_total',
    help: "Jobs handed back to the queue for later because their account held its share of the worker's slots",
    registers: [this.registry],
  });

  readonly bytesCopied = new Counter({
    name: 'vps_snapshot_bytes_copied_total',
    help: 'Bytes written to snapshot storage by successful snapshot creations',
    registers: [this.registry],
  });

  readonly backupReadBytes = new Counter({
    name: 'vps_backup_read_bytes_total',
    help: "Bytes of servers' disks read by backup creates",
    registers: [this.registry],
  });

  readonly backupUploadedBytes = new Counter({
    name: 'vps_backup_uploaded_bytes_total',
    help: 'Bytes written to backup storage by backup creates (sealed chunks and manifests)',
    registers: [this.registry],
  });

  readonly backupDeduplicatedBytes = new Counter({
    name: 'vps_backup_deduplicated_bytes_total',
    help: 'Bytes backup creates read but did not upload, by reason (stored: the chunk was already stored; zero: all-zero chunk)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly backupRestoredBytes = new Counter({
    name: 'vps_backup_restored_bytes_total',
    help: 'Bytes of backups written onto disks by backup restores',
    registers: [this.registry],
  });

  readonly backupFreedBytes = new Counter({
    name: 'vps_backup_freed_bytes_total',
    help: 'Bytes removed from backup storage by garbage collection (chunks no backup holds)',
    registers: [this.registry],
  });

  readonly backupOperations = new Counter({
    name: 'vps_backup_operations_total',
    help: 'Backup actions ended, by operation (create, restore, delete, verify) and result (succeeded, or the error code; a verification that found damage: backup_corrupt)',
    labelNames: ['operation', 'result'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition of everything registered (runs the scrape-time collectors). */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
