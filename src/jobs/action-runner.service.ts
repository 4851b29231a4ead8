import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Clock } from '../common/clock';
import { AppConfig } from '../config/app-config';
import { ActionKind, Prisma, ServerStatus } from '../generated/prisma/client';
import {
  HYPERVISOR_DRIVER,
  HypervisorDriver,
  isHypervisorError,
  ServerRef,
  SnapshotRef,
} from '../hypervisor/hypervisor-driver';
import { JobMetrics } from '../metrics/job-metrics';
import { PrismaService } from '../prisma/prisma.service';
import { ProgressReporter } from './progress-reporter';

export interface AttemptInfo {
  /** 1-based number of this attempt. */
  attempt: number;
  maxAttempts: number;
  signal?: AbortSignal;
}

/** Thrown to ask the queue to try the job again later (transient failure, attempts left). */
export class RetryLaterError extends Error {
  constructor(
    message: string,
    readonly causeError: unknown,
  ) {
    super(message);
    this.name = 'RetryLaterError';
  }
}

interface LoadedAction {
  id: number;
  kind: ActionKind;
  status: string;
  startedAt: Date | null;
  serverStatusBefore: ServerStatus | null;
  server: {
    id: number;
    domain: string;
    diskPath: string;
    status: ServerStatus;
    node: { snapshotDir: string };
  };
  snapshot: { id: number; status: string } | null;
}

/** A row of the claim statement. */
interface ClaimRow {
  id: number;
  kind: ActionKind;
  started_at: Date | null;
  server_status_before: ServerStatus | null;
  server_id: number;
  domain: string;
  disk_path: string;
  server_status: ServerStatus;
  snapshot_dir: string;
  snap_id: number | null;
  snap_status: string | null;
}

const GENERIC_FAILURE = 'The operation failed on the hypervisor host; please try again or contact support.';

/**
 * Runs one action (create, restore or delete) against the hypervisor driver and records its outcome.
 * Every state change is a conditional update on the action's current status, so a duplicated or
 * retried job can never apply twice, and a finished action is never reopened.
 */
@Injectable()
export class ActionRunner {
  private readonly logger = new Logger(ActionRunner.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly clock: Clock,
    @Inject(HYPERVISOR_DRIVER) private readonly driver: HypervisorDriver,
    @Optional() private readonly metrics: JobMetrics = JobMetrics.none,
  ) {}

