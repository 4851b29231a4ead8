import { Injectable, Optional } from '@nestjs/common';
import { JobOutcome, MetricsService } from './metrics.service';

const OUTCOMES: readonly string[] = ['succeeded', 'failed', 'skipped'];

/**
 * What the job code calls at job start/end (one line each place). Without a MetricsService (a context
 * that did not import the metrics module) every call is a no-op, so job behaviour never depends on it.
 */
@Injectable()
export class JobMetrics {
  static readonly none = new JobMetrics();

  constructor(@Optional() private readonly metrics?: MetricsService) {}

  /** Runs one job attempt, counting it active meanwhile and recording its duration and outcome. */
  async track<T>(kind: string, run: () => Promise<T>): Promise<T> {
    const m = this.metrics;
    if (!m) return run();
    const started = process.hrtime.bigint();
    m.jobsActive.inc({ kind });
    let outcome: JobOutcome = 'error';
    try {
      const result = await run();
      outcome =
        typeof result === 'string' && OUTCOMES.includes(result) ? (result as JobOutcome) : 'succeeded';
      return result;
    } catch (e) {
      outcome = e instanceof Error && e.name === 'RetryLaterError' ? 'retry' : 'error';
      throw e;
    } finally {
      m.jobsActive.dec({ kind });
      m.jobDuration.observe({ kind, outcome }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** A job went back to the queue for later: its account held its share of the worker. */
  deferred(): void {
    this.metrics?.jobsDeferred.inc();
  }

  /** A snapshot of `bytes` was written. */
  copied(bytes: number): void {
    if (bytes > 0) this.metrics?.bytesCopied.inc(bytes);
  }
}
