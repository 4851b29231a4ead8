/**
 * OpenAPI documentation of every endpoint, as one decorator per controller class and one per handler,
 * so that the controllers carry a single line of documentation each and this file holds the prose,
 * parameters, responses and examples. Documentation only: nothing here changes what a handler does.
 */
import { applyDecorators, Type } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiExtraModels,
  ApiHeader,
  ApiOperation,
  ApiParam,
  ApiResponse,
  ApiTags,
  getSchemaPath,
} from '@nestjs/swagger';
import { CreateTokenDto } from '../auth/dto/create-token.dto';
import { CreateNodeDto, UpdateNodeDto } from '../nodes/dto/create-node.dto';
import { CreateServerDto } from '../servers/dto/create-server.dto';
import { PowerActionDto } from '../servers/power/dto/power-action.dto';
import { CreateSnapshotDto } from '../snapshots/dto/create-snapshot.dto';
import {
  ACTION_EXAMPLES,
  FULL_CREATE_EXAMPLE,
  FULL_LIST_EXAMPLE,
  FULL_RESTORE_EXAMPLE,
  PROBLEM_EXAMPLES,
  ProblemExampleKey,
  PUBLISHED_CREATE_EXAMPLE,
  PUBLISHED_CREATE_REQUEST,
  PUBLISHED_LIST_EXAMPLE,
  PUBLISHED_RESTORE_EXAMPLE,
  SERVER_EXAMPLE,
  SNAPSHOT_EXAMPLE,
  BACKUP_EXAMPLE,
  BACKUP_POLICY_EXAMPLE,
  POWER_ACTION_EXAMPLE,
} from './examples';
import { ActionView } from '../actions/action.view';
import { AuditEventPage } from '../audit/audit-event.view';
import { NodePage, NodeView } from '../nodes/node.view';
import { HealthView, ReadinessView } from '../health/health.view';
import { AdminServerView, ServerPage, ServerView } from '../servers/server.view';
import {
  RestoreStartedView,
  SnapshotCreatedView,
  SnapshotPage,
  SnapshotView,
} from '../snapshots/snapshot.view';
import { TokenCreatedView, TokenPage } from '../auth/token.view';
import {
  BackupCreatedView,
  BackupPage,
  BackupRestoreStartedView,
  BackupVerifyStartedView,
  BackupView,
} from '../backups/backup.view';
import { BackupPolicyDto } from '../backups/dto/backup-policy.dto';
import { CreateBackupDto, RestoreBackupDto } from '../backups/dto/create-backup.dto';
import { ProblemSchema } from './schemas';
import { ChangeProtectionDto } from '../common/delete-protection';
import { UpdateLabelsDto } from '../labels/update-labels.dto';
import { CreateWebhookDto } from '../events/dto/create-webhook.dto';
import { EventPage } from '../events/event.view';
import { WebhookCreatedView, WebhookPage, WebhookView } from '../events/webhook.view';

export const BEARER = 'bearer';
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

const STATUS_TEXT: Record<number, string> = {
  400: 'Invalid request',
  401: 'Unauthorized - Invalid or missing authentication token',
  403: 'The token lacks the scope this needs',
  404: 'Not found',
  409: 'Conflict',
  413: 'The request body is too large',
  414: 'The URL is longer than the API reads',
  415: 'The request body is not JSON (UTF-8, a short Content-Type)',
  429: 'Too many requests for this token',
  500: 'A fault on our side',
  503: 'A dependency is down',
};

/** Rate-limit headers: on every answer to a token, and `Retry-After` on 429. */
const RATE_LIMIT_HEADERS = {
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } },
  'RateLimit-Limit': { description: 'Requests allowed in the window.', schema: { type: 'integer' } },
  'RateLimit-Remaining': { description: 'Requests left in the window.', schema: { type: 'integer' } },
  'RateLimit-Reset': { description: 'Seconds until the window resets.', schema: { type: 'integer' } },
};

type Errors = Partial<Record<number, { description?: string; examples: ProblemExampleKey[] }>>;

