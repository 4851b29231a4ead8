import { Injectable } from '@nestjs/common';
import { ListOrdering, orderingSql } from '../common/list-query';
import { labelsMatchSql } from '../labels/label-selector';
import { Labels } from '../labels/labels';
import { PageRequest, skipTake } from '../common/pagination';
import { ActionKind, ActionStatus, BackupKind, Prisma, ServerStatus } from '../generated/prisma/client';
import { PrismaService } from '../prisma/prisma.service';
import { nullWhenNoRow } from '../prisma/database-errors';
import { createOnLockedServer, LockedServerColumns, ServerCreateInput } from '../servers/server-hold';
import { BACKUP_COLUMNS, BackupRow } from './backup.view';

/** The locked server of a create or restore statement. */
export interface LockedServer {
  id: number;
  account_id: number;
  node_id: number;
  status: ServerStatus;
  name: string;
}

interface Holding {
  holding_id: number | null;
  holding_kind: ActionKind | null;
  holding_status: ActionStatus | null;
}

/** What `backup_create_checked` found or did. */
interface Created extends Holding {
  earlier_action_id: number | null;
  earlier_backup_id: number | null;
  used: number;
  action_id: number | null;
  id: number | null;
}

/** The row of create's statement: the locked server, then what `backup_create_checked` found or did. */
export type CreateRow = LockedServerColumns & Created;

/** The row of restore's statement: the locked target server, then what `backup_restore_checked` found or did. */
export interface RestoreRow extends Holding {
  server_id: number;
  server_account_id: number;
  node_id: number;
  server_status: ServerStatus;
  server_name: string;
  backup_id: number | null;
  backup_name: string | null;
  backup_status: BackupRow['status'] | null;
  backup_created_at: Date | null;
  earlier_action_id: number | null;
  action_id: number | null;
}

/** The row of delete's statement: the backup's server's node, then what `backup_delete_checked` found or did. */
export interface DeleteRow {
  node_id: number;
  backup_id: number | null;
  backup_status: BackupRow['status'] | null;
  restoring: boolean | null;
  action_id: number | null;
  protected: boolean | null;
}

/** The row of verify's statement: the locked backup, and the verification started or found open. */
export interface VerifyRow {
  backup_id: number;
  backup_name: string;
  backup_status: BackupRow['status'];
  backup_created_at: Date;
  node_id: number;
  action_id: number | null;
  started: boolean;
}

export interface BackupFilter {
  serverId?: number;
  kind?: BackupKind;
  ordering: ListOrdering;
  /** A label selector's jsonpath (labelFilterOf); null: no filter. */
  labels: string | null;
}

/**
 * The backups' SQL. The rules are checked by the SQL functions each change calls
 * (prisma/sql/functions/backup_*_checked.sql) and answered by BackupsService. Every change is one
 * statement that first locks the rows the rule is about (the server; for a restore the target server and
 * then the backup; for a delete the backup) and then checks and writes through a VOLATILE function, which
 * reads from a snapshot taken after the locks are held (see snapshot.repository.ts).
 */
