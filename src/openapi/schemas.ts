/**
 * Response bodies as OpenAPI schemas (documentation only: the controllers build plain objects).
 *
 * `required` lists what the published contract guarantees and what every
 * response of a resource this service adds carries. The fields this service adds to the published bodies (`progress`,
 * `consistency`, `completed_at`, `error`, `action_id`, `next`, `previous`) are always present in its
 * responses but are not `required` here, so that the page's published examples stay valid responses.
 */
import { ApiProperty, ApiPropertyOptional, ApiSchema } from '@nestjs/swagger';
import { RATE_LIMIT_KINDS, RATE_LIMIT_SCOPES } from '../rate-limit/rate-limiter';

const DATE_TIME = { type: String, format: 'date-time', example: '2025-01-15T18:30:00Z' } as const;
const ID = { type: 'integer', format: 'int32', minimum: 1, maximum: 2_147_483_647 } as const;

export const SNAPSHOT_STATUSES = ['in_progress', 'completed', 'failed'] as const;
export const SNAPSHOT_CONSISTENCIES = ['stopped', 'quiesced', 'crash_consistent'] as const;
export const SERVER_STATUSES = ['running', 'stopped', 'restoring'] as const;
export const ACTION_KINDS = ['create_snapshot', 'restore_snapshot', 'delete_snapshot'] as const;
export const ACTION_STATUSES = ['pending', 'running', 'succeeded', 'failed'] as const;
export const SCOPES = ['read', 'write', 'admin'] as const;

/** Every `code` this API returns (src/common/problem.ts `ProblemCode`). */
export const PROBLEM_CODES = [
  'unauthorized',
  'forbidden',
  'not_found',
  'page_not_found',
  'snapshot_not_found',
  'server_not_found',
  'action_not_found',
  'token_not_found',
  'node_not_found',
  'account_not_found',
  'validation_failed',
  'malformed_json',
  'unsupported_media_type',
  'uri_too_long',
  'payload_too_large',
  'method_not_allowed',
  'snapshot_limit_reached',
  'token_limit_reached',
  'invalid_server_state',
  'invalid_snapshot_state',
  'conflict',
  'rate_limited',
  'idempotency_key_reused',
  'idempotency_key_in_use',
  'service_unavailable',
  'internal_error',
] as const;

// ---------------------------------------------------------------- snapshots

@ApiSchema({ name: 'ServerRef', description: 'The server a resource belongs to.' })
export class ServerRefSchema {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;
}

@ApiSchema({ name: 'Snapshot', description: 'A point-in-time copy of a server’s disks.' })
export class SnapshotSchema {
  @ApiProperty({ ...ID, example: 801 })
  id!: number;

  @ApiProperty({ type: ServerRefSchema })
  server!: ServerRefSchema;

  @ApiProperty({ example: 'pre-migration-snapshot', pattern: '^[A-Za-z0-9_-]{1,64}$' })
  name!: string;

  @ApiProperty({ enum: SNAPSHOT_STATUSES, enumName: 'SnapshotStatus', example: 'completed' })
  status!: string;

  @ApiProperty({
    type: 'integer',
    format: 'int64',
    nullable: true,
    example: 5120,
    description: 'Size of the stored copy in MiB (rounded up); null until the snapshot is completed.',
  })
  size_mb!: number | null;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ example: 'Before major migration', description: '"" when none was given.' })
  description!: string;

  @ApiPropertyOptional({
    type: 'integer',
    format: 'int32',
    minimum: 0,
    maximum: 100,
    example: 100,
    description: 'Copy progress in percent.',
  })
  progress?: number;

  @ApiPropertyOptional({
    type: String,
    enum: SNAPSHOT_CONSISTENCIES,
    nullable: true,
    example: 'quiesced',
    description:
      'How the copy was taken: `stopped` (server was off), `quiesced` (guest agent froze the ' +
      'filesystems), `crash_consistent` (neither). Null until known.',
  })
  consistency?: string | null;

  @ApiPropertyOptional({ ...DATE_TIME, nullable: true, description: 'When it completed.' })
  completed_at?: string | null;

  @ApiPropertyOptional({
    type: String,
    nullable: true,
    example: null,
    description: 'Why a `failed` snapshot failed.',
  })
  error?: string | null;
}