/** Problem-details responses (`application/problem+json`), one per status, with named examples. */
function problemResponses(errors: Errors): MethodDecorator {
  const decorators = Object.entries(errors).map(([status, spec]) =>
    ApiResponse({
      status: Number(status),
      description: spec!.description ?? STATUS_TEXT[Number(status)] ?? 'Error',
      ...(Number(status) === 429 ? { headers: RATE_LIMIT_HEADERS } : {}),
      content: {
        [PROBLEM_MEDIA_TYPE]: {
          schema: { $ref: getSchemaPath(ProblemSchema) },
          examples: Object.fromEntries(spec!.examples.map((k) => [k, PROBLEM_EXAMPLES[k]])),
        },
      },
    }),
  );
  return applyDecorators(...decorators);
}

/** The errors every authenticated endpoint can answer with. */
const AUTHED: Errors = {
  401: { examples: ['unauthorized', 'unauthorized_cy', 'unauthorized_token_outside_header'] },
  403: { examples: ['forbidden'] },
  414: { examples: ['uri_too_long'] },
  429: { examples: ['rate_limited', 'rate_limited_account'] },
  500: { examples: ['internal_error'] },
};
const ADMIN: Errors = {
  ...AUTHED,
  403: { description: 'Not an admin token', examples: ['forbidden_admin'] },
};
const IDEMPOTENCY_IN_USE = {
  description: 'A request with the same Idempotency-Key is still being processed',
  examples: ['idempotency_key_in_use'] as ProblemExampleKey[],
};
/** A JSON request body can fail to parse, be too large, or not be JSON. */
const BODY: Errors = {
  413: { examples: ['payload_too_large'] },
  415: { examples: ['unsupported_media_type'] },
};

const BACKUP_NOT_FOUND = {
  description: 'Not Found - Backup does not exist',
  examples: ['backup_not_found', 'backup_not_found_cy'] as ProblemExampleKey[],
};

/** The problems of an operation on a server that holds it (a create, a power action): `more` are its own 400s. */
const serverOperationProblems = (description: string, more: ProblemExampleKey[] = []): Errors => ({
  400: {
    description,
    examples: [
      'validation_failed',
      'malformed_json',
      ...more,
      'invalid_server_state',
      'idempotency_key_reused',
    ],
  },
  404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
  409: IDEMPOTENCY_IN_USE,
  ...BODY,
  ...AUTHED,
});

/** The problems of creating a snapshot or a backup of a server (they share every rule but the limit). */
const createProblems = (kind: 'snapshot' | 'backup'): Errors =>
  serverOperationProblems(`Invalid parameters, or the ${kind} limit is reached, or the server is busy`, [
    `${kind}_limit_reached`,
  ]);

const okJson = (type: Type<unknown>, description: string, status = 200, extra: object = {}) =>
  ApiResponse({ status, description, type, ...extra });

/** `POST /{snapshots|backups}/{id}/actions/change_protection/`: the same operation on either. */
const changeProtection = (
  kind: 'snapshot' | 'backup',
  view: Type<unknown>,
  example: object,
  notFound: { description: string; examples: ProblemExampleKey[] },
) =>
  applyDecorators(
    ApiOperation({
      operationId: kind === 'snapshot' ? 'changeSnapshotProtection' : 'changeBackupProtection',
      summary: `Protect a ${kind} against deletion, or lift the protection`,
      description:
        `While \`protection.delete\` is true, every delete of the ${kind} is refused with 400 \`protected\`` +
        (kind === 'backup' ? ' (retention skips it too)' : '') +
        `. Takes effect at once: the answer is the ${kind} as it now is, and the event ` +
        `\`${kind}.protection_changed\` reports it. Setting the value it already has changes nothing ` +
        `(and records no event). A ${kind} being deleted is already gone (404).`,
    }),
    pathId(`${kind === 'snapshot' ? 'Snapshot' : 'Backup'} id.`),
    idempotencyKey(),
    ApiExtraModels(ChangeProtectionDto),
    ApiBody({
      required: true,
      schema: { $ref: getSchemaPath(ChangeProtectionDto) },
      examples: { protect: { value: { delete: true } }, unprotect: { value: { delete: false } } },
    }),
    okJson(view, `The ${kind}, with its protection as now set`, 200, {
      example: { ...example, protection: { delete: true } },
    }),
    problemResponses({
      400: {
        description: 'Invalid body',
        examples: ['validation_failed', 'malformed_json', 'idempotency_key_reused'],
      },
      404: notFound,
      409: IDEMPOTENCY_IN_USE,
      ...BODY,
      ...AUTHED,
    }),
  );

