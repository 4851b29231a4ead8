import { ActionKind, ActionStatus, Prisma, ServerStatus } from '../generated/prisma/client';
import { ProblemException } from '../common/problem';

/**
 * "One long operation per server", as snapshots and backups both answer it. The rule itself is checked
 * in SQL (prisma/sql/functions/server_holding_action.sql) under the server's row lock; this is how its
 * finding reads and is refused.
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

type HeldOperation = 'snapshot' | 'backup' | 'restoration';

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
