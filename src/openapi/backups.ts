/**
 * OpenAPI documentation of the Backups API (contract Part 3): its response schemas, examples and one
 * decorator per handler, in one file so it moves as a unit. Documentation only.
 */
import { applyDecorators } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiExtraModels,
  ApiOperation,
  ApiProperty,
  ApiPropertyOptional,
  ApiQuery,
  ApiResponse,
  ApiSchema,
  ApiTags,
  getSchemaPath,
  OmitType,
} from '@nestjs/swagger';
import { LIST_ORDERINGS } from '../common/list-query';
import { BackupPolicyDto } from '../backups/dto/backup-policy.dto';
import { CreateBackupDto, RestoreBackupDto } from '../backups/dto/create-backup.dto';
import {
  acceptLanguage,
  AUTHED,
  BEARER,
  BODY,
  IDEMPOTENCY_IN_USE,
  idempotencyKey,
  okJson,
  pageQueries,
  pathId,
  problemResponses,
} from './endpoints';
import { RestoreServerRefSchema, SnapshotSchema } from './schemas';

const DATE_TIME = { type: String, format: 'date-time', example: '2025-01-15T18:30:00Z' } as const;
const ID = { type: 'integer', format: 'int32', minimum: 1, maximum: 2_147_483_647 } as const;
const MIB_FIELD = { type: 'integer', format: 'int64', nullable: true } as const;

// ---------------------------------------------------------------- schemas

@ApiSchema({
  name: 'Backup',
  description: 'A backup of a server’s disk in backup storage, apart from its host.',
})
export class BackupSchema extends OmitType(SnapshotSchema, ['status', 'size_mb', 'error'] as const) {
  @ApiProperty({ enum: ['manual', 'automatic'], enumName: 'BackupKind', example: 'manual' })
  kind!: string;

  @ApiProperty({
    enum: ['in_progress', 'completed', 'failed', 'corrupt'],
    enumName: 'BackupStatus',
    example: 'completed',
    description:
      'A completed backup becomes `corrupt` when verification finds damage (it cannot be restored).',
  })
  status!: string;

  @ApiProperty({
    ...MIB_FIELD,
    example: 5120,
    description: 'Disk data the backup holds, in MiB (rounded up); null until completed.',
  })
  size_mb!: number | null;

  @ApiProperty({
    ...MIB_FIELD,
    example: 312,
    description: 'What this backup added to backup storage, in MiB; null until completed.',
  })
  stored_mb!: number | null;

  @ApiProperty({
    ...DATE_TIME,
    nullable: true,
    description: 'Automatic backups: when retention removes it; null for manual ones.',
  })
  expires_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, description: 'When its chunks were last verified.' })
  verified_at!: string | null;

  @ApiProperty({
    type: String,
    enum: ['full', 'incremental'],
    nullable: true,
    example: 'incremental',
    description:
      'Whether it read the whole disk or only what changed since the previous backup; null until completed.',
  })
  mode!: string | null;

  @ApiProperty({
    type: String,
    nullable: true,
    example: null,
    description:
      'Why a full read was forced (`no_previous_backup`, `checkpoint_missing`, `bitmap_inconsistent`).',
  })
  mode_reason!: string | null;

  @ApiPropertyOptional({
    type: String,
    nullable: true,
    example: null,
    description: 'Why a `failed` backup failed.',
  })
  error?: string | null;
}

@ApiSchema({ name: 'BackupList', description: 'A page of backups, newest first by default.' })
export class BackupListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1 })
  count!: number;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  next!: string | null;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  previous!: string | null;

  @ApiProperty({ type: [BackupSchema] })
  results!: BackupSchema[];
}