@Injectable()
export class BackupRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** The page, its count and, with a server filter, whether that server is visible. */
  async list(
    scope: { accountId?: number },
    filter: BackupFilter,
    page: PageRequest,
  ): Promise<{ visible: boolean; count: number; rows: BackupRow[] }> {
    // The filter and page in SQL (a label selector is a jsonpath match Prisma cannot express), then
    // the page's columns by id.
    const conds: Prisma.Sql[] = [Prisma.sql`b.deleted_at IS NULL`];
    if (scope.accountId !== undefined) conds.push(Prisma.sql`b.account_id = ${scope.accountId}`);
    if (filter.serverId !== undefined) conds.push(Prisma.sql`b.server_id = ${filter.serverId}`);
    if (filter.kind !== undefined) conds.push(Prisma.sql`b.kind = ${filter.kind}::backup_kind`);
    if (filter.labels !== null) conds.push(labelsMatchSql('b', filter.labels));
    const where = Prisma.join(conds, ' AND ');
    const { skip, take } = skipTake(page);
    const [visible, [counted], page_] = await Promise.all([
      filter.serverId === undefined
        ? true
        : this.prisma.server.count({ where: { id: filter.serverId, ...scope } }).then((n) => n > 0),
      this.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM backups b WHERE ${where}`,
      this.prisma.$queryRaw<{ id: number }[]>`
        SELECT b.id FROM backups b WHERE ${where}
        ORDER BY ${orderingSql(filter.ordering, 'b').inner} LIMIT ${take} OFFSET ${skip}`,
    ]);
    const ids = page_.map((r) => r.id);
    const found = await this.prisma.backup.findMany({ where: { id: { in: ids } }, select: BACKUP_COLUMNS });
    const byId = new Map(found.map((b) => [b.id, b]));
    const rows = ids.flatMap((id) => byId.get(id) ?? []);
    return { visible, count: counted.n, rows };
  }

  /** A live backup, within the scope when one is given. */
  findLive(id: number, scope: { accountId?: number }): Promise<BackupRow | null> {
    return this.prisma.backup.findFirst({ where: { id, deletedAt: null, ...scope }, select: BACKUP_COLUMNS });
  }

  /**
   * Sets a live backup's delete protection, within the scope when one is given; null when there is no
   * such backup. One UPDATE, which locks the row as delete's statement does: whichever commits first, the
   * other sees it.
   */
  changeProtection(
    id: number,
    scope: { accountId?: number },
    deleteProtected: boolean,
  ): Promise<BackupRow | null> {
    return nullWhenNoRow(
      this.prisma.backup.update({
        where: { id, deletedAt: null, ...scope },
        data: { deleteProtected },
        select: BACKUP_COLUMNS,
      }),
    );
  }

  /** Replaces a live backup's labels (within the scope); false when there is no such backup. */
  async setLabels(id: number, scope: { accountId?: number }, labels: Labels): Promise<boolean> {
    const { count } = await this.prisma.backup.updateMany({
      where: { id, deletedAt: null, ...scope },
      data: { labels },
    });
    return count > 0;
  }

  /** A backup known to exist (one just inserted, or an earlier attempt's). */
  findExisting(id: number): Promise<BackupRow> {
    return this.prisma.backup.findUniqueOrThrow({ where: { id }, select: BACKUP_COLUMNS });
  }

  /** Create's statement (createOnLockedServer with `backup_create_checked`). */
  create(
    i: ServerCreateInput,
    limit: number,
    idempotencyKeyId: number | null,
  ): Promise<CreateRow | undefined> {
    return createOnLockedServer<Created>(this.prisma, 'backup_create_checked', i, limit, idempotencyKeyId);
  }

  /**
   * Restore's statement: lock the target server (the backup's own by default), then the backup, which
   * must be of the target's account; `backup_restore_checked` then re-reads both. No row: the backup or
   * the target is not there for this caller (see `visibleBackup`).
   */
  async restore(
    backupId: number,
    targetServerId: number | null,
    scope: number | null,
    tokenId: number,
    idempotencyKeyId: number | null,
  ): Promise<RestoreRow | undefined> {
    const [r] = await this.prisma.$queryRaw<RestoreRow[]>`
      SELECT v.id AS server_id, v.account_id AS server_account_id, v.node_id, v.status::text AS server_status,
             v.name AS server_name, c.*
      FROM (
        SELECT id, account_id, node_id, status, name FROM servers
        WHERE id = COALESCE(${targetServerId}::int,
                            (SELECT server_id FROM backups WHERE id = ${backupId}::int AND deleted_at IS NULL))
          AND (${scope}::int IS NULL OR account_id = ${scope}::int)
        FOR UPDATE
      ) v
      CROSS JOIN LATERAL (
        SELECT id FROM backups
        WHERE id = ${backupId}::int AND deleted_at IS NULL AND account_id = v.account_id
        FOR UPDATE
      ) b
      CROSS JOIN LATERAL backup_restore_checked(v.id, v.account_id, v.status, b.id, ${tokenId}::int,
        ${idempotencyKeyId}::int) c`;
    return r;
  }

  /** Delete's statement: lock the backup, then `backup_delete_checked`. No row: no such live backup. */
  async delete(backupId: number, scope: number | null, tokenId: number): Promise<DeleteRow | undefined> {
    const [r] = await this.prisma.$queryRaw<DeleteRow[]>`
      SELECT v.node_id, c.*
      FROM (
        SELECT id, server_id FROM backups
        WHERE id = ${backupId}::int AND deleted_at IS NULL
          AND (${scope}::int IS NULL OR account_id = ${scope}::int)
        FOR UPDATE
      ) b
      JOIN servers v ON v.id = b.server_id
      CROSS JOIN LATERAL backup_delete_checked(b.id, ${tokenId}::int) c`;
    return r;
  }

  /**
   * Verify's statement: lock the live backup, then start a verification of a `completed` one unless one
   * is open (then that one is answered). The unique index actions_one_open_verify_per_backup keeps a
   * verification that committed while this statement waited from being doubled (no action: ask again).
   */
  async verify(
    backupId: number,
    scope: number | null,
    tokenId: number | null,
  ): Promise<VerifyRow | undefined> {
    const [r] = await this.prisma.$queryRaw<VerifyRow[]>`
      WITH b AS (
        SELECT id, account_id, server_id, name, status, created_at FROM backups
        WHERE id = ${backupId}::int AND deleted_at IS NULL AND (${scope}::int IS NULL OR account_id = ${scope}::int)
        FOR UPDATE
      ), open AS (
        SELECT a.id FROM actions a JOIN b ON a.backup_id = b.id
        WHERE a.kind = 'verify_backup' AND a.status IN ('pending', 'running')
      ), ins AS (
        INSERT INTO actions (kind, account_id, server_id, backup_id, requested_by_token_id, server_status_before)
        SELECT 'verify_backup', b.account_id, b.server_id, b.id, ${tokenId}::int, v.status
        FROM b JOIN servers v ON v.id = b.server_id
        WHERE b.status = 'completed' AND NOT EXISTS (SELECT 1 FROM open)
        ON CONFLICT DO NOTHING
        RETURNING id
      )
      SELECT b.id AS backup_id, b.name AS backup_name, b.status::text AS backup_status,
             b.created_at AS backup_created_at, v.node_id,
             COALESCE((SELECT id FROM ins), (SELECT id FROM open)) AS action_id, (SELECT id FROM ins) IS NOT NULL AS started
      FROM b JOIN servers v ON v.id = b.server_id`;
    return r;
  }

  /** Whether the live backup is there for this caller (after a restore statement found no row). */
  async visibleBackup(backupId: number, scope: { accountId?: number }): Promise<boolean> {
    return (await this.prisma.backup.count({ where: { id: backupId, deletedAt: null, ...scope } })) > 0;
  }

  /** The server's policy row, if it has one. */
  findPolicy(serverId: number) {
    return this.prisma.backupPolicy.findUnique({ where: { serverId } });
  }

  /**
   * Writes the server's whole policy; `newSchedule` (at `at`) restarts the slots it owes: a slot of the
   * new schedule that fell before this write is not run.
   */
  putPolicy(
    serverId: number,
    data: Omit<Prisma.BackupPolicyUncheckedCreateInput, 'serverId' | 'scheduleSince'>,
    newSchedule: boolean,
    at: Date,
  ) {
    const since = newSchedule ? { scheduleSince: at } : {};
    return this.prisma.backupPolicy.upsert({
      where: { serverId },
      create: { serverId, ...data, scheduleSince: at },
      update: { ...data, ...since, updatedAt: at },
    });
  }
}
