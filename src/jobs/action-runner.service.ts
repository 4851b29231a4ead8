import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Clock } from '../common/clock';
import { message } from '../common/messages';
import { AppConfig } from '../config/app-config';
import {
  HYPERVISOR_DRIVER,
  HypervisorDriver,
  HypervisorError,
  ServerRef,
  SnapshotRef,
} from '../hypervisor/hypervisor-driver';
import { BackupMetrics, BackupOperation } from '../metrics/backup-metrics';
import { JobMetrics } from '../metrics/job-metrics';
import { isUniqueViolation } from '../prisma/database-errors';
import { BACKUP_DATA_PATH, BackupDataPath, BackupRef, WriteBackupResult } from '../backups/backup-data-path';
import { ActionStore, Consistency, LoadedAction } from './action-store';
import { ActionErrorCode, GENERIC_FAILURE, NO_BACKUP_STORAGE, operationFailureOf } from './operation-failure';
import { Heartbeats } from './heartbeats';
import { ProgressReporter } from './progress-reporter';
import { isPowerKind, PowerActionKind, statusAfter } from '../servers/power/power-actions';
import { SafetyCopyTaker } from '../restore-undo/safety-copy-taker';

export interface AttemptInfo {
  /** 1-based number of this attempt. */
  attempt: number;
  maxAttempts: number;
  signal?: AbortSignal;
  /**
   * Called once the hypervisor work of the run is over, before its outcome is written: the caller's
   * hypervisor slot is free for the next job while this one records (see NodeWorkerService).
   */
  hypervisorDone?: () => void;
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

/**
 * The signal a run passes to the driver: aborted when the queue aborts the job (`outer`) or after
 * `timeoutMs`. One controller and one timer, both let go by `dispose` when the run ends (unlike
 * `AbortSignal.any([outer, AbortSignal.timeout(ms)])`, whose timer and links outlive the run).
 */
export function operationSignal(
  outer: AbortSignal | undefined,
  timeoutMs: number,
): { signal: AbortSignal; dispose: () => void } {
  const abort = new AbortController();
  const deadline = setTimeout(
    () => abort.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
    timeoutMs,
  );
  deadline.unref();
  const onOuterAbort = () => abort.abort(outer?.reason);
  if (outer?.aborted) onOuterAbort();
  else outer?.addEventListener('abort', onOuterAbort, { once: true });
  return {
    signal: abort.signal,
    dispose: () => {
      clearTimeout(deadline);
      outer?.removeEventListener('abort', onOuterAbort);
    },
  };
}

/** Kinds that restore a server's disk (the server shows `restoring` meanwhile). */
const RESTORE_KINDS = new Set(['restore_snapshot', 'restore_backup']);
/** Kinds that need no domain (their server's VM may be long gone, or only stored data is read). */
const DOMAINLESS_KINDS = new Set(['delete_snapshot', 'delete_backup', 'verify_backup']);
/** Backup kinds, by the operation their outcomes are counted under. */
const BACKUP_OPERATIONS: Readonly<Record<string, BackupOperation>> = {
  create_backup: 'create',
  restore_backup: 'restore',
  delete_backup: 'delete',
  verify_backup: 'verify',
};

/**
 * Runs one action (create, restore or delete) against the hypervisor driver and records its outcome.
 * Every state change is a conditional update on the action's current status, so a duplicated or
 * retried job can never apply twice, and a finished action is never reopened.
 */
@Injectable()
export class ActionRunner {
  private readonly logger = new Logger(ActionRunner.name);

  constructor(
    private readonly store: ActionStore,
    private readonly heartbeats: Heartbeats,
    private readonly config: AppConfig,
    private readonly clock: Clock,
    @Inject(HYPERVISOR_DRIVER) private readonly driver: HypervisorDriver,
    private readonly safetyCopies: SafetyCopyTaker,
    @Optional() private readonly metrics: JobMetrics = JobMetrics.none,
    // Provided by the backup data path's module; a worker without it fails backup actions cleanly.
    @Optional() @Inject(BACKUP_DATA_PATH) private readonly backups: BackupDataPath | null = null,
    @Optional() private readonly backupMetrics: BackupMetrics = BackupMetrics.none,
  ) {}

