/** What `GET /api/v1/actions/{action_id}/` answers: the response class (the OpenAPI document's source) and its builder. */
import { ApiProperty, ApiPropertyOptional, ApiSchema } from '@nestjs/swagger';
import { apiTime } from '../common/clock';
import { message } from '../common/messages';
import { ActionKind, ActionStatus } from '../generated/prisma/enums';
import { ACTION_ERROR_CODES, ActionErrorCode } from '../jobs/operation-failure';
import { DATE_TIME, ID, PERCENT } from '../openapi/properties';
import { ServerRef } from '../snapshots/snapshot.view';
import { SafetyCopyRow, SafetyCopyView } from '../restore-undo/safety-copy';

@ApiSchema({ name: 'SnapshotRef', description: 'The snapshot an action works on.' })
export class SnapshotRef {
  @ApiProperty({ ...ID, example: 802 })
  id!: number;

  @ApiProperty({ example: 'before-update-snapshot' })
  name!: string;
}

@ApiSchema({ name: 'BackupRef', description: 'The backup an action works on.' })
export class BackupRef {
  @ApiProperty({ ...ID, example: 3101 })
  id!: number;

  @ApiProperty({ example: 'nightly-2025-01-15' })
  name!: string;
}

@ApiSchema({ name: 'ActionError', description: 'Why an action failed.' })
export class ActionError {
  @ApiProperty({ enum: ACTION_ERROR_CODES, enumName: 'ActionErrorCode', example: 'copy_failed' })
  code!: ActionErrorCode;

  @ApiProperty({ type: String, nullable: true, example: message('hypervisor_copy_failed', 'en') })
  message!: string | null;
}

@ApiSchema({ name: 'ProblemAction', description: 'The long operation that holds a server.' })
export class ActionRef {
  @ApiProperty({ ...ID, example: 9001 })
  id!: number;

  @ApiProperty({ enum: ActionKind, enumName: 'ActionKind', example: 'create_snapshot' })
  kind!: ActionKind;

  @ApiProperty({ enum: ActionStatus, enumName: 'ActionStatus', example: 'running' })
  status!: ActionStatus;
}

@ApiSchema({ name: 'ActionSummary', description: 'The long operation running on a server.' })
export class ActionSummary extends ActionRef {
  @ApiProperty({ ...PERCENT, example: 40 })
  progress!: number;
}

@ApiSchema({
  name: 'Action',
  description:
    'A long operation (create, restore or delete of a snapshot or a backup; a power action): `pending` → `running` → ' +
    '`succeeded` | `failed`.',
})
export class ActionView extends ActionSummary {
  @ApiProperty({ type: ServerRef })
  server!: ServerRef;

  @ApiProperty({ type: SnapshotRef, nullable: true })
  snapshot!: SnapshotRef | null;

  @ApiPropertyOptional({ type: BackupRef, nullable: true })
  backup?: BackupRef | null;

  @ApiProperty({ type: ActionError, nullable: true, description: 'Set when `status` is `failed`.' })
  error!: ActionError | null;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ ...DATE_TIME, nullable: true })
  started_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true })
  finished_at!: string | null;

  @ApiPropertyOptional({
    type: SafetyCopyView,
    nullable: true,
    description:
      'A restore’s copy of the disk it replaced, once taken, until it expires or is deleted: ' +
      '`POST /api/v1/actions/{id}/undo/` restores it. Null otherwise.',
  })
  safety_copy?: SafetyCopyView | null;

  @ApiPropertyOptional({
    ...ID,
    nullable: true,
    example: null,
    description:
      'The restore action this restore undoes (it restores that one’s safety copy); null otherwise.',
  })
  undo_of?: number | null;
}

export interface ActionRow {
  id: number;
  kind: ActionKind;
  status: ActionStatus;
  progress: number;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  server: { id: number; name: string };
  snapshot: { id: number; name: string } | null;
  backup: { id: number; name: string } | null;
  safetyCopy: SafetyCopyRow | null;
  undoOf: number | null;
}

export function actionView(a: ActionRow): ActionView {
  return {
    id: a.id,
    kind: a.kind,
    status: a.status,
    progress: a.progress,
    server: a.server,
    snapshot: a.snapshot,
    backup: a.backup,
    // The column holds only codes the runner writes (ActionErrorCode).
    error: a.errorCode ? { code: a.errorCode as ActionErrorCode, message: a.errorMessage } : null,
    created_at: apiTime(a.createdAt),
    started_at: apiTime(a.startedAt),
    finished_at: apiTime(a.finishedAt),
    safety_copy: safetyCopyView(a.safetyCopy),
    undo_of: a.undoOf,
  };
}

/** A safety copy as the action shows it: only a complete one that is still kept. */
function safetyCopyView(c: SafetyCopyRow | null): SafetyCopyView | null {
  if (!c || c.status !== 'completed' || c.deleted) return null;
  return { type: c.type, id: c.id, expires_at: apiTime(c.expiresAt) };
}
