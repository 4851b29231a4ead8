import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PeriodicPass } from '../common/periodic-pass';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';

/** Events removed per statement: bounds each transaction's locks, time and WAL. */
const BATCH = 5_000;

/**
 * The oldest events past the cut-off, in one batch. An event a delivery still owes (`pending`) stays
 * until the sender settles it, so retention never takes a message from under a retry; its deliveries
 * and rendered payload go with it (ON DELETE CASCADE). SKIP LOCKED: any number of API processes prune
 * at once without waiting for each other.
 */
const PRUNE_BATCH = `
  DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
    WHERE e.created_at < $1::timestamptz
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
    ORDER BY e.created_at
    LIMIT ${BATCH}
    FOR UPDATE SKIP LOCKED)`;

/**
 * Keeps the account events (the events list and the webhook outbox) to EVENT_RETENTION_DAYS: every
 * EVENT_PRUNE_INTERVAL_MS each API process removes the older ones, a batch at a time.
 */
@Injectable()
export class EventRetention implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EventRetention.name);
  private readonly passes = new PeriodicPass(() => this.pass(), this.logger, 'event retention pass');

  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly clock: Clock,
  ) {}

  onApplicationBootstrap(): void {
    this.passes.start(this.config.eventPruneIntervalMs);
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  /** No more passes; waits for the one running. Idempotent. */
  stop(): Promise<void> {
    return this.passes.stop();
  }

  /** One pass (passes in this process never overlap): how many events it removed. */
  prune(): Promise<number> {
    return this.passes.run();
  }

  private async pass(): Promise<number> {
    const cutoff = new Date(this.clock.now().getTime() - this.config.eventRetentionDays * 86_400_000);
    let removed = 0;
    for (;;) {
      const n = await this.prisma.$executeRawUnsafe(PRUNE_BATCH, cutoff);
      removed += n;
      if (n < BATCH) break;
    }
    if (removed > 0) this.logger.log({ removed, cutoff }, 'removed events past their retention');
    return removed;
  }
}
