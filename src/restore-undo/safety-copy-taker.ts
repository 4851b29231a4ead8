import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Clock } from '../common/clock';
import { message } from '../common/messages';
import { AppConfig } from '../config/app-config';
import { BACKUP_DATA_PATH, BackupDataPath } from '../backups/backup-data-path';
import { HYPERVISOR_DRIVER, HypervisorDriver, ServerRef } from '../hypervisor/hypervisor-driver';
import { ActionStore, LoadedAction } from '../jobs/action-store';
import { SafetyCopyStore } from './safety-copy-store';

/**
 * The safety copy could not be taken, so the restore did not touch the disk. `retryable` follows the
 * cause: the job's next attempt takes the copy again.
 */
export class SafetyCopyError extends Error {
  readonly code = 'safety_copy_failed' as const;
  constructor(
    readonly retryable: boolean,
    readonly detail: string,
  ) {
    super(message('safety_copy_failed', 'en'));
    this.name = 'SafetyCopyError';
  }
}

export function isSafetyCopyError(e: unknown): e is SafetyCopyError {
  return e instanceof SafetyCopyError;
}

const noProgress = () => undefined;

/**
 * Takes a restore's safety copy of the server's disk (stopped by then), before the restore rewrites it:
 * a `pre_restore` backup when the node's backup store is configured in this worker (incremental from
 * the server's latest backup), else a `pre_restore` snapshot. A copy an earlier attempt completed is
 * kept; one that fails is released and the restore stops with SafetyCopyError.
 */
@Injectable()
export class SafetyCopyTaker {
  private readonly logger = new Logger(SafetyCopyTaker.name);

  constructor(
    private readonly copies: SafetyCopyStore,
    private readonly store: ActionStore,
    private readonly config: AppConfig,
    private readonly clock: Clock,
    @Inject(HYPERVISOR_DRIVER) private readonly driver: HypervisorDriver,
    @Optional() @Inject(BACKUP_DATA_PATH) private readonly backups: BackupDataPath | null = null,
  ) {}

  async take(action: LoadedAction, server: ServerRef, signal: AbortSignal): Promise<void> {
    const nodeStore = action.server.node.backupStore;
    const asBackup = this.backups !== null && this.config.backupStores.has(nodeStore);
    const expiresAt = new Date(this.clock.now().getTime() + this.config.restoreSafetyCopyHours * 3_600_000);
    const copy = await this.copies.open(action.id, asBackup ? 'backup' : 'snapshot', expiresAt);
    if (!copy) throw new SafetyCopyError(false, `action ${action.id}: no safety copy could be opened`);
    if (copy.status === 'completed') return; // an earlier attempt took it
    const snap = { id: copy.id, snapshotDir: action.server.node.snapshotDir };
    let backup: { id: number; accountId: number; storeName: string } | null = null;
    try {
      if (copy.type === 'snapshot') {
        const taken = await this.driver.createSnapshot(server, snap, noProgress, { signal });
        await this.copies.snapshotTaken(copy.id, taken, this.clock.now());
      } else {
        const of = await this.store.backupOfCreate(copy.id, nodeStore);
        if (!of) throw new Error(`backup ${copy.id}: its row is gone`);
        backup = { id: copy.id, accountId: copy.accountId, storeName: of.storeName };
        const base = await this.store.backupBase(server.id, copy.id);
        const written = await this.backups!.writeBackup(
          { backup, facts: of.facts, server, base, checkpoint: `vps-backup-${copy.id}` },
          noProgress,
          { signal },
        );
        await this.copies.backupTaken(copy.id, written, this.clock.now());
      }
    } catch (e) {
      const detail = e instanceof Error ? e.message : String(e);
      this.logger.error(
        { actionId: action.id, copy, err: e },
        'safety copy failed; the restore does not run',
      );
      if (copy.type === 'snapshot') await this.driver.deleteSnapshot(server, snap).catch(() => undefined);
      if (backup) await this.backups!.deleteBackup(backup).catch(() => undefined);
      await this.copies.failed(copy, detail, this.clock.now()).catch(() => undefined);
      const retryable = (e as { retryable?: unknown }).retryable !== false;
      throw new SafetyCopyError(retryable, detail);
    }
  }
}
