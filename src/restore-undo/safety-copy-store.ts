import { Injectable } from '@nestjs/common';
import { PrismaService } from '../prisma/prisma.service';
import { SafetyCopyType } from './safety-copy';

/** A restore's safety copy as its job sees it. */
export interface OpenSafetyCopy {
  type: SafetyCopyType;
  id: number;
  status: string;
  /** The action's (and the copy's) account. */
  accountId: number;
}

/**
 * Opens the safety copy of restore action $1: the one linked to it already (an earlier attempt's), else
 * a new `pre_restore` row of type $2 (a snapshot or a backup of the action's server) expiring at $3,
 * linked in the same statement. The action row is locked first, so two attempts cannot open two.
 */
const OPEN = `
  WITH a AS (
    SELECT id, account_id, server_id, safety_snapshot_id, safety_backup_id FROM actions
    WHERE id = $1::int AND kind IN ('restore_snapshot', 'restore_backup') FOR UPDATE
  ), fresh AS (
    SELECT * FROM a WHERE safety_snapshot_id IS NULL AND safety_backup_id IS NULL
  ), sn AS (
    INSERT INTO snapshots (account_id, server_id, name, description, kind, expires_at)
    SELECT account_id, server_id, 'pre-restore-' || id, 'Safety copy taken before restore action ' || id,
           'pre_restore', $3::timestamptz
    FROM fresh WHERE $2::text = 'snapshot'
    RETURNING id
  ), bk AS (
    INSERT INTO backups (account_id, server_id, name, description, kind, expires_at)
    SELECT account_id, server_id, 'pre-restore-' || id, 'Safety copy taken before restore action ' || id,
           'pre_restore', $3::timestamptz
    FROM fresh WHERE $2::text = 'backup'
    RETURNING id
  ), link AS (
    UPDATE actions SET safety_snapshot_id = (SELECT id FROM sn), safety_backup_id = (SELECT id FROM bk)
    WHERE id = (SELECT id FROM fresh)
    RETURNING safety_snapshot_id, safety_backup_id
  )
  SELECT a.account_id, COALESCE(l.safety_snapshot_id, a.safety_snapshot_id) AS snapshot_id,
         COALESCE(l.safety_backup_id, a.safety_backup_id) AS backup_id,
         (SELECT status::text FROM snapshots WHERE id = a.safety_snapshot_id) AS snapshot_status,
         (SELECT status::text FROM backups WHERE id = a.safety_backup_id) AS backup_status
  FROM a LEFT JOIN link l ON true`;

/**
 * The safety copies' rows, written by the restore job that takes them (SafetyCopyTaker). The copy's
 * data itself goes through the driver (a snapshot) or the backup data path (a backup).
 */
@Injectable()
export class SafetyCopyStore {
  constructor(private readonly prisma: PrismaService) {}

  /** The restore action's safety copy, opened now if it has none (see OPEN); null: no such restore. */
  async open(actionId: number, type: SafetyCopyType, expiresAt: Date): Promise<OpenSafetyCopy | null> {
    const [r] = await this.prisma.$queryRawUnsafe<
      {
        account_id: number;
        snapshot_id: number | null;
        backup_id: number | null;
        snapshot_status: string | null;
        backup_status: string | null;
      }[]
    >(OPEN, actionId, type, expiresAt);
    if (!r) return null;
    const accountId = r.account_id;
    if (r.snapshot_id !== null)
      return { type: 'snapshot', id: r.snapshot_id, status: r.snapshot_status ?? 'in_progress', accountId };
    if (r.backup_id !== null)
      return { type: 'backup', id: r.backup_id, status: r.backup_status ?? 'in_progress', accountId };
    return null;
  }

  /** The safety snapshot holds the disk: completed (also after an earlier attempt marked it failed). */
  async snapshotTaken(
    id: number,
    taken: { sizeBytes: number; consistency: string },
    at: Date,
  ): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE snapshots SET status = 'completed', progress = 100, size_bytes = ${taken.sizeBytes}::bigint,
             consistency = ${taken.consistency}::snapshot_consistency, error = NULL, completed_at = ${at}
      WHERE id = ${id}::int AND deleted_at IS NULL`;
  }

  /** The safety backup holds the disk, as the data path wrote it. */
  async backupTaken(
    id: number,
    w: {
      sizeBytes: number;
      storedBytes: number;
      mode: string;
      modeReason: string | null;
      consistency: string;
      checkpoint: string;
    },
    at: Date,
  ): Promise<void> {
    await this.prisma.$executeRaw`
      UPDATE backups SET status = 'completed', progress = 100, size_bytes = ${w.sizeBytes}::bigint,
             stored_bytes = ${w.storedBytes}::bigint, mode = ${w.mode}::backup_mode,
             mode_reason = ${w.modeReason}::varchar, consistency = ${w.consistency}::snapshot_consistency,
             checkpoint = ${w.checkpoint}::varchar, error_code = NULL, error = NULL, completed_at = ${at}
      WHERE id = ${id}::int AND deleted_at IS NULL`;
  }

  /** The copy could not be taken: it holds nothing (a later attempt may take it again). */
  async failed(copy: { type: SafetyCopyType; id: number }, error: string, at: Date): Promise<void> {
    if (copy.type === 'snapshot') {
      await this.prisma.$executeRaw`
        UPDATE snapshots SET status = 'failed', error = ${error.slice(0, 1000)}::varchar, completed_at = ${at}
        WHERE id = ${copy.id}::int`;
    } else {
      await this.prisma.$executeRaw`
        UPDATE backups SET status = 'failed', error_code = 'safety_copy_failed',
               error = ${error.slice(0, 1000)}::varchar, completed_at = ${at}
        WHERE id = ${copy.id}::int`;
    }
  }
}
