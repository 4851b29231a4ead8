import { Injectable } from '@nestjs/common';
import { PageRequest, skipTake } from '../common/pagination';
import { ListOrdering, orderingSql } from '../common/list-query';
import { ActionKind, ActionStatus, Prisma, ServerStatus } from '../generated/prisma/client';
import { PrismaService } from '../prisma/prisma.service';
import { nullWhenNoRow } from '../prisma/database-errors';
import { createOnLockedServer, LockedServerColumns, ServerCreateInput } from '../servers/server-hold';
import { SNAPSHOT_COLUMNS, SnapshotRow } from './snapshot.view';
import { Labels } from '../labels/labels';
import { labelsMatchSql } from '../labels/label-selector';

/** A snapshot's columns as the statements return them. */
interface SnapshotColumns {
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
  delete_protected: boolean;
  labels: unknown;
  kind?: SnapshotRow['kind'];
  expires_at?: Date | null;
}

/** A row of the list query: the count and visibility on every row, a snapshot's columns when any. */
interface ListRow extends SnapshotColumns {
  total: number;
  visible: boolean;
  server_id: number;
  server_name: string;
}

export interface LockedServer {
  id: number;
  account_id: number;
  node_id: number;
  status: ServerStatus;
  name: string;
}

/** What `snapshot_create_checked` found or did: the snapshot's columns are set when it made one. */
interface Created {
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

/** The row of create's statement: the locked server, then what `snapshot_create_checked` found or did. */
export type CreateRow = LockedServerColumns & Created;

/** The locked server columns of restore's and delete's statements. */
export interface LockedRow {
  server_id: number;
  server_account_id: number;
  node_id: number;
  server_status: LockedServer['status'];
  server_name: string;
}

/** The row of restore's statement: the locked server, then what `snapshot_restore_checked` found or did. */
export interface RestoreRow extends LockedRow {
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
export interface DeleteRow extends LockedRow {
  snapshot_id: number | null;
  snapshot_status: SnapshotRow['status'] | null;
  restoring: boolean | null;
  action_id: number | null;
  protected: boolean | null;
}

/** The locked server's columns in a restore or delete row. */
const LOCKED_SERVER_COLUMNS = Prisma.sql`v.id AS server_id, v.account_id AS server_account_id, v.node_id,
  v.status::text AS server_status, v.name AS server_name`;

function snapshotOf(r: SnapshotColumns, server: { id: number; name: string }): SnapshotRow {
  return {
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
    server,
    deleteProtected: r.delete_protected,
    labels: r.labels,
    // A create's row has neither: what it makes is a manual snapshot.
    kind: r.kind ?? 'manual',
    expiresAt: r.expires_at ?? null,
  };
}

/** The snapshot a create row inserted (`action_id` set: its columns are all there), as a response shows it. */
export function createdSnapshot(
  r: CreateRow,
  server: { id: number; name: string },
  labels: Labels,
): SnapshotRow {
  // A create sets no protection: the new snapshot has the column's default.
  return snapshotOf({ ...(r as CreateRow & SnapshotColumns), labels, delete_protected: false }, server);
}

/**
 * The snapshots' SQL: the statements, their row types and how rows become snapshots. The rules are
 * checked by the SQL functions each change calls (prisma/sql/functions/snapshot_*_checked.sql) and
 * answered by SnapshotsService. Every change is one statement that first locks the server row and then
 * checks and writes through a VOLATILE function (no interactive transaction, so no wait for a second round
 * trip while holding a pool connection); being VOLATILE, the function reads from a snapshot taken after
 * the lock is held, so it sees whatever the previous holder committed (a plain subquery would read from
 * the statement's own, older snapshot).
 */
@Injectable()
export class SnapshotRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * One round trip: the count, the page (joined to its server's name) and, with a server filter, whether
   * that server is visible. The page comes from the partial `(account_id | server_id, created_at DESC,
   * id DESC) WHERE deleted_at IS NULL` indexes; see docs/benchmarks.md for the plans.
   */
  async list(
    scope: { accountId?: number },
    filter: { serverId?: number; ordering: ListOrdering; labels: string | null },
    page: PageRequest,
  ): Promise<{ visible: boolean; count: number; rows: SnapshotRow[] }> {
    const conds: Prisma.Sql[] = [Prisma.sql`s.deleted_at IS NULL`];
    if (scope.accountId !== undefined) conds.push(Prisma.sql`s.account_id = ${scope.accountId}`);
    if (filter.serverId !== undefined) conds.push(Prisma.sql`s.server_id = ${filter.serverId}`);
    if (filter.labels !== null) conds.push(labelsMatchSql('s', filter.labels));
    const where = Prisma.join(conds, ' AND ');
    const { inner, outer: keys } = orderingSql(filter.ordering, 's');
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
               s.delete_protected,
               s.labels,
               s.kind::text AS kind, s.expires_at,
               v.id AS server_id, v.name AS server_name
        FROM snapshots s JOIN servers v ON v.id = s.server_id
        WHERE ${where}
        ORDER BY ${inner}
        LIMIT ${take} OFFSET ${skip}
      ) p ON true
      ORDER BY ${keys}`;
    const head = found[0];
    const rows = found
      .filter((r) => r.id !== null)
      .map((r) => snapshotOf(r, { id: r.server_id, name: r.server_name }));
    return { visible: head?.visible ?? false, count: head?.total ?? 0, rows };
  }

  /** A live snapshot, within the scope when one is given. */
  findLive(id: number, scope: { accountId?: number }): Promise<SnapshotRow | null> {
    return this.prisma.snapshot.findFirst({
      where: { id, deletedAt: null, ...scope },
      select: SNAPSHOT_COLUMNS,
    });
  }

  /**
   * Sets a live snapshot's delete protection, within the scope when one is given; null when there is no
   * such snapshot. One UPDATE, which re-checks `deleted_at` on the row's latest version: a delete that
   * committed first makes it miss, and snapshot_delete_checked re-checks the protection the same way.
   */
  changeProtection(
    id: number,
    scope: { accountId?: number },
    deleteProtected: boolean,
  ): Promise<SnapshotRow | null> {
    return nullWhenNoRow(
      this.prisma.snapshot.update({
        where: { id, deletedAt: null, ...scope },
        data: { deleteProtected },
        select: SNAPSHOT_COLUMNS,
      }),
    );
  }

  /** Replaces a live snapshot's labels (within the scope); false when there is no such snapshot. */
  async setLabels(id: number, scope: { accountId?: number }, labels: Labels): Promise<boolean> {
    const { count } = await this.prisma.snapshot.updateMany({
      where: { id, deletedAt: null, ...scope },
      data: { labels },
    });
    return count > 0;
  }

  /** A snapshot known to exist (an earlier attempt's). */
  findExisting(id: number): Promise<SnapshotRow> {
    return this.prisma.snapshot.findUniqueOrThrow({ where: { id }, select: SNAPSHOT_COLUMNS });
  }

  /**
   * Several creates in one statement, one implicit transaction; a row per input in input order, null
   * where the create was not done. The servers are locked in ascending id order (then arrival) with SKIP
   * LOCKED: the statement never waits for a row lock, so a server held elsewhere (a long operation on it,
   * an operator's transaction) cannot hold up the creates of other servers that arrived with it; such a
   * create (null here) is for the caller to run alone. For each locked row in turn,
   * `snapshot_create_checked` runs with a snapshot taken after its lock is held and after the calls
   * before it in this statement: two creates of one server in a batch are judged one after the other.
   */
  async createMany(inputs: ServerCreateInput[], limit: number): Promise<(CreateRow | null)[]> {
    const order = inputs.map((_, k) => k).sort((a, b) => inputs[a].serverId - inputs[b].serverId || a - b);
    const rows = await this.prisma.$queryRaw<(CreateRow & { ord: number })[]>`
      SELECT i.ord::int AS ord, v.node_id, v.status::text AS server_status, v.name AS server_name, c.*
      FROM unnest(${order.map((k) => inputs[k].serverId)}::int[], ${order.map((k) => inputs[k].name)}::varchar[],
                  ${order.map((k) => inputs[k].description)}::varchar[], ${order.map((k) => inputs[k].tokenId)}::int[],
                  ${order.map((k) => inputs[k].scope)}::int[],
                  ${order.map((k) => JSON.stringify(inputs[k].labels))}::jsonb[])
           WITH ORDINALITY AS i(server_id, name, description, token_id, scope, labels, ord)
      CROSS JOIN LATERAL (
        SELECT id, account_id, node_id, status, name FROM servers
        WHERE id = i.server_id AND (i.scope IS NULL OR account_id = i.scope)
        FOR UPDATE SKIP LOCKED
      ) v
      CROSS JOIN LATERAL snapshot_create_checked(v.id, v.account_id, v.status, i.name, i.description,
        i.token_id, NULL::int, ${limit}::int, p_labels => i.labels) c
      ORDER BY i.ord`;
    const out: (CreateRow | null)[] = new Array<CreateRow | null>(inputs.length).fill(null);
    for (const { ord, ...row } of rows) out[order[ord - 1]] = row;
    return out;
  }

  /** One create's statement, waiting for its server's lock (createOnLockedServer with `snapshot_create_checked`). */
  createAlone(
    i: ServerCreateInput,
    limit: number,
    idempotencyKeyId: number | null,
  ): Promise<CreateRow | undefined> {
    return createOnLockedServer<Created>(this.prisma, 'snapshot_create_checked', i, limit, idempotencyKeyId);
  }

  /**
   * Restore's statement: lock the snapshot's server row, then `snapshot_restore_checked` re-reads the
   * snapshot, the key's earlier action and the holding action, and marks the server `restoring` and
   * inserts the action only when every rule passes. No row: no such live snapshot (for this caller).
   */
  async restore(
    snapshotId: number,
    scope: number | null,
    tokenId: number,
    idempotencyKeyId: number | null,
  ): Promise<RestoreRow | undefined> {
    const [r] = await this.prisma.$queryRaw<RestoreRow[]>`
      SELECT ${LOCKED_SERVER_COLUMNS}, c.*
      FROM (${this.lockedServerOf(snapshotId, scope)}) v
      CROSS JOIN LATERAL snapshot_restore_checked(v.id, v.account_id, v.status, ${snapshotId}::int,
        ${scope}::int, ${tokenId}::int, ${idempotencyKeyId}::int) c`;
    return r;
  }

  /**
   * Delete's statement, as restore's: `snapshot_delete_checked` re-reads the snapshot and its open
   * restores and soft-deletes it and inserts the delete action only when it is neither being created
   * nor being restored from.
   */
  async delete(snapshotId: number, scope: number | null, tokenId: number): Promise<DeleteRow | undefined> {
    const [r] = await this.prisma.$queryRaw<DeleteRow[]>`
      SELECT ${LOCKED_SERVER_COLUMNS}, c.*
      FROM (${this.lockedServerOf(snapshotId, scope)}) v
      CROSS JOIN LATERAL snapshot_delete_checked(v.id, v.account_id, v.status, ${snapshotId}::int,
        ${scope}::int, ${tokenId}::int) c`;
    return r;
  }

  /**
   * The locking subquery of restore and delete: the server of the live, visible snapshot, locked. The
   * snapshot is looked up in the statement's snapshot (a miss is no row); the function called for the
   * locked row reads it again after the lock is held.
   */
  private lockedServerOf(snapshotId: number, scope: number | null): Prisma.Sql {
    return Prisma.sql`
      SELECT id, account_id, node_id, status, name FROM servers
      WHERE id = (SELECT server_id FROM snapshots WHERE id = ${snapshotId}::int AND deleted_at IS NULL
                  AND (${scope}::int IS NULL OR account_id = ${scope}::int))
      FOR UPDATE`;
  }
}