  /** Returns what happened, for logs and tests: 'succeeded' | 'failed' | 'skipped'. */
  async run(actionId: number, attempt: AttemptInfo): Promise<'succeeded' | 'failed' | 'skipped'> {
    const action = await this.claim(actionId);
    if (!action) return 'skipped';
    let server = serverRefOf(action);
    const snap: SnapshotRef | null = action.snapshot
      ? { id: action.snapshot.id, snapshotDir: action.server.node.snapshotDir }
      : null;
    if (!snap && !action.backup && !isPowerKind(action.kind))
      return this.fail(action, 'internal_error', GENERIC_FAILURE);
    if (action.backup && !this.backups)
      return this.fail(action, 'backup_storage_unavailable', NO_BACKUP_STORAGE);
    // A create records its store first; a restore or delete reads the one recorded.
    let backup = backupRefOf(action);
    const progress = new ProgressReporter(this.config.progressWriteIntervalMs, (pct) =>
      this.writeProgress(action, pct),
    );
    // Proof of life for the reaper while the copy runs, whatever the progress does.
    const stopBeating = this.heartbeats.track(action.id);
    // A hung hypervisor call must not hold the server forever: abort it after OPERATION_TIMEOUT_MS.
    const { signal, dispose } = operationSignal(attempt.signal, this.config.operationTimeoutMs);
    let done: { sizeBytes: number; consistency: Consistency } | null = null;
    let written: WriteBackupResult | null = null;
    let verdict: { ok: true } | { ok: false; problem: string } | null = null;
    try {
      if (!DOMAINLESS_KINDS.has(action.kind)) server = await this.pinDomainUuid(action, server);
      switch (action.kind) {
        case 'create_snapshot': {
          const result = await this.driver.createSnapshot(server, snap!, progress.report, { signal });
          await progress.flush();
          this.metrics.copied(result.sizeBytes);
          done = { sizeBytes: result.sizeBytes, consistency: result.consistency };
          break;
        }
        case 'restore_snapshot':
          await this.restore(action, server, signal, () =>
            this.driver.restoreSnapshot(server, snap!, progress.report, { signal }),
          );
          await progress.flush();
          break;
        case 'delete_snapshot':
          await this.driver.deleteSnapshot(server, snap!);
          break;
        case 'create_backup': {
          const b = action.backup!;
          const of = await this.store.backupOfCreate(b.id, action.server.node.backupStore);
          if (!of) throw new Error(`backup ${b.id}: its row is gone`);
          backup = { id: b.id, accountId: b.accountId, storeName: of.storeName };
          const base = await this.store.backupBase(server.id, b.id);
          written = await this.backups!.writeBackup(
            {
              backup,
              facts: of.facts,
              server,
              base: base ? { backup: base.backup, checkpoint: base.checkpoint } : null,
              checkpoint: `vps-backup-${b.id}`,
            },
            progress.report,
            { signal },
          );
          await progress.flush();
          break;
        }
        case 'restore_backup': {
          // Only a completed backup is restored, and it has its store.
          const stored = backup ?? storeMissing(action);
          await this.restore(action, server, signal, () =>
            this.backups!.restoreBackup(stored, server, progress.report, { signal }),
          );
          await progress.flush();
          break;
        }
        case 'delete_backup':
          // No store recorded: its create never started, so nothing of it was stored.
          if (backup) await this.backups!.deleteBackup(backup);
          break;
        case 'verify_backup':
          // Only completed backups are verified, and they have their store.
          verdict = await this.backups!.verifyBackup(backup ?? storeMissing(action), { signal });
          break;
        case 'start_server':
        case 'stop_server':
        case 'shutdown_server':
        case 'reboot_server':
          await this.power(action.kind, server, signal);
          break;
      }
    } catch (e) {
      await progress.flush();
      const failure = operationFailureOf(e);
      if (failure.retryable && attempt.attempt < attempt.maxAttempts) {
        this.logger.warn({ actionId, attempt: attempt.attempt, err: e }, 'transient failure; will retry');
        throw new RetryLaterError(e instanceof Error ? e.message : String(e), e);
      }
      this.logger.error({ actionId, err: e, detail: failure.detail }, 'action failed');
      if (action.kind === 'create_snapshot') {
        await this.driver.deleteSnapshot(server, snap!).catch(() => undefined);
      }
      if (action.kind === 'create_backup' && backup) await this.releaseFailedBackup(action, backup);
      if (RESTORE_KINDS.has(action.kind)) await this.recoverServerAfterFailedRestore(action, server);
      attempt.hypervisorDone?.();
      return this.fail(action, failure.code, failure.message);
    } finally {
      stopBeating();
      dispose();
    }
    // The hypervisor work succeeded. Its outcome is written outside the try above: should the write
    // fail (database gone), the job is retried and the next attempt finds the action either finished
    // (the write did commit: skipped, the snapshot kept) or still running (done again) — a failed write
    // is never taken for a failed copy whose storage must go.
    attempt.hypervisorDone?.();
    switch (action.kind) {
      case 'create_snapshot':
        return this.succeedCreate(action, done!.sizeBytes, done!.consistency);
      case 'create_backup':
        return this.succeedBackupCreate(action, written!);
      case 'restore_snapshot':
      case 'restore_backup':
        return this.succeedRestore(action);
      case 'delete_snapshot':
      case 'delete_backup':
        return this.finish(action, 'succeeded');
      case 'verify_backup':
        return this.recordVerification(action, verdict!);
      case 'start_server':
      case 'stop_server':
      case 'shutdown_server':
      case 'reboot_server':
        return this.finish(action, 'succeeded');
    }
  }

