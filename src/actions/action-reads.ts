import { Injectable } from '@nestjs/common';
import { ActionKind, ActionStatus } from '../generated/prisma/client';
import { ReadStatements } from '../prisma/read-statements';
import { SafetyCopyRow, SafetyCopyType } from '../restore-undo/safety-copy';
import { ActionRow } from './action.view';

interface ActionSqlRow {
  id: number;
  kind: ActionKind;
  status: ActionStatus;
  progress: number;
  error_code: string | null;
  error_message: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  server_id: number;
  server_name: string;
  snapshot_id: number | null;
  snapshot_name: string | null;
  backup_id: number | null;
  backup_name: string | null;
  copy_type: SafetyCopyType | null;
  copy_id: number | null;
  copy_status: string | null;
  copy_expires_at: Date | null;
  copy_deleted: boolean | null;
  undo_of: number | null;
}

/**
 * One action with its server, its snapshot or backup, its safety copy (a restore's) and the restore it
 * undoes (a restore of another restore's safety copy), of the account ($2) or of any account (null).
 */
const ACTION_BY_ID = `SELECT a.id, a.kind, a.status, a.progress, a.error_code, a.error_message,
    a.created_at, a.started_at, a.finished_at, s.id AS server_id, s.name AS server_name,
    sn.id AS snapshot_id, sn.name AS snapshot_name, b.id AS backup_id, b.name AS backup_name,
    c.type AS copy_type, c.id AS copy_id, c.status AS copy_status, c.expires_at AS copy_expires_at,
    c.deleted AS copy_deleted,
    (SELECT r.id FROM actions r
     WHERE (a.kind = 'restore_snapshot' AND r.safety_snapshot_id = a.snapshot_id)
        OR (a.kind = 'restore_backup' AND r.safety_backup_id = a.backup_id)) AS undo_of
  FROM actions a JOIN servers s ON s.id = a.server_id LEFT JOIN snapshots sn ON sn.id = a.snapshot_id
    LEFT JOIN backups b ON b.id = a.backup_id
    LEFT JOIN LATERAL (
      SELECT 'snapshot' AS type, x.id, x.status::text AS status, x.expires_at, x.deleted_at IS NOT NULL AS deleted
      FROM snapshots x WHERE x.id = a.safety_snapshot_id
      UNION ALL
      SELECT 'backup', y.id, y.status::text, y.expires_at, y.deleted_at IS NOT NULL
      FROM backups y WHERE y.id = a.safety_backup_id
    ) c ON true
  WHERE a.id = $1 AND ($2::int IS NULL OR a.account_id = $2::int)`;

/** How every endpoint and event body reads an action (one prepared statement). */
@Injectable()
export class ActionReads {
  constructor(private readonly reads: ReadStatements) {}

  /** The action, if it is there for `accountId` (null: any account). */
  async byId(id: number, accountId: number | null): Promise<ActionRow | null> {
    const [a] = await this.reads.rows<ActionSqlRow>('action-by-id', ACTION_BY_ID, [id, accountId]);
    if (!a) return null;
    const safetyCopy: SafetyCopyRow | null =
      a.copy_id === null
        ? null
        : {
            type: a.copy_type!,
            id: a.copy_id,
            status: a.copy_status!,
            expiresAt: a.copy_expires_at!,
            deleted: a.copy_deleted!,
          };
    return {
      id: a.id,
      kind: a.kind,
      status: a.status,
      progress: a.progress,
      errorCode: a.error_code,
      errorMessage: a.error_message,
      createdAt: a.created_at,
      startedAt: a.started_at,
      finishedAt: a.finished_at,
      server: { id: a.server_id, name: a.server_name },
      snapshot: a.snapshot_id === null ? null : { id: a.snapshot_id, name: a.snapshot_name! },
      backup: a.backup_id === null ? null : { id: a.backup_id, name: a.backup_name! },
      safetyCopy,
      undoOf: a.undo_of,
    };
  }
}