  /** Returns what happened, for logs and tests: 'succeeded' | 'failed' | 'skipped'. */
  async run(actionId: number, attempt: AttemptInfo): Promise<'succeeded' | 'failed' | 'skipped'> {
    const action = await this.claim(actionId);
    if (!action) return 'skipped';
    const server: ServerRef = {
      id: action.server.id,
      domain: action.server.domain,
      diskPath: action.server.diskPath,
    };
    const snap: SnapshotRef | null = action.snapshot
      ? { id: action.snapshot.id, snapshotDir: action.server.node.snapshotDir }
      : null;
    if (!snap) return this.fail(action, 'internal_error', GENERIC_FAILURE);
    const progress = new ProgressReporter(this.config.progressWriteIntervalMs, (pct) =>
      this.writeProgress(action, pct),
    );
    // Proof of life for the reaper while the copy runs, whatever the progress does.
    const heartbeat = setInterval(() => void this.beat(action.id), this.config.heartbeatIntervalMs);
    heartbeat.unref();
    // A hung hypervisor call must not hold the server forever: abort it after OPERATION_TIMEOUT_MS.
    const deadline = AbortSignal.timeout(this.config.operationTimeoutMs);
    const signal = attempt.signal ? AbortSignal.any([attempt.signal, deadline]) : deadline;
    try {
      switch (action.kind) {
        case 'create_snapshot': {
          const result = await this.driver.createSnapshot(server, snap, progress.report, { signal });
          await progress.flush();
          this.metrics.copied(result.sizeBytes);
          return this.succeedCreate(action, result.sizeBytes, result.consistency);
        }
        case 'restore_snapshot': {
          await this.restore(action, server, snap, progress.report, signal);
          await progress.flush();
          return this.succeedRestore(action);
        }
        case 'delete_snapshot': {
          await this.driver.deleteSnapshot(server, snap);
          return this.finish(action, 'succeeded');
        }
      }
    } catch (e) {
      await progress.flush();
      const retryable = isHypervisorError(e) ? e.retryable : true;
      if (retryable && attempt.attempt < attempt.maxAttempts) {
        this.logger.warn({ actionId, attempt: attempt.attempt, err: e }, 'transient failure; will retry');
        throw new RetryLaterError(e instanceof Error ? e.message : String(e), e);
      }
      this.logger.error(
        { actionId, err: e, detail: isHypervisorError(e) ? e.detail : undefined },
        'action failed',
      );
      const code = isHypervisorError(e) ? e.code : 'internal_error';
      const text = isHypervisorError(e) ? e.message : GENERIC_FAILURE;
      if (action.kind === 'create_snapshot') {
        await this.driver.deleteSnapshot(server, snap).catch(() => undefined);
      }
      if (action.kind === 'restore_snapshot') await this.recoverServerAfterFailedRestore(action, server);
      return this.fail(action, code, text);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * Fails a running action whose job is gone (reaper): removes any partial copy, brings a restored
   * server back to how it was, and records a readable error. Does nothing to a finished action.
   */
  async abandon(actionId: number, message: string): Promise<'failed' | 'skipped'> {
    const action = await this.loadAction(actionId);
    if (!action || action.status !== 'running') return 'skipped';
    const server: ServerRef = {
      id: action.server.id,
      domain: action.server.domain,
      diskPath: action.server.diskPath,
    };
    if (action.snapshot && action.kind === 'create_snapshot') {
      await this.driver
        .deleteSnapshot(server, { id: action.snapshot.id, snapshotDir: action.server.node.snapshotDir })
        .catch(() => undefined);
    }
    if (action.kind === 'restore_snapshot') await this.recoverServerAfterFailedRestore(action, server);
    const outcome = await this.fail(action, 'interrupted', message);
    return outcome === 'failed' ? 'failed' : 'skipped';
  }

  private async beat(actionId: number): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE actions SET heartbeat_at = ${this.clock.now()}::timestamptz
      WHERE id = ${actionId}::int AND status = 'running'`.catch(() => undefined);
  }

  private async restore(
    action: LoadedAction,
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    if ((await this.driver.getPowerState(server)) === 'running') {
      const { forced } = await this.driver.stop(server, { graceSeconds: this.config.stopGraceSeconds });
      if (forced)
        this.logger.warn({ actionId: action.id }, 'server did not shut down in time; it was powered off');
    }
    await this.driver.restoreSnapshot(server, snap, onProgress, { signal });
    if (action.serverStatusBefore === 'running') await this.driver.start(server);
  }

  /** A failed restore leaves the original disk in place: bring the server back to how it was. */
  private async recoverServerAfterFailedRestore(action: LoadedAction, server: ServerRef): Promise<void> {
    try {
      if (
        action.serverStatusBefore === 'running' &&
        (await this.driver.getPowerState(server)) === 'stopped'
      ) {
        await this.driver.start(server);
      }
    } catch (e) {
      this.logger.error(
        { actionId: action.id, err: e },
        'could not restart the server after a failed restore',
      );
    }
  }

  private loadAction(actionId: number): Promise<LoadedAction | null> {
    return this.prisma.action.findUnique({
      where: { id: actionId },
      select: {
        id: true,
        kind: true,
        status: true,
        startedAt: true,
        serverStatusBefore: true,
        server: {
          select: {
            id: true,
            domain: true,
            diskPath: true,
            status: true,
            node: { select: { snapshotDir: true } },
          },
        },
        snapshot: { select: { id: true, status: true } },
      },
    });
  }

  /**
   * Takes the action (pending, or running again after a retry or a stalled job) and loads what the run
   * needs, in one statement: the conditional UPDATE is the claim, its RETURNING joined to server, node
   * and snapshot is the load. A finished or missing action yields no row.
   */
  private async claim(actionId: number): Promise<LoadedAction | null> {
    const now = this.clock.now();
    const rows = await this.prisma.$queryRaw<ClaimRow[]>`
      WITH c AS (
        UPDATE actions a
        SET status = 'running', started_at = COALESCE(a.started_at, ${now}::timestamptz),
            heartbeat_at = ${now}::timestamptz, attempts = a.attempts + 1
        WHERE a.id = ${actionId}::int AND a.status IN ('pending', 'running')
        RETURNING a.id, a.kind::text AS kind, a.started_at, a.server_status_before::text AS server_status_before,
                  a.server_id, a.snapshot_id
      )
      SELECT c.id, c.kind, c.started_at, c.server_status_before, v.id AS server_id, v.domain, v.disk_path,
             v.status::text AS server_status, n.snapshot_dir, sn.id AS snap_id, sn.status::text AS snap_status
      FROM c
      JOIN servers v ON v.id = c.server_id
      JOIN nodes n ON n.id = v.node_id
      LEFT JOIN snapshots sn ON sn.id = c.snapshot_id`;
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      kind: r.kind,
      status: 'running',
      startedAt: r.started_at,
      serverStatusBefore: r.server_status_before,
      server: {
        id: r.server_id,
        domain: r.domain,
        diskPath: r.disk_path,
        status: r.server_status,
        node: { snapshotDir: r.snapshot_dir },
      },
      snapshot: r.snap_id !== null ? { id: r.snap_id, status: r.snap_status! } : null,
    };
  }

  /** Progress of the action and (for a create) of its snapshot, in one statement, while it runs. */
  private async writeProgress(action: LoadedAction, pct: number): Promise<void> {
    const now = this.clock.now();
    const snapshotId = action.kind === 'create_snapshot' && action.snapshot ? action.snapshot.id : null;
    await this.prisma.$executeRaw`
      WITH a AS (
        UPDATE actions SET progress = ${pct}::smallint, heartbeat_at = ${now}::timestamptz
        WHERE id = ${action.id}::int AND status = 'running'
        RETURNING id
      )
      UPDATE snapshots SET progress = ${pct}::smallint
      WHERE id = ${snapshotId}::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)`;
  }

  /** Action succeeded and snapshot completed, atomically, in one statement; only from `running`. */
  private async succeedCreate(
    action: LoadedAction,
    sizeBytes: number,
    consistency: 'stopped' | 'quiesced' | 'crash_consistent',
  ): Promise<'succeeded' | 'skipped'> {
    const now = this.clock.now();
    const [r] = await this.prisma.$queryRaw<{ done: number }[]>`
      WITH a AS (
        UPDATE actions
        SET status = 'succeeded', progress = 100, finished_at = ${now}::timestamptz, heartbeat_at = ${now}::timestamptz
        WHERE id = ${action.id}::int AND status = 'running'
        RETURNING id
      ), s AS (
        UPDATE snapshots
        SET status = 'completed', progress = 100, size_bytes = ${BigInt(sizeBytes)}::bigint,
            consistency = ${consistency}::snapshot_consistency, completed_at = ${now}::timestamptz
        WHERE id = ${action.snapshot!.id}::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
        RETURNING id
      )
      SELECT (SELECT count(*) FROM a)::int AS done, (SELECT count(*) FROM s)::int AS snapshots`;
    return r?.done === 1 ? 'succeeded' : 'skipped';
  }

  private succeedRestore(action: LoadedAction) {
    return this.finish(action, 'succeeded');
  }

  /**
   * Ends the action (and, for a restore, returns the server to the status it had before; for a failed
   * create, fails its snapshot), atomically, in one statement; only from `running`.
   */
  private async finish(
    action: LoadedAction,
    outcome: 'succeeded' | 'failed',
    error?: { code: string; message: string },
  ): Promise<'succeeded' | 'failed' | 'skipped'> {
    const now = this.clock.now();
    const restoreServer =
      action.kind === 'restore_snapshot'
        ? Prisma.sql`, srv AS (
            UPDATE servers SET status = ${action.serverStatusBefore === 'stopped' ? 'stopped' : 'running'}::server_status
            WHERE id = ${action.server.id}::int AND status = 'restoring' AND EXISTS (SELECT 1 FROM a)
            RETURNING id)`
        : Prisma.empty;
    const failSnapshot =
      outcome === 'failed' && action.kind === 'create_snapshot' && action.snapshot
        ? Prisma.sql`, snap AS (
            UPDATE snapshots
            SET status = 'failed', error = ${error?.message.slice(0, 1000) ?? GENERIC_FAILURE}::varchar,
                completed_at = ${now}::timestamptz
            WHERE id = ${action.snapshot.id}::int AND status = 'in_progress' AND EXISTS (SELECT 1 FROM a)
            RETURNING id)`
        : Prisma.empty;
    const errorColumns = error
      ? Prisma.sql`, error_code = ${error.code}::varchar, error_message = ${error.message.slice(0, 1000)}::varchar`
      : Prisma.empty;
    const [r] = await this.prisma.$queryRaw<{ done: number }[]>`
      WITH a AS (
        UPDATE actions
        SET status = ${outcome}::action_status, finished_at = ${now}::timestamptz,
            heartbeat_at = ${now}::timestamptz${outcome === 'succeeded' ? Prisma.sql`, progress = 100` : Prisma.empty}${errorColumns}
        WHERE id = ${action.id}::int AND status = 'running'
        RETURNING id
      )${restoreServer}${failSnapshot}
      SELECT count(*)::int AS done FROM a`;
    return r?.done === 1 ? outcome : 'skipped';
  }

  private fail(action: LoadedAction, code: string, message: string) {
    return this.finish(action, 'failed', { code, message });
  }
}
