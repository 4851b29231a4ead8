import { Injectable, Logger } from '@nestjs/common';
import { accountScope, isAdmin, Principal } from '../auth/principal';
import { AppConfig } from '../config/app-config';
import { PageRequest, skipTake } from '../common/pagination';
import { isDatabaseBusy, isDatabaseUnavailable } from '../prisma/database-errors';
import { ProblemException } from '../common/problem';
import { ActionKind, ActionStatus, Prisma } from '../generated/prisma/client';
import { JobQueue } from '../jobs/job-queue';
import { PrismaService } from '../prisma/prisma.service';
import { MicroBatcher } from '../common/micro-batcher';
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

/** One create as its statement needs it. */
interface CreateInput {
  serverId: number;
  name: string;
  description: string;
  tokenId: number;
  /** The account the server must belong to; null for an admin. */
  scope: number | null;
}

/** The locked server columns of restore's and delete's statements. */
interface LockedRow {
  server_id: number;
  server_account_id: number;
  node_id: number;
  server_status: LockedServer['status'];
  server_name: string;
}

/** The row of restore's statement: the locked server, then what `snapshot_restore_checked` found or did. */
interface RestoreRow extends LockedRow {
  snapshot_id: number | null;
  snapshot_name: string | null;
  snapshot_status: SnapshotRow['status'] | null;
  snapshot_created_at: Date | null;
  earlier_action_id: number | null;
  holding_id: number | null;
  holding_kind: ActionKind | null;
  holding_status: ActionStatus | null;
  action_id: number | null;
}

/** The row of delete's statement: the locked server, then what `snapshot_delete_checked` found or did. */
interface DeleteRow extends LockedRow {
  snapshot_id: number | null;
  snapshot_status: SnapshotRow['status'] | null;
  restoring: boolean | null;
  action_id: number | null;
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

/** The locked server's columns in a restore or delete row (read by `serverOf`). */
const LOCKED_SERVER_COLUMNS = Prisma.sql`v.id AS server_id, v.account_id AS server_account_id, v.node_id,
  v.status::text AS server_status, v.name AS server_name`;

const notFound = (code: 'server_not_found' | 'snapshot_not_found') =>
  new ProblemException({ status: 404, code });

/**
 * The rules of snapshots. Every change is one statement that first locks the server row and then checks
 * and writes through a VOLATILE SQL function (no interactive transaction, so no wait for a second round
 * trip while holding a pool connection), so the per-server limit and "one long operation per server" hold
 * under any concurrency; the job is enqueued after commit (and re-enqueued by the worker's dispatcher if
 * Redis was unreachable).
 */
@Injectable()
export class SnapshotsService {
  private readonly logger = new Logger(SnapshotsService.name);

  /** Creates without an Idempotency-Key that arrived in the same turn of the event loop. */
  private readonly createBatcher = new MicroBatcher<CreateInput, CreateRow | null>(
    (inputs) => this.createMany(inputs),
    4,
    128,
  );

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
    const wanted: CreateInput = {
      serverId: input.serverId,
      name: input.name,
      description: input.description ?? '',
      tokenId: me.tokenId,
      scope,
    };
    // Without an Idempotency-Key, creates arriving together share one statement (createMany); one it
    // did not do (server locked by someone else, or no such server) runs alone and waits its turn.
    const batched = idempotencyKeyId === undefined ? await this.createBatcher.load(wanted) : null;
    const r = batched ?? (await this.createAlone(wanted, limit, idempotencyKeyId ?? null));
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

  /**
   * Several creates in one statement, one implicit transaction. The servers are locked in ascending id
   * order with SKIP LOCKED: the statement never waits for a row lock, so a server held elsewhere (a
   * long operation on it, an operator's transaction) cannot hold up the creates of other servers that
   * arrived with it; such a create (null here) runs alone afterwards and waits for its server as it
   * always did. For each locked row in turn, `snapshot_create_checked` runs with a snapshot taken after
   * its lock is held and after the calls before it in this statement (VOLATILE): two creates of one
   * server in a batch are judged one after the other. Should the statement fail as a whole (one row's
   * unexpected error rolls every row back), each create runs alone, so one bad create cannot fail the
   * others; a busy or unreachable database fails them all as it would fail each.
   */
  private async createMany(inputs: CreateInput[]): Promise<(CreateRow | null)[]> {
    const limit = this.config.snapshotLimitPerServer;
    // Ascending server ids (then arrival): the order the rows are locked and judged in.
    const order = inputs.map((_, k) => k).sort((a, b) => inputs[a].serverId - inputs[b].serverId || a - b);
    let rows: (CreateRow & { ord: number })[];
    try {
      rows = await this.prisma.$queryRaw<(CreateRow & { ord: number })[]>`
        SELECT i.ord::int AS ord, v.node_id, v.status::text AS server_status, v.name AS server_name, c.*
        FROM unnest(${order.map((k) => inputs[k].serverId)}::int[], ${order.map((k) => inputs[k].name)}::varchar[],
                    ${order.map((k) => inputs[k].description)}::varchar[], ${order.map((k) => inputs[k].tokenId)}::int[],
                    ${order.map((k) => inputs[k].scope)}::int[])
             WITH ORDINALITY AS i(server_id, name, description, token_id, scope, ord)
        CROSS JOIN LATERAL (
          SELECT id, account_id, node_id, status, name FROM servers
          WHERE id = i.server_id AND (i.scope IS NULL OR account_id = i.scope)
          FOR UPDATE SKIP LOCKED
        ) v
        CROSS JOIN LATERAL snapshot_create_checked(v.id, v.account_id, v.status, i.name, i.description,
          i.token_id, NULL::int, ${limit}::int) c
        ORDER BY i.ord`;
    } catch (e) {
      // Busy or unreachable database: one by one would only fail the same way, later.
      if (isDatabaseBusy(e) || isDatabaseUnavailable(e)) throw e;
      this.logger.warn({ err: e, creates: inputs.length }, 'batched create failed; running each alone');
      return inputs.map(() => null);
    }
    const out: (CreateRow | null)[] = new Array<CreateRow | null>(inputs.length).fill(null);
    for (const { ord, ...row } of rows) out[order[ord - 1]] = row;
    return out;
  }