@ApiSchema({ name: 'SnapshotList', description: 'A page of snapshots, newest first by default.' })
export class SnapshotListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 2, description: 'Total matching.' })
  count!: number;

  @ApiPropertyOptional({
    type: String,
    format: 'uri',
    nullable: true,
    example: null,
    description: 'URL of the next page.',
  })
  next?: string | null;

  @ApiPropertyOptional({
    type: String,
    format: 'uri',
    nullable: true,
    example: null,
    description: 'URL of the previous page.',
  })
  previous?: string | null;

  @ApiProperty({ type: [SnapshotSchema] })
  results!: SnapshotSchema[];
}

@ApiSchema({ name: 'SnapshotCreated', description: 'The new snapshot, being created.' })
export class SnapshotCreatedSchema extends SnapshotSchema {
  @ApiProperty({
    example: 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiPropertyOptional({
    ...ID,
    example: 9001,
    description: 'The action to poll at `/api/v1/actions/{action_id}/`.',
  })
  action_id?: number;
}

@ApiSchema({ name: 'RestoreSnapshotRef', description: 'The snapshot being restored.' })
export class RestoreSnapshotRefSchema {
  @ApiProperty({ ...ID, example: 801 })
  id!: number;

  @ApiProperty({ example: 'pre-migration-snapshot' })
  name!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

@ApiSchema({ name: 'RestoreServerRef', description: 'The server being restored.' })
export class RestoreServerRefSchema extends ServerRefSchema {
  @ApiProperty({ enum: ['restoring'], example: 'restoring' })
  status!: string;
}

@ApiSchema({ name: 'RestoreStarted', description: 'The restoration has started.' })
export class RestoreStartedSchema {
  @ApiProperty({ enum: ['success'], example: 'success' })
  status!: string;

  @ApiProperty({
    example: 'Server is being restored from snapshot. This may take 5-15 minutes.',
    description: 'English, or Welsh with `Accept-Language: cy`.',
  })
  message!: string;

  @ApiProperty({ type: RestoreSnapshotRefSchema })
  snapshot!: RestoreSnapshotRefSchema;

  @ApiProperty({ type: RestoreServerRefSchema })
  server!: RestoreServerRefSchema;

  @ApiPropertyOptional({
    ...ID,
    example: 9002,
    description: 'The action to poll at `/api/v1/actions/{action_id}/`.',
  })
  action_id?: number;
}

// ---------------------------------------------------------------- servers

@ApiSchema({ name: 'SnapshotQuota', description: 'Live snapshots of the server against the limit.' })
export class SnapshotQuotaSchema {
  @ApiProperty({ type: 'integer', format: 'int32', example: 5 })
  limit!: number;

  @ApiProperty({
    type: 'integer',
    format: 'int32',
    example: 2,
    description: '`in_progress` and `completed` snapshots count; failed and deleted ones do not.',
  })
  used!: number;
}

@ApiSchema({ name: 'ActionSummary', description: 'The long operation running on a server.' })
export class ActionSummarySchema {
  @ApiProperty({ ...ID, example: 9001 })
  id!: number;

  @ApiProperty({ enum: ACTION_KINDS, enumName: 'ActionKind', example: 'create_snapshot' })
  kind!: string;

  @ApiProperty({ enum: ACTION_STATUSES, enumName: 'ActionStatus', example: 'running' })
  status!: string;

  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, maximum: 100, example: 40 })
  progress!: number;
}

@ApiSchema({ name: 'Server', description: 'One of the account’s servers.' })
export class ServerSchema {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;

