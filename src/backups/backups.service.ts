import { Injectable } from '@nestjs/common';
import { accountScope, isAdmin, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { BackupStateReason } from '../common/messages';
import { pageOfVisibleServer } from '../common/list-query';
import { PageRequest } from '../common/pagination';
import { ProblemException } from '../common/problem';
import { deleteProtected } from '../common/delete-protection';
import { JobQueue } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { holdingOf, limitReached, refuseIfHeld } from '../servers/server-hold';
import { BackupFilter, BackupRepository } from './backup.repository';
import { labelFilterOf } from '../labels/label-selector';
import { Labels } from '../labels/labels';
import { BackupRow } from './backup.view';
import {
  BackupPolicy,
  DEFAULT_BACKUP_POLICY,
  policyOfRow,
  policyRowOf,
  startsNewSchedule,
} from './backup-policy';
import { Clock } from '../common/clock';

const notFound = (code: 'server_not_found' | 'backup_not_found') =>
  new ProblemException({ status: 404, code });

function invalidBackupState(
  backupId: number,
  operation: 'restored' | 'deleted' | 'verified',
  reason: BackupStateReason,
) {
  return new ProblemException({
    status: 400,
    code: 'invalid_backup_state',
    params: { backup_id: backupId, operation, reason },
    extra: { backup_status: reason === 'restoring' ? 'completed' : reason },
  });
}

/**
 * The rules of backups, answered. Every change is one statement of BackupRepository that locks the rows
 * the rule is about and checks and writes through a SQL function (prisma/sql/functions/backup_*), so the
 * manual-backup limit and "one long operation per server" (shared with snapshots) hold under any
 * concurrency; this service turns what the statement found into answers and refusals, and enqueues the
 * job after commit.
 */
@Injectable()
export class BackupsService {
  constructor(
    private readonly backups: BackupRepository,
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly queue: JobQueue,
    private readonly clock: Clock,
  ) {}

  async list(
    me: Principal,
    filter: Omit<BackupFilter, 'labels'> & { labelSelector?: string },
    page: PageRequest,
  ): Promise<{ count: number; rows: BackupRow[] }> {
    const labels = labelFilterOf(filter.labelSelector);
    return pageOfVisibleServer(await this.backups.list(accountScope(me), { ...filter, labels }, page));
  }

  async get(me: Principal, id: number): Promise<BackupRow> {
    const row = await this.backups.findLive(id, accountScope(me));
    if (!row) throw notFound('backup_not_found');
    return row;
  }

  /** Replaces the backup's labels (the DTO checked them) and answers it as it now is. */
  async setLabels(me: Principal, id: number, labels: Labels): Promise<BackupRow> {
    if (!(await this.backups.setLabels(id, accountScope(me), labels))) throw notFound('backup_not_found');
    return this.get(me, id);
  }

  /** A manual backup of the server: 10 per server (BACKUP_LIMIT_PER_SERVER), one long operation at a time. */
  async create(
    me: Principal,
    input: { serverId: number; name: string; description?: string; labels?: Labels },
    idempotencyKeyId?: number,
  ): Promise<{ backup: BackupRow; actionId: number }> {
    const limit = this.config.backupLimitPerServer;
    const r = await this.backups.create(
      {
        serverId: input.serverId,
        name: input.name,
        description: input.description ?? '',
        tokenId: me.tokenId,
        scope: accountScope(me).accountId ?? null,
        labels: input.labels ?? {},
      },
      limit,
      idempotencyKeyId ?? null,
    );
    if (!r) throw notFound('server_not_found');
    if (r.earlier_backup_id !== null) {
      await this.queue.enqueueAccepted(r.node_id, r.earlier_action_id!, 'create_backup');
      return { backup: await this.backups.findExisting(r.earlier_backup_id), actionId: r.earlier_action_id! };
    }
    refuseIfHeld({ id: input.serverId, status: r.server_status }, 'backup', holdingOf(r));
    if (r.action_id === null || r.id === null) {
      throw limitReached('backup_limit_reached', { limit, used: r.used, serverId: input.serverId });
    }
    await this.queue.enqueueAccepted(r.node_id, r.action_id, 'create_backup');
    return { backup: await this.backups.findExisting(r.id), actionId: r.action_id };
  }

  /**
   * Restores the backup onto `targetServerId` (default: its own server), another server of the same
   * account on any node; other accounts' servers and backups are 404. The restore holds the target.
   */
  async restore(
    me: Principal,
    backupId: number,
    targetServerId: number | undefined,
    idempotencyKeyId?: number,
  ): Promise<{
    backup: { id: number; name: string; createdAt: Date };
    server: { id: number; name: string };
    actionId: number;
  }> {
    const scope = accountScope(me);
    const r = await this.backups.restore(
      backupId,
      targetServerId ?? null,
      scope.accountId ?? null,
      me.tokenId,
      idempotencyKeyId ?? null,
    );
    if (!r || (!isAdmin(me) && r.server_account_id !== me.accountId)) {
      throw notFound(
        (await this.backups.visibleBackup(backupId, scope)) ? 'server_not_found' : 'backup_not_found',
      );
    }
    if (r.backup_id === null) throw notFound('backup_not_found'); // deleted meanwhile
    const backup = { id: r.backup_id, name: r.backup_name!, createdAt: r.backup_created_at! };
    const server = { id: r.server_id, name: r.server_name };
    if (r.earlier_action_id !== null) {
      await this.queue.enqueueAccepted(r.node_id, r.earlier_action_id, 'restore_backup');
      return { backup, server, actionId: r.earlier_action_id };
    }
    if (r.backup_status !== 'completed') throw invalidBackupState(backup.id, 'restored', r.backup_status!);
    refuseIfHeld({ id: r.server_id, status: r.server_status }, 'restoration', holdingOf(r));
    if (r.action_id === null) throw new Error(`backup_restore_checked inserted no action for ${backup.id}`);
    await this.queue.enqueueAccepted(r.node_id, r.action_id, 'restore_backup');
    return { backup, server, actionId: r.action_id };
  }

  /** Soft-deletes the backup (it leaves every list and frees its slot) and lets a job release its data. */
  async delete(me: Principal, backupId: number): Promise<{ actionId: number }> {
    const r = await this.backups.delete(backupId, accountScope(me).accountId ?? null, me.tokenId);
    if (!r || r.backup_id === null) throw notFound('backup_not_found');
    if (r.protected) throw deleteProtected('backup', r.backup_id);
    if (r.backup_status === 'in_progress') throw invalidBackupState(r.backup_id, 'deleted', 'in_progress');
    if (r.restoring) throw invalidBackupState(r.backup_id, 'deleted', 'restoring');
    if (r.action_id === null) throw new Error(`backup_delete_checked inserted no action for ${r.backup_id}`);
    await this.queue.enqueueAccepted(r.node_id, r.action_id, 'delete_backup');
    return { actionId: r.action_id };
  }

  /**
   * Protects the backup against deletion (retention's included), or lifts that protection; answers it as
   * it now is. A backup being deleted is already gone from every answer (404).
   */
  async changeProtection(me: Principal, backupId: number, protect: boolean): Promise<BackupRow> {
    const row = await this.backups.changeProtection(backupId, accountScope(me), protect);
    if (!row) throw notFound('backup_not_found');
    return row;
  }

  /**
   * Starts a verification of a `completed` backup (every stored chunk read back and its hash checked), or
   * answers the one already open. Any other status is 400 invalid_backup_state.
   */
  async verify(
    me: Principal,
    backupId: number,
  ): Promise<{ backup: { id: number; name: string; createdAt: Date }; actionId: number }> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.backups.verify(backupId, accountScope(me).accountId ?? null, me.tokenId);
      if (!r) throw notFound('backup_not_found');
      const backup = { id: r.backup_id, name: r.backup_name, createdAt: r.backup_created_at };
      if (r.action_id !== null) {
        if (r.started) await this.queue.enqueueAccepted(r.node_id, r.action_id, 'verify_backup');
        return { backup, actionId: r.action_id };
      }
      if (r.backup_status !== 'completed') throw invalidBackupState(backup.id, 'verified', r.backup_status);
      // A verification committed while the statement waited for the lock: read it on the next pass.
      if (attempt > 0) throw new Error(`backup ${backupId}: no verification started nor found`);
    }
  }

  async getPolicy(me: Principal, serverId: number): Promise<BackupPolicy> {
    await this.visibleServer(me, serverId);
    const row = await this.backups.findPolicy(serverId);
    return row ? policyOfRow(row) : DEFAULT_BACKUP_POLICY;
  }

  async putPolicy(me: Principal, serverId: number, policy: BackupPolicy): Promise<BackupPolicy> {
    await this.visibleServer(me, serverId);
    const row = policyRowOf(policy);
    const fresh = startsNewSchedule(await this.backups.findPolicy(serverId), row);
    return policyOfRow(await this.backups.putPolicy(serverId, row, fresh, this.clock.now()));
  }

  private async visibleServer(me: Principal, serverId: number): Promise<void> {
    const n = await this.prisma.server.count({ where: { id: serverId, ...accountScope(me) } });
    if (n === 0) throw notFound('server_not_found');
  }
}