@ApiSchema({ name: 'BackupCreated', description: 'The new backup, being created.' })
export class BackupCreatedSchema extends BackupSchema {
  @ApiProperty({
    example:
      'Backup is being created. This may take a few minutes depending on how much has changed since the last backup.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ ...ID, example: 9101, description: 'The action to poll at `/api/v1/actions/{action_id}/`.' })
  action_id!: number;
}

@ApiSchema({ name: 'RestoreBackupRef', description: 'The backup being restored.' })
export class RestoreBackupRefSchema {
  @ApiProperty({ ...ID, example: 3101 })
  id!: number;

  @ApiProperty({ example: 'nightly-2025-01-15' })
  name!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

@ApiSchema({
  name: 'BackupRestoreStarted',
  description: 'The restoration has started (Part 1’s restore shape).',
})
export class BackupRestoreStartedSchema {
  @ApiProperty({ enum: ['success'], example: 'success' })
  status!: string;

  @ApiProperty({
    example: 'Server is being restored from backup. This may take a few minutes.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ type: RestoreBackupRefSchema })
  backup!: RestoreBackupRefSchema;

  @ApiProperty({ type: RestoreServerRefSchema, description: 'The server being restored (the target).' })
  server!: RestoreServerRefSchema;

  @ApiProperty({ ...ID, example: 9102 })
  action_id!: number;
}

// ---------------------------------------------------------------- examples

const BACKUP_EXAMPLE = {
  id: 3101,
  server: { id: 12345, name: 'web-server-01' },
  name: 'nightly-2025-01-15',
  kind: 'manual',
  status: 'completed',
  size_mb: 5120,
  stored_mb: 312,
  created_at: '2025-01-15T02:00:00Z',
  description: '',
  progress: 100,
  consistency: 'quiesced',
  completed_at: '2025-01-15T02:04:10Z',
  expires_at: null,
  verified_at: null,
  mode: 'incremental',
  mode_reason: null,
  error: null,
};

const POLICY_EXAMPLE = {
  enabled: true,
  schedule: { frequency: 'weekly', weekday: 0, hour: 2 },
  retention: { daily: 7, weekly: 4, monthly: 0 },
};

const BACKUP_NOT_FOUND = {
  description: 'Not Found - Backup does not exist',
  examples: ['backup_not_found', 'backup_not_found_cy'] as const,
};

// ---------------------------------------------------------------- endpoints

export const BackupsDoc = {
  backups: () => applyDecorators(ApiTags('backups'), ApiBearerAuth(BEARER)),
  list: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'listBackups',
        summary: 'List backups',
        description: 'Your live backups across your servers, newest first. Deleted backups never appear.',
      }),
      ApiQuery({ name: 'server_id', required: false, schema: { ...ID, example: 12345 } }),
      ApiQuery({ name: 'kind', required: false, schema: { type: 'string', enum: ['manual', 'automatic'] } }),
      pageQueries(),
      ApiQuery({
        name: 'ordering',
        required: false,
        description: 'Sort order; `-` means descending.',
        schema: { type: 'string', enum: [...LIST_ORDERINGS], default: '-created_at' },
      }),
      okJson(BackupListSchema, 'Backup list retrieved', 200, {
        example: { count: 1, next: null, previous: null, results: [BACKUP_EXAMPLE] },
      }),
      problemResponses({
        400: { examples: ['validation_failed'] },
        404: {
          description: 'A page past the last one, or a server not yours',
          examples: ['page_not_found', 'server_not_found'],
        },
        ...AUTHED,
      }),
    ),
  get: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'getBackup',
        summary: 'Show one backup',
        description: 'One backup of yours.',
      }),
      pathId('Backup id.'),
      okJson(BackupSchema, 'The backup', 200, { example: BACKUP_EXAMPLE }),
      problemResponses({ 404: { ...BACKUP_NOT_FOUND, examples: [...BACKUP_NOT_FOUND.examples] }, ...AUTHED }),
    ),
  create: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'createBackup',
        summary: 'Create a backup',
        description:
          'Back a server up to backup storage, which does not share a failure with its host. Only what changed ' +
          'since its last completed backup is read when possible (`mode`). Poll the returned `action_id`.\n\n' +
          '**Note:** at most **10 manual backups per server**; automatic ones do not count. Only one create or ' +
          'restore (of a snapshot or a backup) runs on a server at a time.',
      }),
      acceptLanguage(),
      idempotencyKey(),
      ApiExtraModels(CreateBackupDto),
      ApiBody({ required: true, schema: { $ref: getSchemaPath(CreateBackupDto) } }),
      okJson(BackupCreatedSchema, 'Backup creation started', 201),
      problemResponses({
        400: {
          description: 'Invalid parameters, or the backup limit is reached, or the server is busy',
          examples: [
            'validation_failed',
            'malformed_json',
            'backup_limit_reached',
            'invalid_server_state',
            'idempotency_key_reused',
          ],
        },
        404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
        409: IDEMPOTENCY_IN_USE,
        ...BODY,
        ...AUTHED,
      }),
    ),
  restore: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'restoreBackup',
        summary: 'Restore from a backup',
        description:
          "Overwrite a server's disk with a backup: its own server, or `server_id`, another server of yours on " +
          'any node. **This cannot be undone.** The server is stopped first and started again afterwards if it ' +
          'was running. The backup must be `completed`; poll the returned `action_id`.',
      }),
      pathId('Backup id.'),
      acceptLanguage(),
      idempotencyKey(),
      ApiExtraModels(RestoreBackupDto),
      ApiBody({ required: false, schema: { $ref: getSchemaPath(RestoreBackupDto) } }),
      okJson(BackupRestoreStartedSchema, 'Restoration started', 200),
      problemResponses({
        400: {
          description: 'The target is busy, or the backup cannot be restored',
          examples: [
            'validation_failed',
            'invalid_server_state',
            'invalid_backup_state',
            'idempotency_key_reused',
          ],
        },
        404: {
          description: 'The backup, or the target server, is not yours',
          examples: ['backup_not_found', 'server_not_found'],
        },
        409: IDEMPOTENCY_IN_USE,
        ...BODY,
        ...AUTHED,
      }),
    ),
  delete: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'deleteBackup',
        summary: 'Delete a backup',
        description:
          'Permanently delete a backup; it leaves every list at once and frees its slot, and its data is released ' +
          'in the background. A backup still being created, or being restored from, cannot be deleted.',
      }),
      pathId('Backup id.'),
      ApiResponse({ status: 204, description: 'Backup deleted' }),
      problemResponses({
        400: { description: 'The backup is busy', examples: ['invalid_backup_state'] },
        404: { ...BACKUP_NOT_FOUND, examples: [...BACKUP_NOT_FOUND.examples] },
        ...AUTHED,
      }),
    ),
  getPolicy: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'getBackupPolicy',
        summary: "A server's backup policy",
        description: 'Its automatic backups: schedule (a 4-hour UTC window) and retention. Off by default.',
      }),
      pathId('Server id.'),
      okJson(BackupPolicyDto, 'The policy', 200, { example: POLICY_EXAMPLE }),
      problemResponses({
        404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
        ...AUTHED,
      }),
    ),
  putPolicy: () =>
    applyDecorators(
      ApiOperation({
        operationId: 'putBackupPolicy',
        summary: "Set a server's backup policy",
        description: 'The whole policy; every invalid field is named in `errors` (e.g. `schedule.hour`).',
      }),
      pathId('Server id.'),
      ApiBody({ required: true, type: BackupPolicyDto, examples: { weekly: { value: POLICY_EXAMPLE } } }),
      okJson(BackupPolicyDto, 'The policy as stored', 200, { example: POLICY_EXAMPLE }),
      problemResponses({
        400: { examples: ['validation_failed', 'malformed_json'] },
        404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
        ...BODY,
        ...AUTHED,
      }),
    ),
};