const pathId = (description: string) =>
  ApiParam({
    name: 'id',
    description,
    schema: { type: 'integer', format: 'int32', minimum: 1, maximum: 2_147_483_647 },
    example: 801,
  });

const acceptLanguage = () =>
  ApiHeader({
    name: 'Accept-Language',
    required: false,
    description: '`cy` for the Welsh `message` and error `detail`; English otherwise.',
    schema: { type: 'string', example: 'cy' },
  });

const idempotencyKey = () =>
  ApiHeader({
    name: 'Idempotency-Key',
    required: false,
    description:
      'Makes a retry safe: a request repeated with the same key (kept at least 24 h) returns the first ' +
      'response and starts nothing new; the same key with a different request is 400 `idempotency_key_reused`.',
    schema: { type: 'string', maxLength: 255, example: '3f6c1c9e-7d1f-4c4b-9a57-0f4a2d8c9b11' },
  });

/** `PATCH /api/v1/<resource>/{id}/`: replaces the resource's labels. */
const labelsUpdate = (
  kind: 'snapshot' | 'backup' | 'server',
  view: Type<unknown>,
  notFound: ProblemExampleKey,
) =>
  applyDecorators(
    ApiOperation({
      operationId: `update${kind[0].toUpperCase()}${kind.slice(1)}`,
      summary: `Change a ${kind}'s labels`,
      description:
        `Replaces the ${kind}'s labels with \`labels\` (the whole map: a key left out is removed; \`{}\` ` +
        `removes them all). Recorded in the audit log (\`${kind}.update\`).`,
    }),
    pathId(`${kind[0].toUpperCase()}${kind.slice(1)} id.`),
    ApiExtraModels(UpdateLabelsDto),
    ApiBody({ required: true, schema: { $ref: getSchemaPath(UpdateLabelsDto) } }),
    okJson(view, `The ${kind}, with its new labels`),
    problemResponses({
      400: { examples: ['validation_failed', 'malformed_json'] },
      404: {
        description: `Not Found - ${kind[0].toUpperCase()}${kind.slice(1)} does not exist`,
        examples: [notFound],
      },
      ...BODY,
      ...AUTHED,
    }),
  );
/** What every restore's description says of its undo (src/restore-undo). */
const UNDO_NOTE =
  'A safety copy of the disk is taken first (the action’s `safety_copy`): `POST /api/v1/actions/{action_id}/undo/` ' +
  'puts it back until it expires.';

/** Class decorators: the tag, and the bearer token for every operation of a non-public controller. */
export const ApiDocs = {
  snapshots: () => applyDecorators(ApiTags('snapshots'), ApiBearerAuth(BEARER)),
  backups: () => applyDecorators(ApiTags('backups'), ApiBearerAuth(BEARER)),
  servers: () => applyDecorators(ApiTags('servers'), ApiBearerAuth(BEARER)),
  actions: () => applyDecorators(ApiTags('actions'), ApiBearerAuth(BEARER)),
  tokens: () => applyDecorators(ApiTags('tokens'), ApiBearerAuth(BEARER)),
  admin: () => applyDecorators(ApiTags('admin'), ApiBearerAuth(BEARER)),
  health: () => applyDecorators(ApiTags('health')),
  webhooks: () => applyDecorators(ApiTags('webhooks'), ApiBearerAuth(BEARER)),
  events: () => applyDecorators(ApiTags('events'), ApiBearerAuth(BEARER)),
};

