import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PeriodicPass } from '../common/periodic-pass';
import { AppConfig } from '../config/app-config';
import { JobQueue } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { retainedIds } from './retention';
import { decideSlot, scheduleOf } from './schedule';

/** A completed backup is verified again once its last verification is this old (so at least weekly). */
export const REVERIFY_AFTER_MS = 6 * 86_400_000;
/** Verifications one tick starts at most; the rest wait for the next tick. */
const VERIFY_BATCH = 100;

interface PolicyRow {
  server_id: number;
  frequency: 'daily' | 'weekly';
  weekday: number | null;
  hour: number;
  retention_daily: number;
  retention_weekly: number;
  retention_monthly: number;
  schedule_since: Date;
  last_slot_at: Date | null;
}

/** What one slot's statement did (see prisma/sql/functions/backup_run_slot.sql). */
export interface SlotRun {
  serverId: number;
  slotAt: Date;
  late: boolean;
  missed: number;
  outcome: 'started' | 'skipped_previous_running' | 'skipped_server_busy';
  backupId: number | null;
}

const ENABLED_POLICIES = `
  SELECT bp.server_id, bp.frequency::text AS frequency, bp.weekday, bp.hour, bp.retention_daily,
         bp.retention_weekly, bp.retention_monthly, bp.schedule_since,
         (SELECT max(r.slot_at) FROM backup_runs r WHERE r.server_id = bp.server_id) AS last_slot_at
  FROM backup_policies bp WHERE bp.enabled ORDER BY bp.server_id`;

const pad = (n: number) => String(n).padStart(2, '0');

/** An automatic backup's name: `auto-` and its slot (UTC), within Part 1's name rules. */
export function automaticBackupName(slot: Date): string {
  return (
    `auto-${slot.getUTCFullYear()}${pad(slot.getUTCMonth() + 1)}${pad(slot.getUTCDate())}-` +
    `${pad(slot.getUTCHours())}${pad(slot.getUTCMinutes())}`
  );
}

/**
 * Automatic backups: every API process ticks (BACKUP_SCHEDULER_INTERVAL_MS) and each tick
 * 1. takes every due slot of enabled policies (schedule.ts decides which; the SQL function
 *    backup_run_slot takes it exactly once under a unique (server, slot) key and creates the backup
 *    through the manual create's rules), then enqueues the create;
 * 2. applies retention (retention.ts) to each enabled policy's completed automatic backups, deleting
 *    the rest through backup_prune_checked (the customer's delete path, audited, event backup.pruned);
 * 3. starts verifications: backups never verified, and those last verified REVERIFY_AFTER_MS ago.
 * Nothing is held in memory between ticks, so any number of replicas, restarts and clock jumps agree.
 */