  @ApiProperty({ enum: SERVER_STATUSES, enumName: 'ServerStatus', example: 'running' })
  status!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ type: SnapshotQuotaSchema })
  snapshot_quota!: SnapshotQuotaSchema;

  @ApiProperty({
    type: ActionSummarySchema,
    nullable: true,
    description: 'The pending or running create/restore on this server, if any.',
  })
  current_action!: ActionSummarySchema | null;
}

@ApiSchema({ name: 'ServerList', description: 'A page of servers, by id.' })
export class ServerListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1 })
  count!: number;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  next!: string | null;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  previous!: string | null;

  @ApiProperty({ type: [ServerSchema] })
  results!: ServerSchema[];
}

@ApiSchema({ name: 'AdminServer', description: 'A server as an operator registered it.' })
export class AdminServerSchema {
  @ApiProperty({ ...ID, example: 12345 })
  id!: number;

  @ApiProperty({ ...ID, example: 7 })
  account_id!: number;

  @ApiProperty({ ...ID, example: 1 })
  node_id!: number;

  @ApiProperty({ example: 'web-server-01' })
  name!: string;

  @ApiProperty({ enum: SERVER_STATUSES, enumName: 'ServerStatus', example: 'running' })
  status!: string;

  @ApiProperty({ example: 'web-server-01', description: 'libvirt domain name on the node.' })
  domain!: string;

  @ApiProperty({
    type: String,
    format: 'uuid',
    nullable: true,
    example: '4dea22b3-1d52-d8f3-2516-782e98ab3fa0',
    description: "The domain's libvirt UUID; null until the worker records it before the first operation.",
  })
  domain_uuid!: string | null;

  @ApiProperty({ example: '/var/lib/libvirt/images/web-server-01.qcow2' })
  disk_path!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

// ---------------------------------------------------------------- actions

@ApiSchema({ name: 'SnapshotRef', description: 'The snapshot an action works on.' })
export class SnapshotRefSchema {
  @ApiProperty({ ...ID, example: 802 })
  id!: number;

  @ApiProperty({ example: 'before-update-snapshot' })
  name!: string;
}

@ApiSchema({ name: 'ActionError', description: 'Why an action failed.' })
export class ActionErrorSchema {
  @ApiProperty({ example: 'disk_copy_failed' })
  code!: string;

  @ApiProperty({ type: String, nullable: true, example: 'qemu-img convert exited with status 1' })
  message!: string | null;
}

@ApiSchema({
  name: 'Action',
  description:
    'A long operation (create, restore or delete of a snapshot): `pending` → `running` → ' +
    '`succeeded` | `failed`.',
})
export class ActionSchema {
  @ApiProperty({ ...ID, example: 9001 })
  id!: number;

  @ApiProperty({ enum: ACTION_KINDS, enumName: 'ActionKind', example: 'create_snapshot' })
  kind!: string;

  @ApiProperty({ enum: ACTION_STATUSES, enumName: 'ActionStatus', example: 'running' })
  status!: string;

  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, maximum: 100, example: 40 })
  progress!: number;

  @ApiProperty({ type: ServerRefSchema })
  server!: ServerRefSchema;

  @ApiProperty({ type: SnapshotRefSchema, nullable: true })
  snapshot!: SnapshotRefSchema | null;

  @ApiProperty({ type: ActionErrorSchema, nullable: true, description: 'Set when `status` is `failed`.' })
  error!: ActionErrorSchema | null;

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ ...DATE_TIME, nullable: true })
  started_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true })
  finished_at!: string | null;
}

// ---------------------------------------------------------------- tokens

@ApiSchema({ name: 'Token', description: 'An API token (never its secret, which is shown once).' })
export class TokenSchema {
  @ApiProperty({ ...ID, example: 3 })
  id!: number;

  @ApiProperty({ example: 'deploy pipeline' })
  name!: string;

  @ApiProperty({ example: 'vps_AbCdEfGh', description: 'The first 12 characters, to recognise it.' })
  prefix!: string;

