import { Injectable, Logger } from '@nestjs/common';
import { accountScope, isAdmin, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { PageRequest, skipTake } from '../common/pagination';
import { ProblemException } from '../common/problem';
import { ActionKind, ActionStatus, Prisma } from '../generated/prisma/client';
import { JobQueue } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { OPEN_ACTION_STATUSES } from '../servers/servers.service';
import { SNAPSHOT_COLUMNS, SnapshotRow } from './snapshot.view';

export type SnapshotOrdering = 'created_at' | '-created_at' | 'id' | '-id' | 'name' | '-name';
export const SNAPSHOT_ORDERINGS: SnapshotOrdering[] = [
  'created_at',
  '-created_at',
  'id',
  '-id',
  'name',
  '-name',
];

type Tx = Prisma.TransactionClient;

/** A row of the list query: the count and visibility on every row, a snapshot's columns when any. */
interface ListRow {
  total: number;
  visible: boolean;
  id: number;
  name: string;
  description: string;
  status: SnapshotRow['status'];
  progress: number;
  size_bytes: bigint | null;
  consistency: SnapshotRow['consistency'];
  error: string | null;
  created_at: Date;
  completed_at: Date | null;
  server_id: number;
  server_name: string;
}

interface LockedServer {
  id: number;
  account_id: number;
  node_id: number;
  status: 'running' | 'stopped' | 'restoring';
  name: string;
}

/** The row of create's statement: the locked server, then what `snapshot_create_checked` found or did. */
interface CreateRow {
  node_id: number;
  server_status: LockedServer['status'];
  server_name: string;
  earlier_action_id: number | null;
  earlier_snapshot_id: number | null;
  holding_id: number | null;
  holding_kind: ActionKind | null;
  holding_status: ActionStatus | null;
  used: number;
  action_id: number | null;
  id: number | null;
  name: string | null;
  description: string | null;
  status: SnapshotRow['status'] | null;
  progress: number | null;
  size_bytes: bigint | null;
  consistency: SnapshotRow['consistency'];
  error: string | null;
  created_at: Date | null;
  completed_at: Date | null;
}

/** 400 invalid_server_state: a create or restore holds the server, or it is being restored. */
function serverBusy(
  server: Pick<LockedServer, 'id' | 'status'>,
  operation: 'snapshot' | 'restoration',
  holding: { id: number; kind: ActionKind; status: ActionStatus } | null,
) {
  return new ProblemException({
    status: 400,
    code: 'invalid_server_state',
    params: {
      operation,
      status: server.status,
      action_id: holding?.id,
      action_kind: holding?.kind,
      action_status: holding?.status,
    },
    extra: {
      server_id: server.id,
      server_status: server.status,
      action: holding ? { id: holding.id, kind: holding.kind, status: holding.status } : null,
    },
  });
}

const notFound = (code: 'server_not_found' | 'snapshot_not_found') =>
  new ProblemException({ status: 404, code });

/**
 * The rules of snapshots. Every change happens in one transaction that first locks the server row, so
 * the per-server limit and "one long operation per server" hold under any concurrency; the job is
 * enqueued after commit (and re-enqueued by the worker's dispatcher if Redis was unreachable).
 */
@Injectable()
export class SnapshotsService {
  private readonly logger = new Logger(SnapshotsService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
    private readonly queue: JobQueue,
  ) {}

  /**
   * One round trip: the count, the page (joined to its server's name) and, with a server filter, whether
   * that server is visible. The page comes from the partial `(account_id | server_id, created_at DESC,
   * id DESC) WHERE deleted_at IS NULL` indexes; see docs/benchmarks.md for the plans.
   */
  async list(
    me: Principal,
    filter: { serverId?: number; ordering: SnapshotOrdering },
    page: PageRequest,
  ): Promise<{ count: number; rows: SnapshotRow[] }> {
    const conds: Prisma.Sql[] = [Prisma.sql`s.deleted_at IS NULL`];
    const scope = accountScope(me);
    if (scope.accountId !== undefined) conds.push(Prisma.sql`s.account_id = ${scope.accountId}`);
    if (filter.serverId !== undefined) conds.push(Prisma.sql`s.server_id = ${filter.serverId}`);
    const where = Prisma.join(conds, ' AND ');
    const desc = filter.ordering.startsWith('-');
    const field = filter.ordering.replace('-', '') as 'created_at' | 'id' | 'name';
    const dir = Prisma.raw(desc ? 'DESC' : 'ASC');
    const keys =
      field === 'created_at'
        ? Prisma.sql`p.created_at ${dir}, p.id ${dir}`
        : field === 'id'
          ? Prisma.sql`p.id ${dir}`
          : Prisma.sql`p.name ${dir}, p.id ${dir}`;
    const inner = Prisma.raw(
      (field === 'created_at'
        ? 's.created_at D, s.id D'
        : field === 'id'
          ? 's.id D'
          : 's.name D, s.id D'
      ).replace(/D/g, desc ? 'DESC' : 'ASC'),
    );
    const { skip, take } = skipTake(page);
    const visible =
      filter.serverId === undefined
        ? Prisma.sql`true`
        : Prisma.sql`EXISTS (SELECT 1 FROM servers v WHERE v.id = ${filter.serverId}${
            scope.accountId !== undefined ? Prisma.sql` AND v.account_id = ${scope.accountId}` : Prisma.empty
          })`;
    const found = await this.prisma.$queryRaw<ListRow[]>`
      SELECT c.total, c.visible, p.*
      FROM (SELECT (SELECT count(*)::int FROM snapshots s WHERE ${where}) AS total, ${visible} AS visible) c
      LEFT JOIN LATERAL (
        SELECT s.id, s.name, s.description, s.status::text AS status, s.progress, s.size_bytes,
               s.consistency::text AS consistency, s.error, s.created_at, s.completed_at,
               v.id AS server_id, v.name AS server_name
        FROM snapshots s JOIN servers v ON v.id = s.server_id
        WHERE ${where}
        ORDER BY ${inner}
        LIMIT ${take} OFFSET ${skip}
      ) p ON true
      ORDER BY ${keys}`;
    const head = found[0];
    if (!head?.visible) throw notFound('server_not_found');
    const rows: SnapshotRow[] = [];
    for (const r of found) {
      if (r.id === null) continue;
      rows.push({
        id: r.id,
        name: r.name,
        description: r.description,
        status: r.status,
        progress: r.progress,
        sizeBytes: r.size_bytes,
        consistency: r.consistency,
        error: r.error,
        createdAt: r.created_at,
        completedAt: r.completed_at,
        server: { id: r.server_id, name: r.server_name },
      });
    }
    return { count: head.total, rows };
  }

  async get(me: Principal, id: number): Promise<SnapshotRow> {
    const row = await this.prisma.snapshot.findFirst({
      where: { id, deletedAt: null, ...accountScope(me) },
      select: SNAPSHOT_COLUMNS,
    });
    if (!row) throw notFound('snapshot_not_found');
    return row;
  }

  /**
   * One statement, no interactive transaction: lock the server row (FOR UPDATE subquery), then, for the
   * locked row, `snapshot_create_checked` (migration 20261128030000) reads the key's earlier action, the
   * holding action and the used slots and inserts snapshot and action only when every rule passes. Being
   * VOLATILE, that function reads from a snapshot taken after the lock is held, so it sees whatever the
   * previous holder committed (a plain subquery would read from the statement's own, older snapshot).
   * The response shows the snapshot as the statement left it (a quick job could complete it before a
   * later re-read).
   */
  async create(
    me: Principal,
    input: { serverId: number; name: string; description?: string },
    idempotencyKeyId?: number,
  ): Promise<{ snapshot: SnapshotRow; actionId: number }> {
    const limit = this.config.snapshotLimitPerServer;
    const scope = accountScope(me).accountId ?? null;
    const [r] = await this.prisma.$queryRaw<CreateRow[]>`
      SELECT v.node_id, v.status::text AS server_status, v.name AS server_name, c.*
      FROM (
        SELECT id, account_id, node_id, status, name FROM servers
        WHERE id = ${input.serverId}::int AND (${scope}::int IS NULL OR account_id = ${scope}::int)
        FOR UPDATE
      ) v
      CROSS JOIN LATERAL snapshot_create_checked(v.id, v.account_id, v.status, ${input.name}::varchar,
        ${input.description ?? ''}::varchar, ${me.tokenId}::int, ${idempotencyKeyId ?? null}::int,
        ${limit}::int) c`;
    if (!r) throw notFound('server_not_found');
    const server = { id: input.serverId, name: r.server_name, status: r.server_status };
    if (r.earlier_snapshot_id !== null) {
      const previous = await this.prisma.snapshot.findUniqueOrThrow({
        where: { id: r.earlier_snapshot_id },
        select: SNAPSHOT_COLUMNS,
      });
      await this.enqueue(r.node_id, r.earlier_action_id!, 'create_snapshot');
      return { snapshot: previous, actionId: r.earlier_action_id! };
    }
    const holding =
      r.holding_id !== null ? { id: r.holding_id, kind: r.holding_kind!, status: r.holding_status! } : null;
    if (holding || server.status === 'restoring') throw serverBusy(server, 'snapshot', holding);
    if (r.action_id === null) {
      throw new ProblemException({
        status: 400,
        code: 'snapshot_limit_reached',
        params: { limit, used: r.used, server_id: server.id },
        extra: { limit, used: r.used, server_id: server.id },
      });
    }
    const snapshot: SnapshotRow = {
      id: r.id!,
      name: r.name!,
      description: r.description!,
      status: r.status!,
      progress: r.progress!,
      sizeBytes: r.size_bytes,
      consistency: r.consistency,
      error: r.error,
      createdAt: r.created_at!,
      completedAt: r.completed_at,
      server: { id: server.id, name: server.name },
    };
    await this.enqueue(r.node_id, r.action_id, 'create_snapshot');
    return { snapshot, actionId: r.action_id };
  }

  async restore(me: Principal, snapshotId: number, idempotencyKeyId?: number) {
    const result = await this.prisma.$transaction(async (tx) => {
      const found = await this.findLiveSnapshot(tx, me, snapshotId);
      const server = await this.lockServer(tx, me, found.serverId);
      // Read again under the server lock: a delete or restore committed meanwhile must be seen.
      const snap = await this.findLiveSnapshot(tx, me, snapshotId);
      const earlier = await this.actionOfKey(tx, idempotencyKeyId);
      if (earlier) return { snap, server, actionId: earlier.id };
      if (snap.status !== 'completed') {
        throw new ProblemException({
          status: 400,
          code: 'invalid_snapshot_state',
          params: {
            snapshot_id: snap.id,
            operation: 'restored',
            reason:
              snap.status === 'in_progress' ? 'it is still being created' : 'it failed and holds no data',
          },
          extra: { snapshot_status: snap.status },
        });
      }
      await this.assertServerIdle(tx, server, 'restoration');
      await tx.server.update({ where: { id: server.id }, data: { status: 'restoring' } });
      const action = await tx.action.create({
        data: {
          kind: 'restore_snapshot',
          accountId: server.account_id,
          serverId: server.id,
          snapshotId: snap.id,
          requestedByTokenId: me.tokenId,
          serverStatusBefore: server.status,
          idempotencyKeyId,
        },
        select: { id: true },
      });
      return { snap, server, actionId: action.id };
    });
    await this.enqueue(result.server.node_id, result.actionId, 'restore_snapshot');
    return result;
  }

  async delete(me: Principal, snapshotId: number): Promise<{ actionId: number }> {
    const { actionId, nodeId } = await this.prisma.$transaction(async (tx) => {
      const found = await this.findLiveSnapshot(tx, me, snapshotId);
      const server = await this.lockServer(tx, me, found.serverId);
      // Read again under the server lock: a delete or restore committed meanwhile must be seen.
      const snap = await this.findLiveSnapshot(tx, me, snapshotId);
      const reason =
        snap.status === 'in_progress'
          ? 'it is still being created'
          : (await tx.action.count({
                where: {
                  snapshotId: snap.id,
                  kind: 'restore_snapshot',
                  status: { in: OPEN_ACTION_STATUSES },
                },
              })) > 0
            ? 'a restore from it is in progress'
            : null;
      if (reason) {
        throw new ProblemException({
          status: 400,
          code: 'invalid_snapshot_state',
          params: { snapshot_id: snap.id, operation: 'deleted', reason },
          extra: { snapshot_status: snap.status },
        });
      }
      await tx.snapshot.update({ where: { id: snap.id }, data: { deletedAt: new Date() } });
      const action = await tx.action.create({
        data: {
          kind: 'delete_snapshot',
          accountId: server.account_id,
          serverId: server.id,
          snapshotId: snap.id,
          requestedByTokenId: me.tokenId,
          serverStatusBefore: server.status,
        },
        select: { id: true },
      });
      return { actionId: action.id, nodeId: server.node_id };
    });
    await this.enqueue(nodeId, actionId, 'delete_snapshot');
    return { actionId };
  }

  /** The action an earlier attempt of this Idempotency-Key request committed, if any. */
  private actionOfKey(tx: Tx, idempotencyKeyId: number | undefined) {
    if (idempotencyKeyId === undefined) return null;
    return tx.action.findFirst({ where: { idempotencyKeyId }, select: { id: true, snapshotId: true } });
  }

  private async findLiveSnapshot(tx: Tx, me: Principal, id: number) {
    const snap = await tx.snapshot.findFirst({
      where: { id, deletedAt: null, ...accountScope(me) },
      select: { id: true, name: true, status: true, serverId: true, createdAt: true },
    });
    if (!snap) throw notFound('snapshot_not_found');
    return snap;
  }

  /** Locks the server row for the rest of the transaction; another account's server is "not found". */
  private async lockServer(tx: Tx, me: Principal, serverId: number): Promise<LockedServer> {
    const rows = await tx.$queryRaw<LockedServer[]>`
      SELECT id, account_id, node_id, status::text AS status, name FROM servers WHERE id = ${serverId} FOR UPDATE`;
    const server = rows[0];
    if (!server || (!isAdmin(me) && server.account_id !== me.accountId)) throw notFound('server_not_found');
    return server;
  }

  private async assertServerIdle(tx: Tx, server: LockedServer, operation: 'snapshot' | 'restoration') {
    const holding = await tx.action.findFirst({
      where: { serverId: server.id, status: { in: OPEN_ACTION_STATUSES }, kind: { not: 'delete_snapshot' } },
      select: { id: true, kind: true, status: true },
      orderBy: { id: 'asc' },
    });
    if (holding || server.status === 'restoring') throw serverBusy(server, operation, holding);
  }

  /** After commit: enqueue, but never fail the accepted request for it (the dispatcher retries). */
  private async enqueue(nodeId: number, actionId: number, kind: string): Promise<void> {
    try {
      await this.queue.enqueue(nodeId, actionId, kind);
    } catch (e) {
      this.logger.warn(
        { actionId, err: e },
        'enqueue failed; the dispatcher will enqueue the committed action',
      );
    }
  }
}