  /**
   * Fails a running action whose job is gone (reaper): removes any partial copy, brings a restored
   * server back to how it was, and records a readable error. Does nothing to a finished action.
   */
  async abandon(actionId: number, message: string): Promise<'failed' | 'skipped'> {
    const action = await this.store.load(actionId);
    if (!action || action.status !== 'running') return 'skipped';
    const server = serverRefOf(action);
    if (action.snapshot && action.kind === 'create_snapshot') {
      await this.driver
        .deleteSnapshot(server, { id: action.snapshot.id, snapshotDir: action.server.node.snapshotDir })
        .catch(() => undefined);
    }
    // A write that died with its process keeps its chunk references until released.
    const backup = backupRefOf(action);
    if (action.kind === 'create_backup' && backup) await this.releaseFailedBackup(action, backup);
    if (RESTORE_KINDS.has(action.kind)) await this.recoverServerAfterFailedRestore(action, server);
    const outcome = await this.fail(action, 'interrupted', message);
    return outcome === 'failed' ? 'failed' : 'skipped';
  }

  /**
   * Stops a running server, takes the safety copy of its disk (undo restores it; no copy, no restore),
   * rewrites the disk (`rewrite`), and starts it again if it was running.
   */
  private async restore(
    action: LoadedAction,
    server: ServerRef,
    signal: AbortSignal,
    rewrite: () => Promise<void>,
  ): Promise<void> {
    if ((await this.driver.getPowerState(server)) === 'running') {
      const { forced } = await this.driver.stop(server, { graceSeconds: this.config.stopGraceSeconds });
      if (forced)
        this.logger.warn({ actionId: action.id }, 'server did not shut down in time; it was powered off');
    }
    await this.safetyCopies.take(action, server, signal);
    await rewrite();
    if (action.serverStatusBefore === 'running') await this.driver.start(server);
  }

  /** A power action on the hypervisor (src/servers/power/power-actions.ts says what each does). */
  private async power(kind: PowerActionKind, server: ServerRef, signal: AbortSignal): Promise<void> {
    const graceSeconds = this.config.stopGraceSeconds;
    switch (kind) {
      case 'start_server':
        return this.driver.start(server);
      case 'stop_server':
        return this.driver.powerOff(server);
      case 'shutdown_server':
        return this.driver.shutdown(server, { graceSeconds, signal });
      case 'reboot_server':
        if ((await this.driver.getPowerState(server)) === 'running') {
          await this.driver.shutdown(server, { graceSeconds, signal });
        }
        return this.driver.start(server);
    }
  }

  /**
   * The ref with the server's domain UUID. A server registered without one (the API cannot reach its
   * node's libvirt) gets the UUID of the domain that has its name on this node, stored on its row
   * before its first operation; from then on the driver checks on every call that the domain with
   * that UUID still has the name. A UUID another server of the node holds already is refused.
   */
  private async pinDomainUuid(action: LoadedAction, server: ServerRef): Promise<ServerRef> {
    if (server.domainUuid !== null) return server;
    const found = await this.driver.findDomainUuid(server.domain);
    let held: string | null;
    try {
      held = await this.store.pinDomainUuid(server.id, found);
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
      throw new HypervisorError(
        'domain_not_found',
        `domain ${server.domain} (${found}) is registered to another server of the node`,
        { messageKey: 'hypervisor_domain_unidentified' },
      );
    }
    this.logger.log({ actionId: action.id, serverId: server.id, domainUuid: held }, 'pinned domain UUID');
    return { ...server, domainUuid: held };
  }

  /**
   * Releases what a failed backup create referenced (its manifest, if any, and its chunk references)
   * and collects what no one else holds. The data path does it itself for an error it sees; this covers
   * the rest (a worker that died mid-write, a failure around the write). Best effort: a backup left
   * failed is released again when it is deleted.
   */
  private async releaseFailedBackup(action: LoadedAction, backup: BackupRef): Promise<void> {
    if (!this.backups) return;
    try {
      await this.backups.deleteBackup(backup);
    } catch (e) {
      this.logger.warn({ actionId: action.id, err: e }, 'could not release a failed backup');
    }
  }

