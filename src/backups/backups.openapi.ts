/**
 * OpenAPI documentation of the backups endpoints, kept apart from the controllers (one line each there)
 * so it can move with the rest of the documentation.
 */
import { applyDecorators } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiHeader,
  ApiOperation,
  ApiQuery,
  ApiResponse,
  ApiTags,
} from '@nestjs/swagger';
import { BEARER } from '../openapi/endpoints';
import { LIST_ORDERINGS } from '../common/list-query';
import { BackupPolicyDto } from './dto/backup-policy.dto';
import { CreateBackupDto, RestoreBackupDto } from './dto/create-backup.dto';

const IDEMPOTENCY = ApiHeader({
  name: 'Idempotency-Key',
  required: false,
  description: 'A retry with the same key returns the first response and starts nothing new (kept 24 h).',
});

const op = (summary: string, description: string, ...more: MethodDecorator[]) =>
  applyDecorators(ApiOperation({ summary, description }), ...more);

export const BackupsDoc = {
  controller: () => applyDecorators(ApiTags('backups'), ApiBearerAuth(BEARER)),
  list: () =>
    op(
      'List backups',
      'Your live backups, newest first; `server_id` and `kind` filter, `ordering` orders, DRF paging.',
      ApiQuery({ name: 'server_id', required: false, type: 'integer' }),
      ApiQuery({ name: 'kind', required: false, enum: ['manual', 'automatic'] }),
      ApiQuery({ name: 'ordering', required: false, enum: [...LIST_ORDERINGS] }),
      ApiQuery({ name: 'page', required: false, type: 'integer' }),
      ApiQuery({ name: 'page_size', required: false, type: 'integer' }),
      ApiResponse({ status: 200, description: 'Backup list retrieved.' }),
    ),
  get: () =>
    op('One backup', 'A live backup of yours.', ApiResponse({ status: 200, description: 'The backup.' })),
  create: () =>
    op(
      'Create a backup',
      'A manual backup of the server to backup storage, incremental from its last completed backup when ' +
        'possible. At most **10 manual backups per server** (400 `backup_limit_reached`); automatic ones do not count.',
      ApiBody({ type: CreateBackupDto }),
      IDEMPOTENCY,
      ApiResponse({ status: 201, description: 'Backup creation started (`action_id` to follow it).' }),
    ),
  restore: () =>
    op(
      'Restore from a backup',
      "Overwrites the disk of the backup's server, or of `server_id` (another server of yours, on any node). " +
        'The server is stopped first and started again if it was running.',
      ApiBody({ type: RestoreBackupDto, required: false }),
      IDEMPOTENCY,
      ApiResponse({ status: 200, description: 'Restoration started.' }),
    ),
  delete: () =>
    op(
      'Delete a backup',
      'Permanently; it cannot be undone.',
      ApiResponse({ status: 204, description: 'Deleted.' }),
    ),
  getPolicy: () =>
    op("A server's backup policy", 'Its automatic backup schedule and retention (off by default).'),
  putPolicy: () =>
    op(
      "Set a server's backup policy",
      'The whole policy; each invalid field is named in `errors`.',
      ApiBody({ type: BackupPolicyDto }),
    ),
};