/** Method decorators, by controller and handler. */
export const ApiDoc = {
  snapshots: {
    changeProtection: () =>
      changeProtection('snapshot', SnapshotView, SNAPSHOT_EXAMPLE, {
        description: 'Not Found - Snapshot does not exist',
        examples: ['snapshot_not_found', 'snapshot_not_found_cy'],
      }),
    update: () => labelsUpdate('snapshot', SnapshotView, 'snapshot_not_found'),
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listSnapshots',
          summary: 'List all snapshots',
          description:
            'Retrieve a list of all snapshots across your servers, newest first. Deleted snapshots never appear.',
        }),
        okJson(SnapshotPage, 'Snapshot list retrieved', 200, {
          examples: {
            published: { summary: 'As published', value: PUBLISHED_LIST_EXAMPLE },
            full: { summary: 'With this service’s additions', value: FULL_LIST_EXAMPLE },
          },
        }),
        problemResponses({
          400: { examples: ['validation_failed_query', 'invalid_label_selector'] },
          404: { description: 'A page past the last one', examples: ['page_not_found'] },
          ...AUTHED,
        }),
      ),
    get: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'getSnapshot',
          summary: 'Show one snapshot',
          description: 'One snapshot of yours, with its progress while it is being created.',
        }),
        pathId('Snapshot id.'),
        okJson(SnapshotView, 'The snapshot', 200, { example: SNAPSHOT_EXAMPLE }),
        problemResponses({
          404: {
            description: 'Not Found - Snapshot does not exist',
            examples: ['snapshot_not_found', 'snapshot_not_found_cy'],
          },
          ...AUTHED,
        }),
      ),
    create: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'createSnapshot',
          summary: 'Create a snapshot',
          description:
            "Create a snapshot of a server's current state: a point-in-time copy of the entire server. " +
            'The copy runs in the background; poll the returned `action_id` at `/api/v1/actions/{action_id}/` ' +
            'or the snapshot itself.\n\n' +
            '**Note:** at most **5 snapshots per server** (`in_progress` and `completed` ones count). Creating ' +
            'a snapshot while the server runs may leave the filesystem inconsistent; for best results stop the ' +
            'server first (`consistency` tells how the copy was taken). Only one create or restore runs on a ' +
            'server at a time.',
        }),
        acceptLanguage(),
        idempotencyKey(),
        ApiExtraModels(CreateSnapshotDto),
        ApiBody({
          required: true,
          schema: { $ref: getSchemaPath(CreateSnapshotDto) },
          examples: { published: { summary: 'As published', value: PUBLISHED_CREATE_REQUEST } },
        }),
        okJson(SnapshotCreatedView, 'Snapshot creation started', 201, {
          examples: {
            published: { summary: 'As published', value: PUBLISHED_CREATE_EXAMPLE },
            full: { summary: 'With this service’s additions', value: FULL_CREATE_EXAMPLE },
          },
        }),
        problemResponses(createProblems('snapshot')),
      ),
    restore: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'restoreSnapshot',
          summary: 'Restore from a snapshot',
          description:
            'Restore a server to the state captured in a snapshot. This overwrites all current data on the ' +
            'server.\n\n**Warning:** restoring overwrites all current data. ' +
            UNDO_NOTE +
            ' The server is stopped automatically before restoration begins (and started again afterwards if it ' +
            'was running). The snapshot must be `completed`; poll the returned `action_id`.',
        }),
        pathId('Snapshot id.'),
        acceptLanguage(),
        idempotencyKey(),
        okJson(RestoreStartedView, 'Restoration started', 200, {
          examples: {
            published: { summary: 'As published', value: PUBLISHED_RESTORE_EXAMPLE },
            full: { summary: 'With this service’s additions', value: FULL_RESTORE_EXAMPLE },
          },
        }),
        problemResponses({
          400: {
            description: 'The server is not in a valid state for restoration',
            examples: ['invalid_server_state', 'invalid_snapshot_state', 'idempotency_key_reused'],
          },
          404: {
            description: 'Not Found - Snapshot does not exist',
            examples: ['snapshot_not_found', 'snapshot_not_found_cy'],
          },
          409: IDEMPOTENCY_IN_USE,
          ...AUTHED,
        }),
      ),
    delete: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'deleteSnapshot',
          summary: 'Delete a snapshot',
          description:
            'Permanently delete a snapshot; it cannot be undone. It leaves every list at once and frees its ' +
            'slot; its storage is removed in the background. A snapshot still being created, or being ' +
            'restored from, cannot be deleted; nor can a protected one (`protection.delete`).',
        }),
        pathId('Snapshot id.'),
        ApiResponse({ status: 204, description: 'Snapshot deleted' }),
        problemResponses({
          400: {
            description: 'The snapshot is busy or protected',
            examples: ['invalid_snapshot_state', 'snapshot_protected', 'snapshot_protected_cy'],
          },
          404: {
            description: 'Not Found - Snapshot does not exist',
            examples: ['snapshot_not_found', 'snapshot_not_found_cy'],
          },
          ...AUTHED,
        }),
      ),
  },
  backups: {
    changeProtection: () => changeProtection('backup', BackupView, BACKUP_EXAMPLE, BACKUP_NOT_FOUND),
    update: () => labelsUpdate('backup', BackupView, 'backup_not_found'),
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listBackups',
          summary: 'List backups',
          description: 'Your live backups across your servers, newest first. Deleted backups never appear.',
        }),
        okJson(BackupPage, 'Backup list retrieved', 200, {
          example: { count: 1, next: null, previous: null, results: [BACKUP_EXAMPLE] },
        }),
        problemResponses({
          400: { examples: ['validation_failed_query', 'invalid_label_selector'] },
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
        okJson(BackupView, 'The backup', 200, { example: BACKUP_EXAMPLE }),
        problemResponses({ 404: BACKUP_NOT_FOUND, ...AUTHED }),
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
        okJson(BackupCreatedView, 'Backup creation started', 201),
        problemResponses(createProblems('backup')),
      ),
    restore: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'restoreBackup',
          summary: 'Restore from a backup',
          description:
            "Overwrite a server's disk with a backup: its own server, or `server_id`, another server of yours on " +
            'any node. ' +
            UNDO_NOTE +
            ' The server is stopped first and started again afterwards if it was running. The backup must be ' +
            '`completed`; poll the returned `action_id`.',
        }),
        pathId('Backup id.'),
        acceptLanguage(),
        idempotencyKey(),
        ApiExtraModels(RestoreBackupDto),
        ApiBody({ required: false, schema: { $ref: getSchemaPath(RestoreBackupDto) } }),
        okJson(BackupRestoreStartedView, 'Restoration started', 200),
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
    verify: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'verifyBackup',
          summary: 'Verify a backup',
          description:
            'Read every stored chunk of a `completed` backup back and check its hash. On success the backup gets ' +
            '`verified_at`; on damage it becomes `corrupt` with an `error` (it cannot be restored and is never the ' +
            'base of an incremental backup) and the event `backup.corrupt` is recorded. Backups are also verified ' +
            'automatically: new ones within a day, every one at least weekly. While a verification of the backup ' +
            'is open, it is answered again. Poll the returned `action_id`.',
        }),
        pathId('Backup id.'),
        acceptLanguage(),
        okJson(BackupVerifyStartedView, 'Verification started', 200),
        problemResponses({
          400: { description: 'The backup is not completed', examples: ['invalid_backup_state'] },
          404: BACKUP_NOT_FOUND,
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
            'in the background. A backup still being created, or being restored from, cannot be deleted; nor can ' +
            'a protected one (`protection.delete`).',
        }),
        pathId('Backup id.'),
        ApiResponse({ status: 204, description: 'Backup deleted' }),
        problemResponses({
          400: {
            description: 'The backup is busy or protected',
            examples: ['invalid_backup_state', 'backup_protected'],
          },
          404: BACKUP_NOT_FOUND,
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
        okJson(BackupPolicyDto, 'The policy', 200, { example: BACKUP_POLICY_EXAMPLE }),
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
        ApiBody({
          required: true,
          type: BackupPolicyDto,
          examples: { weekly: { value: BACKUP_POLICY_EXAMPLE } },
        }),
        okJson(BackupPolicyDto, 'The policy as stored', 200, { example: BACKUP_POLICY_EXAMPLE }),
        problemResponses({
          400: { examples: ['validation_failed', 'malformed_json'] },
          404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
          ...BODY,
          ...AUTHED,
        }),
      ),
  },
  servers: {
    update: () => labelsUpdate('server', ServerView, 'server_not_found'),
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listServers',
          summary: 'List your servers',
          description: 'Your servers by id, each with its snapshot quota and the operation running on it.',
        }),
        okJson(ServerPage, 'Server list', 200, {
          example: { count: 1, next: null, previous: null, results: [SERVER_EXAMPLE] },
        }),
        problemResponses({
          400: { examples: ['validation_failed_query', 'invalid_label_selector'] },
          404: { description: 'A page past the last one', examples: ['page_not_found'] },
          ...AUTHED,
        }),
      ),
    get: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'getServer',
          summary: 'Show one server',
          description: 'One server of yours, with its snapshot quota and the operation running on it.',
        }),
        pathId('Server id.'),
        okJson(ServerView, 'The server', 200, { example: SERVER_EXAMPLE }),
        problemResponses({
          404: { description: 'Not Found - Server does not exist', examples: ['server_not_found'] },
          ...AUTHED,
        }),
      ),
    powerAction: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'serverPowerAction',
          summary: 'Start, stop, shut down or reboot a server',
          description:
            '`start` powers the server on; `stop` powers it off at once, as pulling the plug would; `shutdown` ' +
            'asks its operating system to shut down and fails (`shutdown_timeout`) if it has not stopped within ' +
            'the grace period; `reboot` is a graceful shutdown then a start. Starting a running server, or ' +
            'stopping or shutting down a stopped one, succeeds and changes nothing. Like a create or a restore, ' +
            'a power action holds the server while it runs: one refused while another operation holds it is ' +
            '`invalid_server_state`, naming that operation. When it ends, the server’s `status` is what its ' +
            'virtual machine became, and a `power_action.completed` or `power_action.failed` event is sent. ' +
            'Poll the returned action (`GET /api/v1/actions/{id}/`).',
        }),
        pathId('Server id.'),
        acceptLanguage(),
        idempotencyKey(),
        ApiExtraModels(PowerActionDto),
        ApiBody({ required: true, schema: { $ref: getSchemaPath(PowerActionDto) } }),
        okJson(ActionView, 'Power action accepted', 201, { example: POWER_ACTION_EXAMPLE }),
        problemResponses(serverOperationProblems('An unknown type, or the server is busy')),
      ),
    adminCreate: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'adminCreateServer',
          summary: 'Register a server (operators)',
          description:
            "Registers an existing libvirt domain of a node as a server of an account. Admin tokens only. The disk must lie inside one of the node's image roots; `domain_uuid` is optional (the worker records it before the first operation). Recorded in the audit log (`server.create`).",
        }),
        ApiExtraModels(CreateServerDto),
        ApiBody({ required: true, schema: { $ref: getSchemaPath(CreateServerDto) } }),
        okJson(AdminServerView, 'Server registered', 201),
        problemResponses({
          400: { examples: ['validation_failed', 'malformed_json'] },
          404: { description: 'No such account or node', examples: ['account_not_found', 'node_not_found'] },
          409: {
            description: 'The domain, its UUID or the disk is already registered on this node',
            examples: ['conflict'],
          },
          ...BODY,
          ...ADMIN,
        }),
      ),
  },
  actions: {
    get: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'getAction',
          summary: 'Show a long operation',
          description:
            'A create, restore or delete of a snapshot as it runs: `pending` → `running` → `succeeded` | ' +
            '`failed`, with `progress` (0–100) and, when it failed, `error`. Poll it after a create or restore.',
        }),
        pathId('Action id (`action_id` of a create or restore response).'),
        okJson(ActionView, 'The action', 200, { examples: ACTION_EXAMPLES }),
        problemResponses({
          404: { description: 'Not Found - Action does not exist', examples: ['action_not_found'] },
          ...AUTHED,
        }),
      ),
    undo: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'undoRestore',
          summary: 'Undo a restore',
          description:
            'Puts back the disk a restore replaced. Every restore first takes a safety copy of the disk ' +
            '(a `pre_restore` backup when the node has backup storage, else a `pre_restore` snapshot; neither ' +
            'counts toward a limit), kept for `RESTORE_SAFETY_COPY_HOURS` (7 days by default) and shown as ' +
            'the restore action’s `safety_copy`. Undo is a restore of that copy onto the server: the answer ' +
            'is its action (`undo_of` names the restore). It is a restore like any other, so it takes a ' +
            'safety copy too: undoing the undo puts back what the first restore wrote. The action must be a ' +
            'restore that succeeded and whose copy has not expired; one operation per server, as every restore.',
        }),
        pathId('The restore’s action id.'),
        idempotencyKey(),
        okJson(ActionView, 'The undo started (its action)', 201, {
          examples: { undo: ACTION_EXAMPLES.undo },
        }),
        problemResponses({
          400: {
            description: 'Not a succeeded restore, its safety copy expired, or the server is busy',
            examples: ['action_not_undoable', 'invalid_server_state', 'idempotency_key_reused'],
          },
          404: { description: 'Not Found - Action does not exist', examples: ['action_not_found'] },
          409: IDEMPOTENCY_IN_USE,
          ...AUTHED,
        }),
      ),
  },
  tokens: {
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listTokens',
          summary: 'List your tokens',
          description: 'The account’s API tokens, revoked ones included. Secrets are never shown again.',
        }),
        okJson(TokenPage, 'Token list'),
        problemResponses(AUTHED),
      ),
    create: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'createToken',
          summary: 'Create a token',
          description:
            'A new token of your account, never more than the token that creates it: its scopes are some ' +
            'of the calling token’s (by default all of them; an admin token may give any) and it expires ' +
            'no later than the calling token (by default when that one does). An account holds a limited ' +
            'number of live tokens — unrevoked and unexpired; past it, 400 `token_limit_reached`. Its ' +
            'secret is in this response only.',
        }),
        ApiExtraModels(CreateTokenDto),
        ApiBody({
          required: true,
          schema: { $ref: getSchemaPath(CreateTokenDto) },
          examples: {
            readOnly: {
              summary: 'A read-only token for 90 days',
              value: { name: 'monitoring', scopes: ['read'], expires_in_days: 90 },
            },
          },
        }),
        okJson(TokenCreatedView, 'Token created', 201),
        problemResponses({
          400: { examples: ['validation_failed_scopes', 'token_limit_reached', 'malformed_json'] },
          ...BODY,
          ...AUTHED,
        }),
      ),
    revoke: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'revokeToken',
          summary: 'Revoke a token',
          description: 'Revocation is immediate: the next request with it is 401.',
        }),
        pathId('Token id.'),
        ApiResponse({ status: 204, description: 'Token revoked' }),
        problemResponses({
          404: { description: 'Not Found - Token does not exist', examples: ['token_not_found'] },
          ...AUTHED,
        }),
      ),
  },
  nodes: {
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'adminListNodes',
          summary: 'List hypervisor nodes (operators)',
          description: 'Every registered hypervisor host. Admin tokens only.',
        }),
        okJson(NodePage, 'Node list'),
        problemResponses(ADMIN),
      ),
    create: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'adminCreateNode',
          summary: 'Register a hypervisor node (operators)',
          description:
            'A hypervisor host; start a worker on it with `WORKER_NODE=<name>` to add its capacity. Admin ' +
            'tokens only. The connection URI is one of the forms the libvirt driver supports, without query ' +
            "parameters; `image_roots` confine its servers' disks; the snapshot directory lies apart from " +
            'them. Recorded in the audit log (`node.create`).',
        }),
        ApiExtraModels(CreateNodeDto),
        ApiBody({ required: true, schema: { $ref: getSchemaPath(CreateNodeDto) } }),
        okJson(NodeView, 'Node registered', 201),
        problemResponses({
          400: { examples: ['validation_failed', 'malformed_json'] },
          409: { description: 'The name is taken', examples: ['conflict'] },
          ...BODY,
          ...ADMIN,
        }),
      ),
    update: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'adminUpdateNode',
          summary: "Change a node's backup store (operators)",
          description:
            "Points the node's next backups at another configured store (`backup_store`); backups already " +
            'written stay in the store they were written to. Admin tokens only. Recorded in the audit log ' +
            '(`node.update`).',
        }),
        pathId('Node id.'),
        ApiExtraModels(UpdateNodeDto),
        ApiBody({ required: true, schema: { $ref: getSchemaPath(UpdateNodeDto) } }),
        okJson(NodeView, 'Node updated'),
        problemResponses({
          400: { examples: ['validation_failed', 'malformed_json'] },
          404: { description: 'Not Found - Node does not exist', examples: ['node_not_found'] },
          ...BODY,
          ...ADMIN,
        }),
      ),
  },
  audit: {
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'adminListAuditEvents',
          summary: 'The audit log (operators)',
          description:
            'Token changes and every snapshot create, restore and delete, newest first. Admin tokens only.',
        }),
        okJson(AuditEventPage, 'Audit events'),
        problemResponses({
          400: { examples: ['validation_failed_query'] },
          404: { description: 'A page past the last one', examples: ['page_not_found'] },
          ...ADMIN,
        }),
      ),
  },
  webhooks: {
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listWebhooks',
          summary: 'List your webhooks',
          description: 'The account’s webhook endpoints, with their state. Secrets are never shown again.',
        }),
        okJson(WebhookPage, 'Webhook list'),
        problemResponses(AUTHED),
      ),
    get: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'getWebhook',
          summary: 'Show one webhook',
          description: 'One endpoint: whether it is failing (since when, why) or disabled (why).',
        }),
        pathId('Webhook id.'),
        okJson(WebhookView, 'The webhook'),
        problemResponses({
          404: {
            description: 'Not Found - Webhook does not exist',
            examples: ['webhook_not_found'],
          },
          ...AUTHED,
        }),
      ),
    create: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'createWebhook',
          summary: 'Create a webhook',
          description:
            'Every event of the chosen types that happens from now on is POSTed to `url` as ' +
            '`{"type","timestamp","data"}` and signed as Standard Webhooks says (`webhook-id`, ' +
            '`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` with the secret in this ' +
            'response only). A failed delivery (not 2xx within 10 s) is retried with exponential back-off ' +
            'for 3 days; an endpoint that fails every attempt for 3 days is disabled. The URL must be https ' +
            'and reach a public address (no private, loopback or link-local ones), checked after DNS ' +
            'resolution and again at every connection. Recorded in the audit log (`webhook.create`).',
        }),
        ApiExtraModels(CreateWebhookDto),
        ApiBody({ required: true, schema: { $ref: getSchemaPath(CreateWebhookDto) } }),
        okJson(WebhookCreatedView, 'Webhook created', 201),
        problemResponses({
          400: {
            examples: [
              'validation_failed',
              'webhook_url_not_allowed',
              'webhook_url_not_allowed_scheme',
              'webhook_limit_reached',
              'malformed_json',
            ],
          },
          ...BODY,
          ...AUTHED,
        }),
      ),
    delete: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'deleteWebhook',
          summary: 'Delete a webhook',
          description:
            'Nothing more is sent to it, retries included. Recorded in the audit log (`webhook.delete`).',
        }),
        pathId('Webhook id.'),
        ApiResponse({ status: 204, description: 'Webhook deleted' }),
        problemResponses({
          404: {
            description: 'Not Found - Webhook does not exist',
            examples: ['webhook_not_found'],
          },
          ...AUTHED,
        }),
      ),
  },
  events: {
    list: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'listEvents',
          summary: 'List your events',
          description:
            'The events webhooks deliver, in order, after `since` (the last id you have): poll with the ' +
            'last id of each page. Bodies are the same bytes a webhook receives.',
        }),
        okJson(EventPage, 'Events after the cursor'),
        problemResponses({ 400: { examples: ['validation_failed_query'] }, ...AUTHED }),
      ),
  },
  health: {
    live: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'healthz',
          summary: 'Liveness',
          description: 'The process is alive and serving HTTP. No token.',
        }),
        okJson(HealthView, 'Alive'),
      ),
    ready: () =>
      applyDecorators(
        ApiOperation({
          operationId: 'readyz',
          summary: 'Readiness',
          description:
            'PostgreSQL and Redis answer (asked at most once a second; an answer is up to a second old). No token.',
        }),
        okJson(ReadinessView, 'Ready'),
        problemResponses({
          503: { description: 'Service Unavailable, naming what is down', examples: ['service_unavailable'] },
        }),
      ),
  },
};