  /** One create's statement: waits for its server's lock. No row: no such server (for this caller). */
  private async createAlone(
    i: CreateInput,
    limit: number,
    idempotencyKeyId: number | null,
  ): Promise<CreateRow | undefined> {
    const [r] = await this.prisma.$queryRaw<CreateRow[]>`
      SELECT v.node_id, v.status::text AS server_status, v.name AS server_name, c.*
      FROM (
        SELECT id, account_id, node_id, status, name FROM servers
        WHERE id = ${i.serverId}::int AND (${i.scope}::int IS NULL OR account_id = ${i.scope}::int)
        FOR UPDATE
      ) v
      CROSS JOIN LATERAL snapshot_create_checked(v.id, v.account_id, v.status, ${i.name}::varchar,
        ${i.description}::varchar, ${i.tokenId}::int, ${idempotencyKeyId}::int, ${limit}::int) c`;
    return r;
  }

  /**
   * One statement, no interactive transaction: lock the snapshot's server row (FOR UPDATE subquery), then,
   * for the locked row, `snapshot_restore_checked` (migration 20261128040000) re-reads the snapshot, the
   * key's earlier action and the holding action from a snapshot taken after the lock is held (VOLATILE),
   * and marks the server `restoring` and inserts the action, linked to the key, only when every rule
   * passes.
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
    const [r] = await this.prisma.$queryRaw<RestoreRow[]>`
      SELECT ${LOCKED_SERVER_COLUMNS}, c.*
      FROM (${this.lockedServerOf(snapshotId, scope)}) v
      CROSS JOIN LATERAL snapshot_restore_checked(v.id, v.account_id, v.status, ${snapshotId}::int,
        ${scope}::int, ${me.tokenId}::int, ${idempotencyKeyId ?? null}::int) c`;
    const server = this.serverOf(me, r);
    if (r.snapshot_id === null) throw notFound('snapshot_not_found'); // deleted meanwhile
    const snap = { id: r.snapshot_id, name: r.snapshot_name!, createdAt: r.snapshot_created_at! };
    if (r.earlier_action_id !== null) {
      await this.enqueue(server.node_id, r.earlier_action_id, 'restore_snapshot');
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
    const holding =
      r.holding_id !== null ? { id: r.holding_id, kind: r.holding_kind!, status: r.holding_status! } : null;
    if (holding || server.status === 'restoring') throw serverBusy(server, 'restoration', holding);
    if (r.action_id === null) throw new Error(`snapshot_restore_checked inserted no action for ${snap.id}`);
    await this.enqueue(server.node_id, r.action_id, 'restore_snapshot');
    return { snap, server, actionId: r.action_id };
  }

  /**
   * One statement, as restore: for the locked server, `snapshot_delete_checked` (migration 20261128040000)
   * re-reads the snapshot and its open restores and soft-deletes it and inserts the delete action only
   * when it is neither being created nor being restored from.
   */
  async delete(me: Principal, snapshotId: number): Promise<{ actionId: number }> {
    const scope = accountScope(me).accountId ?? null;
    const [r] = await this.prisma.$queryRaw<DeleteRow[]>`
      SELECT ${LOCKED_SERVER_COLUMNS}, c.*
      FROM (${this.lockedServerOf(snapshotId, scope)}) v
      CROSS JOIN LATERAL snapshot_delete_checked(v.id, v.account_id, v.status, ${snapshotId}::int,
        ${scope}::int, ${me.tokenId}::int) c`;
    const server = this.serverOf(me, r);
    if (r.snapshot_id === null) throw notFound('snapshot_not_found'); // deleted meanwhile
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
    await this.enqueue(server.node_id, r.action_id, 'delete_snapshot');
    return { actionId: r.action_id };
  }

  /**
   * The locking subquery of restore and delete: the server of the live, visible snapshot, locked. The
   * snapshot is looked up in the statement's snapshot (a miss is 404); the function called for the locked
   * row reads it again after the lock is held.
   */
  private lockedServerOf(snapshotId: number, scope: number | null): Prisma.Sql {
    return Prisma.sql`
      SELECT id, account_id, node_id, status, name FROM servers
      WHERE id = (SELECT server_id FROM snapshots WHERE id = ${snapshotId}::int AND deleted_at IS NULL
                  AND (${scope}::int IS NULL OR account_id = ${scope}::int))
      FOR UPDATE`;
  }

  /** The locked server of a restore or delete row; no row is 404 (snapshot), another account's server 404. */
  private serverOf(me: Principal, r: LockedRow | undefined): LockedServer {
    if (!r) throw notFound('snapshot_not_found');
    if (!isAdmin(me) && r.server_account_id !== me.accountId) throw notFound('server_not_found');
    return {
      id: r.server_id,
      account_id: r.server_account_id,
      node_id: r.node_id,
      status: r.server_status,
      name: r.server_name,
    };
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