  /** A failed restore leaves the original disk in place: bring the server back to how it was. */
  private async recoverServerAfterFailedRestore(action: LoadedAction, server: ServerRef): Promise<void> {
    // Without a UUID nothing was done to the domain (the restore failed before its first call).
    if (server.domainUuid === null) return;
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

  /** Takes the action (pending, or running again after a retry or a stalled job) and loads it. */
  private claim(actionId: number): Promise<LoadedAction | null> {
    return this.store.claim(actionId, this.clock.now());
  }

  /** Progress of the action and (for a create) of its snapshot or backup, in one statement, while it runs. */
  private async writeProgress(action: LoadedAction, pct: number): Promise<void> {
    const snapshotId = action.kind === 'create_snapshot' && action.snapshot ? action.snapshot.id : null;
    const backupId = action.kind === 'create_backup' && action.backup ? action.backup.id : null;
    await this.store.progress(action.id, { snapshotId, backupId }, pct, this.clock.now());
  }

  /** Action succeeded and backup completed with what the write reported, atomically; only from `running`. */
  private async succeedBackupCreate(
    action: LoadedAction,
    w: WriteBackupResult,
  ): Promise<'succeeded' | 'skipped'> {
    const done = await this.store.succeedBackupCreate({
      actionId: action.id,
      backupId: action.backup!.id,
      sizeBytes: w.sizeBytes,
      storedBytes: w.storedBytes,
      mode: w.mode,
      modeReason: w.modeReason,
      consistency: w.consistency,
      checkpoint: w.checkpoint,
      at: this.clock.now(),
    });
    if (done) this.backupMetrics.finished('create', 'succeeded');
    return done ? 'succeeded' : 'skipped';
  }

  /**
   * The verification ran to its end: the backup is verified, or `corrupt` with the catalogue's sentence
   * (the data path's detail names keys and ids: logs only).
   */
  private async recordVerification(
    action: LoadedAction,
    verdict: { ok: true } | { ok: false; problem: string },
  ): Promise<'succeeded' | 'skipped'> {
    if (!verdict.ok) {
      this.logger.error(
        { actionId: action.id, backupId: action.backup!.id, detail: verdict.problem },
        'backup corrupt',
      );
    }
    const error = verdict.ok ? null : message('backup_data_backup_corrupt', 'en');
    const done = await this.store.recordVerification(action.id, action.backup!.id, error, this.clock.now());
    if (done) this.backupMetrics.finished('verify', verdict.ok ? 'succeeded' : 'backup_corrupt');
    return done ? 'succeeded' : 'skipped';
  }

  /** Action succeeded and snapshot completed, atomically; only from `running`. */
  private async succeedCreate(
    action: LoadedAction,
    sizeBytes: number,
    consistency: Consistency,
  ): Promise<'succeeded' | 'skipped'> {
    const done = await this.store.succeedCreate({
      actionId: action.id,
      snapshotId: action.snapshot!.id,
      sizeBytes,
      consistency,
      at: this.clock.now(),
    });
    return done ? 'succeeded' : 'skipped';
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
    error?: { code: ActionErrorCode; message: string },
  ): Promise<'succeeded' | 'failed' | 'skipped'> {
    const done = await this.store.finish({
      actionId: action.id,
      kind: action.kind,
      outcome,
      at: this.clock.now(),
      error,
      restoreServer: RESTORE_KINDS.has(action.kind)
        ? { id: action.server.id, status: action.serverStatusBefore === 'running' ? 'running' : 'stopped' }
        : undefined,
      // What the domain became, at once (the reconciler, nudged after every operation, confirms it).
      powerServer:
        outcome === 'succeeded' && isPowerKind(action.kind)
          ? { id: action.server.id, status: statusAfter(action.kind) }
          : undefined,
      failSnapshot:
        outcome === 'failed' && action.kind === 'create_snapshot' && action.snapshot
          ? { id: action.snapshot.id, error: error?.message ?? GENERIC_FAILURE }
          : undefined,
      failBackup:
        outcome === 'failed' && action.kind === 'create_backup' && action.backup
          ? {
              id: action.backup.id,
              code: error?.code ?? 'internal_error',
              error: error?.message ?? GENERIC_FAILURE,
            }
          : undefined,
    });
    const operation = BACKUP_OPERATIONS[action.kind];
    if (done && operation) this.backupMetrics.finished(operation, error?.code ?? outcome);
    return done ? outcome : 'skipped';
  }

  private fail(action: LoadedAction, code: ActionErrorCode, message: string) {
    return this.finish(action, 'failed', { code, message });
  }
}

/** The data path's view of the action's backup, once it has a store. */
function backupRefOf(action: LoadedAction): BackupRef | null {
  const b = action.backup;
  return b?.storeName ? { id: b.id, accountId: b.accountId, storeName: b.storeName } : null;
}

function storeMissing(action: LoadedAction): never {
  throw new Error(`backup ${action.backup?.id} has no store recorded`);
}

/** The driver's view of the action's server (its domain UUID as stored: null until pinned). */
function serverRefOf(action: LoadedAction): ServerRef {
  return {
    id: action.server.id,
    domain: action.server.domain,
    domainUuid: action.server.domainUuid,
    diskPath: action.server.diskPath,
  };
}