@Injectable()
export class BackupScheduler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(BackupScheduler.name);
  /** The timer's ticks; a failed one is logged and the next tries again (nothing is lost: slots are owed). */
  private readonly ticks = new PeriodicPass(() => this.tick(), this.logger, 'backup scheduler tick');

  constructor(
    private readonly prisma: PrismaService,
    private readonly queue: JobQueue,
    private readonly clock: Clock,
    private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.ticks.start(this.config.backupSchedulerIntervalMs);
  }

  onApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  /** No more ticks; waits for the one running. Idempotent. */
  stop(): Promise<void> {
    return this.ticks.stop();
  }

  async tick(): Promise<{ runs: SlotRun[]; pruned: number[]; verifying: number[] }> {
    const runs = await this.runDueSlots();
    const pruned = await this.applyRetention();
    const verifying = await this.startVerifications();
    return { runs, pruned, verifying };
  }

  /** Takes every due slot of every enabled policy; returns the runs this call took. */
  async runDueSlots(): Promise<SlotRun[]> {
    const now = this.clock.now();
    const runs: SlotRun[] = [];
    for (const p of await this.prisma.$queryRawUnsafe<PolicyRow[]>(ENABLED_POLICIES)) {
      const d = decideSlot(
        scheduleOf(p, this.config.backupWindowMinutes),
        p.server_id,
        now,
        p.last_slot_at,
        p.schedule_since,
      );
      if (!d.due) continue;
      const [r] = await this.prisma.$queryRaw<
        { outcome: SlotRun['outcome']; node_id: number; action_id: number | null; backup_id: number | null }[]
      >`SELECT outcome, node_id, action_id, backup_id FROM backup_run_slot(${p.server_id}::int,
          ${d.due}::timestamptz, ${now}::timestamptz, ${d.late}, ${d.missed}::int,
          ${automaticBackupName(d.due)}::varchar, ${`Automatic ${p.frequency} backup`}::varchar)`;
      if (!r) continue; // another scheduler took the slot
      if (r.action_id !== null) await this.queue.enqueueAccepted(r.node_id, r.action_id, 'create_backup');
      runs.push({
        serverId: p.server_id,
        slotAt: d.due,
        late: d.late,
        missed: d.missed,
        outcome: r.outcome,
        backupId: r.backup_id,
      });
      if (d.late || d.missed > 0) {
        this.logger.warn(
          { serverId: p.server_id, slotAt: d.due, missed: d.missed },
          'backup slot taken late',
        );
      }
    }
    return runs;
  }

  /**
   * Deletes the completed automatic backups retention does not keep; returns their ids. A protected backup
   * still answers its period's rule (it is there), but is never deleted nor counted as pruned; were it
   * tried, backup_prune_checked would refuse it too.
   */
  async applyRetention(): Promise<number[]> {
    const now = this.clock.now();
    const pruned: number[] = [];
    for (const p of await this.prisma.$queryRawUnsafe<PolicyRow[]>(ENABLED_POLICIES)) {
      const backups = await this.prisma.backup.findMany({
        where: { serverId: p.server_id, kind: 'automatic', status: 'completed', deletedAt: null },
        select: { id: true, createdAt: true, deleteProtected: true },
      });
      const keep = retainedIds(
        backups.map((b) => ({ id: b.id, at: b.createdAt })),
        { daily: p.retention_daily, weekly: p.retention_weekly, monthly: p.retention_monthly },
      );
      for (const b of backups) {
        if (keep.has(b.id) || b.deleteProtected) continue;
        const [r] = await this.prisma.$queryRaw<{ node_id: number; action_id: number }[]>`
          SELECT node_id, action_id FROM backup_prune_checked(${b.id}::int, ${p.server_id}::int,
            ${now}::timestamptz)`;
        if (!r) continue; // being restored from, or deleted meanwhile
        await this.queue.enqueueAccepted(r.node_id, r.action_id, 'delete_backup');
        pruned.push(b.id);
      }
    }
    return pruned;
  }

  /**
   * Starts a verification of each completed backup never verified or last verified REVERIFY_AFTER_MS
   * ago, oldest first, at most VERIFY_BATCH a tick; one open verification per backup (a unique index).
   */
  async startVerifications(): Promise<number[]> {
    const now = this.clock.now();
    const started = await this.prisma.$queryRaw<{ id: number; backup_id: number; node_id: number }[]>`
      WITH due AS (
        SELECT b.id, b.account_id, b.server_id FROM backups b
        WHERE b.status = 'completed' AND b.deleted_at IS NULL
          AND (b.verified_at IS NULL OR b.verified_at <= ${new Date(now.getTime() - REVERIFY_AFTER_MS)}::timestamptz)
          AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.backup_id = b.id AND a.kind = 'verify_backup'
                          AND a.status IN ('pending', 'running'))
        ORDER BY b.verified_at NULLS FIRST, b.id
        LIMIT ${VERIFY_BATCH}
      ), ins AS (
        INSERT INTO actions (kind, account_id, server_id, backup_id, server_status_before)
        SELECT 'verify_backup', d.account_id, d.server_id, d.id, s.status
        FROM due d JOIN servers s ON s.id = d.server_id
        ON CONFLICT DO NOTHING
        RETURNING id, backup_id, server_id
      )
      SELECT ins.id, ins.backup_id, s.node_id FROM ins JOIN servers s ON s.id = ins.server_id`;
    for (const a of started) await this.queue.enqueueAccepted(a.node_id, a.id, 'verify_backup');
    return started.map((a) => a.backup_id);
  }
}
