import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { Gauge } from 'prom-client';
import { AppConfig } from '../config/app-config';
import { JobQueue } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { MetricsService } from './metrics.service';

export const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;
/** Every job has a priority (fair order per account), so BullMQ keeps the waiting ones as `prioritized`. */
const WAITING_STATES = ['waiting', 'prioritized'];
export const SNAPSHOT_STATUSES = ['in_progress', 'completed', 'failed'] as const;
const SOURCE_TIMEOUT_MS = 2000;

interface Sample {
  queues: { node: string; counts: Record<string, number> }[] | null;
  snapshots: Record<string, number> | null;
}

/**
 * Gauges read at scrape time on the API: queue depth per node (BullMQ job counts in Redis) and live
 * snapshots by status (one grouped COUNT in Postgres). Both are cached for `METRICS_CACHE_MS` and
 * shared by concurrent scrapes, so a scrape every few seconds from several Prometheus servers costs
 * one query per interval. A source that does not answer leaves its series out and sets
 * `vps_metrics_source_up{source}` to 0.
 */
@Injectable()
export class ApiMetricsCollectors implements OnModuleInit {
  private readonly logger = new Logger(ApiMetricsCollectors.name);
  private cached?: { at: number; sample: Promise<Sample> };

  constructor(
    private readonly metrics: MetricsService,
    private readonly prisma: PrismaService,
    private readonly queue: JobQueue,
    private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    const registers = [this.metrics.registry];
    const sample = () => this.sample();
    new Gauge({
      name: 'vps_queue_jobs',
      help: 'Jobs in each hypervisor node queue by state (waiting, active, delayed, failed)',
      labelNames: ['node', 'state'] as const,
      registers,
      async collect() {
        this.reset();
        for (const q of (await sample()).queues ?? []) {
          for (const state of QUEUE_STATES) this.set({ node: q.node, state }, q.counts[state] ?? 0);
        }
      },
    });
    new Gauge({
      name: 'vps_snapshots',
      help: 'Live (not deleted) snapshots by status',
      labelNames: ['status'] as const,
      registers,
      async collect() {
        this.reset();
        const counts = (await sample()).snapshots;
        if (counts) for (const status of SNAPSHOT_STATUSES) this.set({ status }, counts[status] ?? 0);
      },
    });
    new Gauge({
      name: 'vps_metrics_source_up',
      help: 'Whether the last scrape-time read of a source (postgres, redis) succeeded',
      labelNames: ['source'] as const,
      registers,
      async collect() {
        const s = await sample();
        this.set({ source: 'postgres' }, s.snapshots ? 1 : 0);
        this.set({ source: 'redis' }, s.queues ? 1 : 0);
      },
    });
  }

  /** One sample per cache period; concurrent callers share the same promise. */
  sample(): Promise<Sample> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at >= this.config.metricsCacheMs) {
      this.cached = { at: now, sample: this.read() };
    }
    return this.cached.sample;
  }

  private async read(): Promise<Sample> {
    const [snapshots, queues] = await Promise.all([
      this.snapshotCounts().catch((err: unknown) => this.unavailable('postgres', err)),
      this.queueCounts().catch((err: unknown) => this.unavailable('redis', err)),
    ]);
    return { snapshots, queues };
  }

  private unavailable(source: string, err: unknown): null {
    this.logger.warn({ err: String(err) }, `metrics: ${source} did not answer`);
    return null;
  }

  private async snapshotCounts(): Promise<Record<string, number>> {
    const rows = await withTimeout(
      this.prisma.snapshot.groupBy({ by: ['status'], where: { deletedAt: null }, _count: { _all: true } }),
    );
    return Object.fromEntries(rows.map((r) => [r.status, r._count._all]));
  }

  private async queueCounts(): Promise<NonNullable<Sample['queues']>> {
    const nodes = await withTimeout(this.prisma.node.findMany({ select: { id: true, name: true } }));
    return withTimeout(
      Promise.all(
        nodes.map(async (n) => ({
          node: n.name,
          counts: waitingFolded(await this.queue.queueFor(n.id).getJobCounts(...QUEUE_STATES, 'prioritized')),
        })),
      ),
    );
  }
}

/** The counts by state, `waiting` being every job not yet taken (plain or prioritized). */
function waitingFolded(counts: Record<string, number>): Record<string, number> {
  return { ...counts, waiting: WAITING_STATES.reduce((n, state) => n + (counts[state] ?? 0), 0) };
}

function withTimeout<T>(p: Promise<T>, ms = SOURCE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
