/**
 * Undo of a restore. Every restore first takes a `pre_restore` safety copy of the disk it is about to
 * replace — a backup in the node's backup store when one is configured (incremental against the
 * server's latest backup), else a snapshot — kept RESTORE_SAFETY_COPY_HOURS, then removed by the
 * sweeper. The restore action shows it (`safety_copy`); `POST /api/v1/actions/{id}/undo/` restores it,
 * as a restore of that copy, which itself takes a safety copy: undo of an undo puts back what the first
 * restore wrote.
 */
import { ApiProperty, ApiSchema } from '@nestjs/swagger';
import { DATE_TIME, ID } from '../openapi/properties';

export const SAFETY_COPY_TYPES = ['backup', 'snapshot'] as const;
export type SafetyCopyType = (typeof SAFETY_COPY_TYPES)[number];

/** Why a restore cannot be undone (`action_not_undoable`). */
export const NOT_UNDOABLE_REASONS = ['not_a_restore', 'not_succeeded', 'no_safety_copy', 'expired'] as const;
export type NotUndoableReason = (typeof NOT_UNDOABLE_REASONS)[number];

@ApiSchema({
  name: 'SafetyCopy',
  description:
    'The copy of the disk a restore replaced, taken before it: what `POST /api/v1/actions/{id}/undo/` ' +
    'restores until `expires_at`.',
})
export class SafetyCopyView {
  @ApiProperty({
    enum: SAFETY_COPY_TYPES,
    example: 'backup',
    description: 'A backup or a snapshot of kind `pre_restore`.',
  })
  type!: SafetyCopyType;

  @ApiProperty({ ...ID, example: 3102, description: 'The backup’s or snapshot’s id.' })
  id!: number;

  @ApiProperty({ ...DATE_TIME, description: 'When it is removed (and undo is no longer possible).' })
  expires_at!: string;
}

/** A restore action's safety copy as its row and the copy's row hold it. */
export interface SafetyCopyRow {
  type: SafetyCopyType;
  id: number;
  status: string;
  expiresAt: Date;
  deleted: boolean;
}

/**
 * Why the action cannot be undone at `now`, or null when it can: it must be a restore that succeeded,
 * whose safety copy is complete, still there, and not expired.
 */
export function notUndoable(
  a: { kind: string; status: string; safetyCopy: SafetyCopyRow | null },
  now: Date,
): NotUndoableReason | null {
  if (a.kind !== 'restore_snapshot' && a.kind !== 'restore_backup') return 'not_a_restore';
  if (a.status !== 'succeeded') return 'not_succeeded';
  const c = a.safetyCopy;
  if (!c || c.status !== 'completed') return 'no_safety_copy';
  if (c.deleted || c.expiresAt.getTime() <= now.getTime()) return 'expired';
  return null;
}
