import { Injectable, Optional } from '@nestjs/common';
import { MetricsService } from './metrics.service';

/** Why a chunk a backup read was not uploaded. */
export type DedupReason = 'stored' | 'zero';
export type BackupOperation = 'create' | 'restore' | 'delete' | 'verify';

/**
 * What the backup data path and the backup jobs count, where the work happens (the worker). Without a
 * MetricsService (a context that did not import the metrics module) every call is a no-op, so backup
 * behaviour never depends on it.
 */
@Injectable()
export class BackupMetrics {
  static readonly none = new BackupMetrics();

  constructor(@Optional() private readonly metrics?: MetricsService) {}

  /** A backup read `bytes` of a server's disk. */
  read(bytes: number): void {
    if (bytes > 0) this.metrics?.backupReadBytes.inc(bytes);
  }

  /** `bytes` went to backup storage (a sealed chunk or manifest). */
  uploaded(bytes: number): void {
    if (bytes > 0) this.metrics?.backupUploadedBytes.inc(bytes);
  }

  /** A chunk of `bytes` was read but not uploaded: already stored, or all zeros. */
  deduplicated(reason: DedupReason, bytes: number): void {
    if (bytes > 0) this.metrics?.backupDeduplicatedBytes.inc({ reason }, bytes);
  }

  /** A restore wrote `bytes` of a backup onto a disk. */
  restored(bytes: number): void {
    if (bytes > 0) this.metrics?.backupRestoredBytes.inc(bytes);
  }

  /** Garbage collection removed `bytes` from backup storage. */
  freed(bytes: number): void {
    if (bytes > 0) this.metrics?.backupFreedBytes.inc(bytes);
  }

  /** A backup action ended: `result` is `succeeded` or the action's error code. */
  finished(operation: BackupOperation, result: string): void {
    this.metrics?.backupOperations.inc({ operation, result });
  }
}
