import { ActionKind, ActionStatus, Prisma, ServerStatus } from '../generated/prisma/client';
import { ProblemException } from '../common/problem';
import { PrismaService } from '../prisma/prisma.service';
import { Labels } from '../labels/labels';

/**
 * What snapshots and backups share about the server they act on: "one long operation per server" and
 * the per-server limit, as their findings read and are refused, and the create statement that locks the
 * server and calls the create's checked function. The rules themselves are checked in SQL
 * (prisma/sql/functions: server_operation_check, server_holding_action) under the server's row lock.
 */

/** An action holding a server (an open create or restore, of a snapshot or a backup). */
export interface HoldingAction {
  id: number;
  kind: ActionKind;
  status: ActionStatus;
}

/** The holding action of a statement's row, if any. */
export function holdingOf(r: {
  holding_id: number | null;
  holding_kind: ActionKind | null;
  holding_status: ActionStatus | null;
}): HoldingAction | null {
  return r.holding_id !== null
    ? { id: r.holding_id, kind: r.holding_kind!, status: r.holding_status! }
    : null;
}

/** Kinds that run in the background and hold no server. */
export const BACKGROUND_KINDS: readonly ActionKind[] = ['delete_snapshot', 'delete_backup', 'verify_backup'];

type HeldOperation = 'snapshot' | 'backup' | 'restoration' | 'power action';

/** 400 invalid_server_state when a create or restore holds the server or it is being restored. */
export function refuseIfHeld(
  server: { id: number; status: ServerStatus },
  operation: HeldOperation,
  holding: HoldingAction | null,
): void {
  if (!holding && server.status !== 'restoring') return;
  throw serverBusy(server, operation, holding);
}

/** The invalid_server_state problem (also the document's example). */
export function serverBusy(
  server: { id: number; status: ServerStatus },
  operation: HeldOperation,
  holding: HoldingAction | null,
): ProblemException {
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

/** 400 when the server's live snapshots, or its manual backups, already fill the per-server limit. */
export function limitReached(
  code: 'snapshot_limit_reached' | 'backup_limit_reached',
  found: { limit: number; used: number; serverId: number },
): ProblemException {
  const members = { limit: found.limit, used: found.used, server_id: found.serverId };
  return new ProblemException({ status: 400, code, params: members, extra: members });
}

/** A create of a snapshot or a backup on one server, as its statement needs it. */
export interface ServerCreateInput {
  serverId: number;
  name: string;
  description: string;
  tokenId: number;
  /** The account the server must belong to; null for an admin. */
  scope: number | null;
  /** The new resource's labels (checked by the caller). */
  labels: Labels;
}

/** The locked server's columns at the head of a create statement's row. */
export interface LockedServerColumns {
  node_id: number;
  server_status: ServerStatus;
  server_name: string;
}

/** The SQL functions that check and write a create on a locked server (prisma/sql/functions). */
type CreateCheckedFunction = 'snapshot_create_checked' | 'backup_create_checked';

/**
 * The subquery that locks a server row (FOR UPDATE) before a create checks its rules: the server, if it
 * is there and of the account `scope` (null: any, for an admin). Its columns are what the checks read.
 */
export function lockServerSql(serverId: number, scope: number | null): Prisma.Sql {
  return Prisma.sql`
    SELECT id, account_id, node_id, status, name FROM servers
    WHERE id = ${serverId}::int AND (${scope}::int IS NULL OR account_id = ${scope}::int)
    FOR UPDATE`;
}

/**
 * One create's statement, of a snapshot or a backup: lock the server (waiting for the lock), then, for
 * the locked row, call the create's VOLATILE function, which reads from a snapshot taken after the lock
 * is held. The row is the locked server's columns and what the function found or did; no row: no such
 * server (for this caller).
 */
export async function createOnLockedServer<Found>(
  prisma: PrismaService,
  fn: CreateCheckedFunction,
  i: ServerCreateInput,
  limit: number,
  idempotencyKeyId: number | null,
): Promise<(LockedServerColumns & Found) | undefined> {
  const [r] = await prisma.$queryRaw<(LockedServerColumns & Found)[]>`
    SELECT v.node_id, v.status::text AS server_status, v.name AS server_name, c.*
    FROM (${lockServerSql(i.serverId, i.scope)}) v
    CROSS JOIN LATERAL ${Prisma.raw(fn)}(v.id, v.account_id, v.status, ${i.name}::varchar,
      ${i.description}::varchar, ${i.tokenId}::int, ${idempotencyKeyId}::int, ${limit}::int,
      p_labels => ${JSON.stringify(i.labels)}::jsonb) c`;
  return r;
}