  @ApiProperty({ enum: SCOPES, enumName: 'Scope', isArray: true, example: ['read', 'write'] })
  scopes!: string[];

  @ApiProperty(DATE_TIME)
  created_at!: string;

  @ApiProperty({ ...DATE_TIME, nullable: true, example: null })
  expires_at!: string | null;

  @ApiProperty({
    ...DATE_TIME,
    nullable: true,
    description: 'Written at most once a minute.',
  })
  last_used_at!: string | null;

  @ApiProperty({ ...DATE_TIME, nullable: true, example: null })
  revoked_at!: string | null;
}

@ApiSchema({ name: 'TokenCreated', description: 'A new token, with its secret (shown this once only).' })
export class TokenCreatedSchema extends TokenSchema {
  @ApiProperty({
    example: 'vps_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD',
    description: '`vps_` and 40 base62 characters. Store it now: only its hash is kept.',
  })
  token!: string;
}

@ApiSchema({ name: 'TokenList', description: 'The account’s tokens (one page holds them all).' })
export class TokenListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1 })
  count!: number;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  next!: string | null;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  previous!: string | null;

  @ApiProperty({ type: [TokenSchema] })
  results!: TokenSchema[];
}

// ---------------------------------------------------------------- nodes

@ApiSchema({ name: 'Node', description: 'A hypervisor host; its worker consumes the queue named after it.' })
export class NodeSchema {
  @ApiProperty({ ...ID, example: 1 })
  id!: number;

  @ApiProperty({ example: 'hv1' })
  name!: string;

  @ApiProperty({ enum: ['libvirt', 'fake'], enumName: 'NodeDriver', example: 'libvirt' })
  driver!: string;

  @ApiProperty({ type: String, nullable: true, example: 'qemu:///system' })
  uri!: string | null;

  @ApiProperty({ example: '/var/lib/vps/snapshots' })
  snapshot_dir!: string;

  @ApiProperty({
    type: [String],
    example: ['/var/lib/libvirt/images'],
    description: "Directories the node's disks may live in.",
  })
  image_roots!: string[];

  @ApiProperty({ example: 'default', description: 'The configured backup store its backups go to.' })
  backup_store!: string;

  @ApiProperty(DATE_TIME)
  created_at!: string;
}

@ApiSchema({ name: 'NodeList', description: 'Every node (one page holds them all).' })
export class NodeListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1 })
  count!: number;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  next!: string | null;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  previous!: string | null;

  @ApiProperty({ type: [NodeSchema] })
  results!: NodeSchema[];
}

// ---------------------------------------------------------------- audit

@ApiSchema({ name: 'AuditTarget', description: 'What an audited request acted on.' })
export class AuditTargetSchema {
  @ApiProperty({ example: 'snapshot' })
  type!: string;

  @ApiProperty({ type: 'integer', nullable: true, example: 802 })
  id!: number | null;
}

@ApiSchema({ name: 'AuditEvent', description: 'Who did what, when, from where.' })
export class AuditEventSchema {
  @ApiProperty({ ...ID, example: 51 })
  id!: number;

  @ApiProperty(DATE_TIME)
  at!: string;

  @ApiProperty({ type: 'integer', nullable: true, example: 7 })
  account_id!: number | null;

  @ApiProperty({ type: 'integer', nullable: true, example: 3 })
  token_id!: number | null;

  @ApiProperty({ example: 'token:3', description: '`token:<id>` for API calls, `cli` for the operator CLI.' })
  actor!: string;

  @ApiProperty({ example: 'snapshot.create' })
  action!: string;

  @ApiProperty({ type: AuditTargetSchema, nullable: true })
  target!: AuditTargetSchema | null;

  @ApiProperty({ enum: ['accepted', 'refused', 'error'], example: 'accepted' })
  outcome!: string;

  @ApiProperty({ type: 'integer', nullable: true, example: 201 })
  status_code!: number | null;

