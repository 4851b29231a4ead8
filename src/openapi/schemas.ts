/**
 * The problem-details body every error answers with, as the OpenAPI document's `Problem` schema. The
 * codes and the enums of its extra members are the code's own (PROBLEM_CODES, the database enums, the
 * rate limiter's scopes and kinds). Each resource's response classes live beside its view functions
 * (`src/<domain>/<x>.view.ts`).
 */
import { NOT_UNDOABLE_REASONS } from '../restore-undo/safety-copy';
import { ApiProperty, ApiPropertyOptional, ApiSchema } from '@nestjs/swagger';
import { PROBLEM_CODES } from '../common/problem';
import { ActionRef } from '../actions/action.view';
import { BackupStatus, ServerStatus, SnapshotStatus } from '../generated/prisma/enums';
import { ReadinessChecks } from '../health/health.view';
import { RATE_LIMIT_KINDS, RATE_LIMIT_SCOPES } from '../rate-limit/rate-limiter';
import { RESOURCE_NAME_MESSAGE } from '../common/resource-fields';
import { COUNT, ID } from './properties';

// ---------------------------------------------------------------- errors

@ApiSchema({ name: 'FieldError', description: 'One invalid request field.' })
export class FieldErrorSchema {
  @ApiProperty({ example: 'name', description: 'The field (dotted path for nested fields).' })
  field!: string;

  @ApiProperty({ example: RESOURCE_NAME_MESSAGE })
  message!: string;
}

@ApiSchema({
  name: 'Problem',
  description:
    'RFC 9457 problem details, sent as `application/problem+json` for every error. `code` is stable and ' +
    'machine-readable; `detail` is English, or Welsh with `Accept-Language: cy`. Some codes add members: ' +
    '`snapshot_limit_reached` carries `limit`, `used` and `server_id`; `token_limit_reached` carries ' +
    '`limit` and `used`; `rate_limited` carries `limit`, `retry_after`, `limit_scope` and `limit_kind`; ' +
    '`invalid_server_state` carries ' +
    '`server_status` and the `action` that holds the server; `service_unavailable` (`/readyz`) carries `checks`.',
})
export class ProblemSchema {
  @ApiProperty({ format: 'uri', example: 'https://admin.vps.org/problems/snapshot-not-found' })
  type!: string;

  @ApiProperty({ example: 'Not Found', description: 'The HTTP status phrase.' })
  title!: string;

  @ApiProperty({ type: 'integer', format: 'int32', minimum: 400, maximum: 599, example: 404 })
  status!: number;

  @ApiProperty({ example: 'Not Found - Snapshot does not exist' })
  detail!: string;

  @ApiProperty({ enum: PROBLEM_CODES, enumName: 'ProblemCode', example: 'snapshot_not_found' })
  code!: string;

  @ApiProperty({
    example: '5f0c6f1e-3b7e-4c55-9a55-2b4f1f1b8a20',
    description: 'The `X-Request-Id` of the request (the caller’s, when well-formed, or one made up).',
  })
  request_id!: string;

  @ApiPropertyOptional({ type: [FieldErrorSchema], description: 'Validation errors, one per field problem.' })
  errors?: FieldErrorSchema[];

  @ApiPropertyOptional({
    ...COUNT,
    example: 5,
    description:
      '`snapshot_limit_reached`: snapshots per server; `token_limit_reached`: live tokens per account; ' +
      '`rate_limited`: requests (or writes) per minute.',
  })
  limit?: number;

  @ApiPropertyOptional({
    enum: RATE_LIMIT_SCOPES,
    example: 'token',
    description:
      '`rate_limited`: whose limit was hit — the token’s own, or the account’s (all its tokens together).',
  })
  limit_scope?: string;

  @ApiPropertyOptional({
    enum: RATE_LIMIT_KINDS,
    example: 'writes',
    description: '`rate_limited`: what the limit counts — every request, or writes only.',
  })
  limit_kind?: string;

  @ApiPropertyOptional({
    ...COUNT,
    example: 12,
    description: '`rate_limited`: seconds until the window resets (also `Retry-After`).',
  })
  retry_after?: number;

  @ApiPropertyOptional({
    ...COUNT,
    example: 5,
    description: '`snapshot_limit_reached`, `token_limit_reached`.',
  })
  used?: number;

  @ApiPropertyOptional({
    ...ID,
    example: 12345,
    description: '`snapshot_limit_reached`, `invalid_server_state`.',
  })
  server_id?: number;

  @ApiPropertyOptional({
    enum: ServerStatus,
    enumName: 'ServerStatus',
    description: '`invalid_server_state`: the server’s status.',
  })
  server_status?: string;

  @ApiPropertyOptional({
    type: ActionRef,
    nullable: true,
    description: '`invalid_server_state`: the create or restore that holds the server.',
  })
  action?: ActionRef | null;

  @ApiPropertyOptional({
    enum: SnapshotStatus,
    enumName: 'SnapshotStatus',
    description: '`invalid_snapshot_state`: the snapshot’s status.',
  })
  snapshot_status?: string;

  @ApiPropertyOptional({
    enum: BackupStatus,
    enumName: 'BackupStatus',
    description: '`invalid_backup_state`: the backup’s status.',
  })
  backup_status?: string;

  @ApiPropertyOptional({
    type: ReadinessChecks,
    description: '`service_unavailable` from `/readyz`: each dependency, up or down.',
  })
  checks?: ReadinessChecks;

  @ApiPropertyOptional({
    enum: ['scheme', 'address', 'unresolved', ...NOT_UNDOABLE_REASONS],
    description:
      '`webhook_url_not_allowed`: why — not https, an address webhooks may not reach, or a host that does not resolve. ' +
      '`action_not_undoable`: why the restore cannot be undone.',
  })
  reason?: string;

  @ApiPropertyOptional({
    type: 'object',
    properties: {
      position: { type: 'integer', minimum: 0, description: 'Where reading stopped (0 = first character).' },
      error: { type: 'string', description: 'What was expected there.' },
    },
    required: ['position', 'error'],
    description: '`invalid_label_selector`: where and why the selector does not parse.',
  })
  label_selector?: { position: number; error: string };
  @ApiPropertyOptional({ type: 'integer', description: '`action_not_undoable`: the action.' })
  action_id?: number;
}
