import { Injectable } from '@nestjs/common';
import { accountScope, Principal } from '../auth/principal';
import { ProblemException } from '../common/problem';
import { ActionKind, ActionStatus } from '../generated/prisma/client';
import { ReadStatements } from '../prisma/read-statements';
import { actionView } from './action.view';

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
}

/** One action with its server and snapshot or backup, of the account ($2) or of any account (null, admins). */
const ACTION_BY_ID = `SELECT a.id, a.kind, a.status, a.progress, a.error_code, a.error_message,
    a.created_at, a.started_at, a.finished_at, s.id AS server_id, s.name AS server_name,
    sn.id AS snapshot_id, sn.name AS snapshot_name, b.id AS backup_id, b.name AS backup_name
  FROM actions a JOIN servers s ON s.id = a.server_id LEFT JOIN snapshots sn ON sn.id = a.snapshot_id
    LEFT JOIN backups b ON b.id = a.backup_id
  WHERE a.id = $1 AND ($2::int IS NULL OR a.account_id = $2::int)`;

@Injectable()
export class ActionsService {
  constructor(private readonly reads: ReadStatements) {}

  /** What `vps --wait` polls: one prepared statement. */
  async get(me: Principal, id: number) {
    const [a] = await this.reads.rows<ActionSqlRow>('action-by-id', ACTION_BY_ID, [
      id,
      accountScope(me).accountId ?? null,
    ]);
    if (!a) throw new ProblemException({ status: 404, code: 'action_not_found' });
    return actionView({
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
    });
  }
}