  @ApiProperty({ type: String, nullable: true, example: '203.0.113.7' })
  ip!: string | null;

  @ApiProperty({ type: String, nullable: true, example: '5f0c6f1e-3b7e-4c55-9a55-2b4f1f1b8a20' })
  request_id!: string | null;

  @ApiProperty({ type: 'object', nullable: true, additionalProperties: true, example: { server_id: 12345 } })
  detail!: Record<string, unknown> | null;
}

@ApiSchema({ name: 'AuditEventList', description: 'A page of audit events, newest first.' })
export class AuditEventListSchema {
  @ApiProperty({ type: 'integer', format: 'int32', minimum: 0, example: 1 })
  count!: number;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  next!: string | null;

  @ApiProperty({ type: String, format: 'uri', nullable: true, example: null })
  previous!: string | null;

  @ApiProperty({ type: [AuditEventSchema] })
  results!: AuditEventSchema[];
}

// ---------------------------------------------------------------- health

@ApiSchema({ name: 'Health', description: 'The process is alive.' })
export class HealthSchema {
  @ApiProperty({ enum: ['ok'], example: 'ok' })
  status!: string;
}

@ApiSchema({ name: 'ReadinessChecks', description: 'Each dependency, up or down.' })
export class ReadinessChecksSchema {
  @ApiProperty({ enum: ['up', 'down'], example: 'up' })
  postgres!: string;

  @ApiProperty({ enum: ['up', 'down'], example: 'up' })
  redis!: string;
}

@ApiSchema({ name: 'Readiness', description: 'PostgreSQL and Redis answer.' })
export class ReadinessSchema {
  @ApiProperty({ enum: ['ready'], example: 'ready' })
  status!: string;

  @ApiProperty({ type: ReadinessChecksSchema })
  checks!: ReadinessChecksSchema;
}

// ---------------------------------------------------------------- errors

@ApiSchema({ name: 'FieldError', description: 'One invalid request field.' })
export class FieldErrorSchema {
  @ApiProperty({ example: 'name', description: 'The field (dotted path for nested fields).' })
  field!: string;

  @ApiProperty({ example: 'name must be 1-64 letters, digits, hyphens or underscores' })
  message!: string;
}

@ApiSchema({ name: 'ProblemAction', description: 'The long operation that holds a server.' })
export class ProblemActionSchema {
  @ApiProperty({ ...ID, example: 9001 })
  id!: number;

  @ApiProperty({ enum: ACTION_KINDS, enumName: 'ActionKind', example: 'create_snapshot' })
  kind!: string;

  @ApiProperty({ enum: ACTION_STATUSES, enumName: 'ActionStatus', example: 'running' })
  status!: string;
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

  @ApiProperty({ type: 'integer', format: 'int32', example: 404 })
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
    type: 'integer',
    format: 'int32',
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
    type: 'integer',
    format: 'int32',
    example: 12,
    description: '`rate_limited`: seconds until the window resets (also `Retry-After`).',
  })
  retry_after?: number;

  @ApiPropertyOptional({
    type: 'integer',
    format: 'int32',
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
    enum: SERVER_STATUSES,
    enumName: 'ServerStatus',
    description: '`invalid_server_state`: the server’s status.',
  })
  server_status?: string;

  @ApiPropertyOptional({
    type: ProblemActionSchema,
    nullable: true,
    description: '`invalid_server_state`: the create or restore that holds the server.',
  })
  action?: ProblemActionSchema | null;

  @ApiPropertyOptional({
    enum: SNAPSHOT_STATUSES,
    enumName: 'SnapshotStatus',
    description: '`invalid_snapshot_state`: the snapshot’s status.',
  })
  snapshot_status?: string;

  @ApiPropertyOptional({
    type: ReadinessChecksSchema,
    description: '`service_unavailable` from `/readyz`: each dependency, up or down.',
  })
  checks?: ReadinessChecksSchema;
}
