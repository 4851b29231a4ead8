import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PeriodicPass } from '../common/periodic-pass';
import { AppConfig } from '../config/app-config';
import { JobQueue } from '../jobs/job-queue';
import { WORKER_NODE, WorkerNode } from '../jobs/worker-node';
import { PrismaService } from '../prisma/prisma.service';
import { SafetyCopyType } from './safety-copy';

/** Expired safety copies looked at per pass; the next pass takes the rest. */
const BATCH = 100;

/**
 * Removes the node's restore safety copies once they expire: every SAFETY_COPY_SWEEP_INTERVAL_MS it
 * finds live `pre_restore` snapshots and backups of the node's servers whose `expires_at` has passed
 * (by the injected clock) and deletes each through the SQL function `safety_copy_expire` (the
 * customer's delete rules, audited), then enqueues the delete job that removes its data. A copy an
 * undo is restoring from is left for a later pass.
 */
@Injectable()
export class SafetyCopySweeper implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(SafetyCopySweeper.name);
  private readonly passes = new PeriodicPass(() => this.pass(), this.logger, 'safety copy sweep');

  constructor(
    private readonly prisma: PrismaService,
    private readonly queue: JobQueue,
    private readonly config: AppConfig,
    private readonly clock: Clock,
    @Inject(WORKER_NODE) private readonly node: WorkerNode,
  ) {}

  onApplicationBootstrap(): void {
    this.passes.start(this.config.safetyCopySweepIntervalMs);
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  /** No more passes; waits for the one running. Idempotent. */
  stop(): Promise<void> {
    return this.passes.stop();
  }

  /** One pass (passes never overlap): how many copies it removed. */
  sweep(): Promise<number> {
    return this.passes.run();
  }

  // A copy its customer protected outlives its expiry until unprotected: the delete would refuse it,
  // and left in the batch it would crowd out the copies that can go.
  private async pass(): Promise<number> {
    const at = this.clock.now();
    const expired = await this.prisma.$queryRaw<{ type: SafetyCopyType; id: number }[]>`
      (SELECT 'snapshot' AS type, sn.id FROM snapshots sn JOIN servers v ON v.id = sn.server_id
       WHERE sn.kind = 'pre_restore' AND sn.deleted_at IS NULL AND sn.expires_at <= ${at}
         AND NOT sn.delete_protected
         AND v.node_id = ${this.node.id}::int
       ORDER BY sn.expires_at LIMIT ${BATCH})
      UNION ALL
      (SELECT 'backup' AS type, b.id FROM backups b JOIN servers v ON v.id = b.server_id
       WHERE b.kind = 'pre_restore' AND b.deleted_at IS NULL AND b.expires_at <= ${at}
         AND NOT b.delete_protected
         AND v.node_id = ${this.node.id}::int
       ORDER BY b.expires_at LIMIT ${BATCH})`;
    let removed = 0;
    for (const c of expired) {
      const [r] = await this.prisma.$queryRaw<{ node_id: number; action_id: number }[]>`
        SELECT * FROM safety_copy_expire(${c.type}::text, ${c.id}::int, ${at})`;
      if (!r) continue;
      removed++;
      await this.queue.enqueueAccepted(
        r.node_id,
        r.action_id,
        c.type === 'snapshot' ? 'delete_snapshot' : 'delete_backup',
      );
    }
    if (removed) this.logger.log({ node: this.node.name, removed }, 'removed expired safety copies');
    return removed;
  }
}
