import { Injectable, Logger } from '@nestjs/common';
import { accountScope, isAdmin, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { PageRequest } from '../common/pagination';
import { ListOrdering, pageOfVisibleServer } from '../common/list-query';
import { isDatabaseBusy, isDatabaseUnavailable } from '../prisma/database-errors';
import { ProblemException } from '../common/problem';
import { deleteProtected } from '../common/delete-protection';
import { JobQueue } from '../jobs/job-queue';
import { MicroBatcher } from '../common/micro-batcher';
import {
  createdSnapshot,
  CreateRow,
  LockedRow,
  LockedServer,
  SnapshotRepository,
} from './snapshot.repository';
import { SnapshotRow } from './snapshot.view';
import { labelFilterOf } from '../labels/label-selector';
import { Labels } from '../labels/labels';
import { holdingOf, limitReached, refuseIfHeld, ServerCreateInput } from '../servers/server-hold';

const notFound = (code: 'server_not_found' | 'snapshot_not_found') =>
  new ProblemException({ status: 404, code });

/**
 * The rules of snapshots, answered. Every change is one statement of SnapshotRepository that locks the
 * server row and checks and writes through a SQL function (prisma/sql/functions), so the per-server limit
 * and "one long operation per server" hold under any concurrency; this service turns what the statement
 * found into answers and refusals, and enqueues the job after commit (re-enqueued by the worker's
 * dispatcher if Redis was unreachable).
 */
@Injectable()
export class SnapshotsService {
  private readonly logger = new Logger(SnapshotsService.name);

  /** Creates without an Idempotency-Key that arrived in the same turn of the event loop. */
  private readonly createBatcher = new MicroBatcher<ServerCreateInput, CreateRow | null>(
    (inputs) => this.createMany(inputs),
    4,
    128,
  );

  constructor(
    private readonly snapshots: SnapshotRepository,
    private readonly config: AppConfig,
    private readonly queue: JobQueue,
  ) {}

  async list(
    me: Principal,
    filter: { serverId?: number; ordering: ListOrdering; labelSelector?: string },
    page: PageRequest,
  ): Promise<{ count: number; rows: SnapshotRow[] }> {
    const labels = labelFilterOf(filter.labelSelector);
    return pageOfVisibleServer(await this.snapshots.list(accountScope(me), { ...filter, labels }, page));
  }

  async get(me: Principal, id: number): Promise<SnapshotRow> {
    const row = await this.snapshots.findLive(id, accountScope(me));
    if (!row) throw notFound('snapshot_not_found');
    return row;
  }

  /** Replaces the snapshot's labels (the DTO checked them) and answers it as it now is. */
  async setLabels(me: Principal, id: number, labels: Labels): Promise<SnapshotRow> {
    if (!(await this.snapshots.setLabels(id, accountScope(me), labels))) throw notFound('snapshot_not_found');
    return this.get(me, id);
  }

  /**
   * One statement: `snapshot_create_checked` reads the key's earlier action, the holding action and the
   * used slots of the locked server and inserts snapshot and action only when every rule passes. The
   * response shows the snapshot as the statement left it (a quick job could complete it before a later
   * re-read).
   */
  async create(
    me: Principal,
    input: { serverId: number; name: string; description?: string; labels?: Labels },
    idempotencyKeyId?: number,
  ): Promise<{ snapshot: SnapshotRow; actionId: number }> {
    const limit = this.config.snapshotLimitPerServer;
    const scope = accountScope(me).accountId ?? null;
    const wanted: ServerCreateInput = {
      serverId: input.serverId,
      name: input.name,
      description: input.description ?? '',
      tokenId: me.tokenId,
      scope,
      labels: input.labels ?? {},
    };
    // Without an Idempotency-Key, creates arriving together share one statement (createMany); one it
    // did not do (server locked by someone else, or no such server) runs alone and waits its turn.
    const batched = idempotencyKeyId === undefined ? await this.createBatcher.load(wanted) : null;
    const r = batched ?? (await this.snapshots.createAlone(wanted, limit, idempotencyKeyId ?? null));
    if (!r) throw notFound('server_not_found');
    const server = { id: input.serverId, name: r.server_name, status: r.server_status };
    if (r.earlier_snapshot_id !== null) {
      const previous = await this.snapshots.findExisting(r.earlier_snapshot_id);
      await this.queue.enqueueAccepted(r.node_id, r.earlier_action_id!, 'create_snapshot');
      return { snapshot: previous, actionId: r.earlier_action_id! };
    }
    const holding = holdingOf(r);
    refuseIfHeld(server, 'snapshot', holding);
    if (r.action_id === null) {
      throw limitReached('snapshot_limit_reached', { limit, used: r.used, serverId: server.id });
    }
    const snapshot = createdSnapshot(r, { id: server.id, name: server.name }, wanted.labels);
    await this.queue.enqueueAccepted(r.node_id, r.action_id, 'create_snapshot');
    return { snapshot, actionId: r.action_id };
  }

  /**
   * Creates that arrived together, in one statement (SnapshotRepository.createMany); null for one it did
   * not do, which then runs alone and waits its turn. Should the statement fail as a whole (one row's
   * unexpected error rolls every row back), each create runs alone, so one bad create cannot fail the
   * others; a busy or unreachable database fails them all as it would fail each.
   */
  private async createMany(inputs: ServerCreateInput[]): Promise<(CreateRow | null)[]> {
    try {
      return await this.snapshots.createMany(inputs, this.config.snapshotLimitPerServer);
    } catch (e) {
      // Busy or unreachable database: one by one would only fail the same way, later.
      if (isDatabaseBusy(e) || isDatabaseUnavailable(e)) throw e;
      this.logger.warn({ err: e, creates: inputs.length }, 'batched create failed; running each alone');
      return inputs.map(() => null);
    }
  }

  /**
   * One statement: for the snapshot's locked server, `snapshot_restore_checked` re-reads the snapshot,
   * the key's earlier action and the holding action, and marks the server `restoring` and inserts the
   * action, linked to the key, only when every rule passes.
   */
  async restore(
    me: Principal,
    snapshotId: number,
    idempotencyKeyId?: number,
  ): Promise<{
    snap: { id: number; name: string; createdAt: Date };
    server: LockedServer;
    actionId: number;
  }> {
    const scope = accountScope(me).accountId ?? null;
    const { r, server } = this.locked(
      me,
      await this.snapshots.restore(snapshotId, scope, me.tokenId, idempotencyKeyId ?? null),
    );
    if (r.snapshot_id === null) throw notFound('snapshot_not_found'); // deleted meanwhile
    const snap = { id: r.snapshot_id, name: r.snapshot_name!, createdAt: r.snapshot_created_at! };
    if (r.earlier_action_id !== null) {
      await this.queue.enqueueAccepted(server.node_id, r.earlier_action_id, 'restore_snapshot');
      return { snap, server, actionId: r.earlier_action_id };
    }
    if (r.snapshot_status !== 'completed') {
      throw new ProblemException({
        status: 400,
        code: 'invalid_snapshot_state',
        params: {
          snapshot_id: snap.id,
          operation: 'restored',
          reason:
            r.snapshot_status === 'in_progress' ? 'it is still being created' : 'it failed and holds no data',
        },
        extra: { snapshot_status: r.snapshot_status },
      });
    }
    const holding = holdingOf(r);
    refuseIfHeld(server, 'restoration', holding);
    if (r.action_id === null) throw new Error(`snapshot_restore_checked inserted no action for ${snap.id}`);
    await this.queue.enqueueAccepted(server.node_id, r.action_id, 'restore_snapshot');
    return { snap, server, actionId: r.action_id };
  }

  /**
   * One statement, as restore: for the locked server, `snapshot_delete_checked` re-reads the snapshot and
   * its open restores and soft-deletes it and inserts the delete action only when it is neither being
   * created nor being restored from.
   */
  async delete(me: Principal, snapshotId: number): Promise<{ actionId: number }> {
    const scope = accountScope(me).accountId ?? null;
    const { r, server } = this.locked(me, await this.snapshots.delete(snapshotId, scope, me.tokenId));
    if (r.snapshot_id === null) throw notFound('snapshot_not_found'); // deleted meanwhile
    if (r.protected) throw deleteProtected('snapshot', r.snapshot_id);
    const reason =
      r.snapshot_status === 'in_progress'
        ? 'it is still being created'
        : r.restoring
          ? 'a restore from it is in progress'
          : null;
    if (reason) {
      throw new ProblemException({
        status: 400,
        code: 'invalid_snapshot_state',
        params: { snapshot_id: r.snapshot_id, operation: 'deleted', reason },
        extra: { snapshot_status: r.snapshot_status },
      });
    }
    if (r.action_id === null)
      throw new Error(`snapshot_delete_checked inserted no action for ${r.snapshot_id}`);
    await this.queue.enqueueAccepted(server.node_id, r.action_id, 'delete_snapshot');
    return { actionId: r.action_id };
  }

  /**
   * Protects the snapshot against deletion, or lifts that protection; answers it as it now is. A snapshot
   * being deleted is already gone from every answer (404).
   */
  async changeProtection(me: Principal, snapshotId: number, protect: boolean): Promise<SnapshotRow> {
    const row = await this.snapshots.changeProtection(snapshotId, accountScope(me), protect);
    if (!row) throw notFound('snapshot_not_found');
    return row;
  }

  /** A restore or delete row and its locked server; no row is 404 (snapshot), another account's server 404. */
  private locked<T extends LockedRow>(me: Principal, r: T | undefined): { r: T; server: LockedServer } {
    if (!r) throw notFound('snapshot_not_found');
    if (!isAdmin(me) && r.server_account_id !== me.accountId) throw notFound('server_not_found');
    const server: LockedServer = {
      id: r.server_id,
      account_id: r.server_account_id,
      node_id: r.node_id,
      status: r.server_status,
      name: r.server_name,
    };
    return { r, server };
  }
}
