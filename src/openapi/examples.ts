/**
 * Examples of the OpenAPI document. The three `PUBLISHED_*` bodies are the published page's own
 * examples, exactly, so that the document shows what clients were promised.
 */
import { message } from '../common/messages';
import { MAX_URL_BYTES } from '../common/url-limit';

export const PUBLISHED_LIST_EXAMPLE = {
  count: 2,
  results: [
    {
      id: 801,
      server: { id: 12345, name: 'web-server-01' },
      name: 'pre-migration-snapshot',
      status: 'completed',
      size_mb: 5120,
      created_at: '2025-01-15T18:30:00Z',
      description: 'Before major migration',
    },
    {
      id: 798,
      server: { id: 12345, name: 'web-server-01' },
      name: 'weekly-snapshot-2025-01-08',
      status: 'completed',
      size_mb: 4856,
      created_at: '2025-01-08T12:00:00Z',
      description: 'Weekly snapshot',
    },
  ],
};

export const PUBLISHED_CREATE_EXAMPLE = {
  id: 802,
  server: { id: 12345, name: 'web-server-01' },
  name: 'before-update-snapshot',
  status: 'in_progress',
  size_mb: null,
  created_at: '2025-01-16T16:15:00Z',
  description: 'Snapshot before system update',
  message: 'Snapshot is being created. This may take 3-10 minutes depending on server size.',
};

export const PUBLISHED_RESTORE_EXAMPLE = {
  status: 'success',
  message: 'Server is being restored from snapshot. This may take 5-15 minutes.',
  snapshot: { id: 801, name: 'pre-migration-snapshot', created_at: '2025-01-15T18:30:00Z' },
  server: { id: 12345, name: 'web-server-01', status: 'restoring' },
};

/** The create request of the published page. */
export const PUBLISHED_CREATE_REQUEST = {
  server_id: 12345,
  name: 'before-update-snapshot',
  description: 'Snapshot before system update',
};

/** The same bodies as this service sends them: the published fields, then this service's additions. */
export const FULL_LIST_EXAMPLE = {
  count: 2,
  next: null,
  previous: null,
  results: [
    {
      ...PUBLISHED_LIST_EXAMPLE.results[0],
      progress: 100,
      consistency: 'quiesced',
      completed_at: '2025-01-15T18:34:12Z',
      error: null,
    },
    {
      ...PUBLISHED_LIST_EXAMPLE.results[1],
      progress: 100,
      consistency: 'stopped',
      completed_at: '2025-01-08T12:03:40Z',
      error: null,
    },
  ],
};

export const FULL_CREATE_EXAMPLE = {
  ...PUBLISHED_CREATE_EXAMPLE,
  progress: 0,
  consistency: null,
  completed_at: null,
  error: null,
  action_id: 9001,
};

export const FULL_RESTORE_EXAMPLE = { ...PUBLISHED_RESTORE_EXAMPLE, action_id: 9002 };

export const SNAPSHOT_EXAMPLE = FULL_LIST_EXAMPLE.results[0];

export const SERVER_EXAMPLE = {
  id: 12345,
  name: 'web-server-01',
  status: 'running',
  created_at: '2024-11-02T09:12:44Z',
  snapshot_quota: { limit: 5, used: 2 },
  current_action: { id: 9001, kind: 'create_snapshot', status: 'running', progress: 40 },
  backup_quota: { limit: 10, used: 3 },
  backup_policy: { enabled: true, next_run_at: null },
};

export const ACTION_EXAMPLES = {
  running: {
    summary: 'A snapshot being created',
    value: {
      id: 9001,
      kind: 'create_snapshot',
      status: 'running',
      progress: 40,
      server: { id: 12345, name: 'web-server-01' },
      snapshot: { id: 802, name: 'before-update-snapshot' },
      backup: null,
      error: null,
      created_at: '2025-01-16T16:15:00Z',
      started_at: '2025-01-16T16:15:01Z',
      finished_at: null,
    },
  },
  failed: {
    summary: 'A restore that failed (the server is back in its previous state)',
    value: {
      id: 9002,
      kind: 'restore_snapshot',
      status: 'failed',
      progress: 35,
      server: { id: 12345, name: 'web-server-01' },
      snapshot: { id: 801, name: 'pre-migration-snapshot' },
      backup: null,
      error: { code: 'disk_copy_failed', message: 'qemu-img convert exited with status 1' },
      created_at: '2025-01-16T17:00:00Z',
      started_at: '2025-01-16T17:00:01Z',
      finished_at: '2025-01-16T17:02:30Z',
    },
  },
};

const problem = (code: string, status: number, title: string, detail: string, extra = {}) => ({
  type: `https://admin.vps.org/problems/${code.replace(/_/g, '-')}`,
  title,
  status,
  detail,
  code,
  request_id: '5f0c6f1e-3b7e-4c55-9a55-2b4f1f1b8a20',
  ...extra,
});

export const PROBLEM_EXAMPLES = {
  unauthorized: {
    summary: 'Missing, unknown, expired or revoked token',
    value: problem(
      'unauthorized',
      401,
      'Unauthorized',
      'Unauthorized - Invalid or missing authentication token',
    ),
  },
  unauthorized_cy: {
    summary: 'The same with Accept-Language: cy',
    value: problem('unauthorized', 401, 'Unauthorized', 'Heb awdurdod - Tocyn dilysu annilys neu ar goll'),
  },
  forbidden: {
    summary: 'A read-only token writing',
    value: problem('forbidden', 403, 'Forbidden', 'Forbidden - This token lacks the "write" scope'),
  },
  forbidden_admin: {
    summary: 'A customer token on an operator endpoint',
    value: problem('forbidden', 403, 'Forbidden', 'Forbidden - This token lacks the "admin" scope'),
  },
  validation_failed: {
    summary: 'Invalid parameters',
    value: problem('validation_failed', 400, 'Bad Request', 'Bad Request - Invalid parameters', {
      errors: [{ field: 'name', message: 'name must be 1-64 letters, digits, hyphens or underscores' }],
    }),
  },
  validation_failed_scopes: {
    summary: 'A token asking for more than the calling token has',
    value: problem('validation_failed', 400, 'Bad Request', 'Bad Request - Invalid parameters', {
      errors: [{ field: 'scopes', message: "scopes must be a subset of this token's scopes (read)" }],
    }),
  },
  token_limit_reached: {
    summary: 'The account already holds the most live tokens it may',
    value: problem(
      'token_limit_reached',
      400,
      'Bad Request',
      'Bad Request - Token limit reached: this account already has 50 of 50 live tokens; revoke one first',
      { limit: 50, used: 50 },
    ),
  },
  malformed_json: {
    summary: 'The body is not valid JSON',
    value: problem('malformed_json', 400, 'Bad Request', 'Bad Request - The request body is not valid JSON'),
  },
  snapshot_limit_reached: {
    summary: 'The server already has 5 live snapshots',
    value: problem(
      'snapshot_limit_reached',
      400,
      'Bad Request',
      'Bad Request - Snapshot limit reached: server 12345 already has 5 of 5 snapshots',
      { limit: 5, used: 5, server_id: 12345 },
    ),
  },
  invalid_server_state: {
    summary: 'Another create or restore holds the server',
    value: problem(
      'invalid_server_state',
      400,
      'Bad Request',
      'Bad Request - Server is not in a valid state for restoration: its status is "running" and action 9001 (create_snapshot) is running on it',
      {
        server_id: 12345,
        server_status: 'running',
        action: { id: 9001, kind: 'create_snapshot', status: 'running' },
      },
    ),
  },
  invalid_snapshot_state: {
    summary: 'The snapshot is not completed',
    value: problem(
      'invalid_snapshot_state',
      400,
      'Bad Request',
      'Bad Request - Snapshot 802 cannot be restored while it is still being created',
      { snapshot_status: 'in_progress' },
    ),
  },
  idempotency_key_reused: {
    summary: 'The same Idempotency-Key with a different request',
    value: problem(
      'idempotency_key_reused',
      400,
      'Bad Request',
      'Bad Request - This Idempotency-Key was already used with a different request',
    ),
  },
  idempotency_key_in_use: {
    summary: 'The first request with this Idempotency-Key is still being processed',
    value: problem(
      'idempotency_key_in_use',
      409,
      'Conflict',
      'Conflict - A request with this Idempotency-Key is still being processed; retry shortly',
    ),
  },
  backup_limit_reached: {
    summary: 'The server already has 10 live manual backups',
    value: problem(
      'backup_limit_reached',
      400,
      'Bad Request',
      'Bad Request - Backup limit reached: server 12345 already has 10 of 10 manual backups',
      { limit: 10, used: 10, server_id: 12345 },
    ),
  },
  invalid_backup_state: {
    summary: 'The backup is not completed, or is being restored from',
    value: problem(
      'invalid_backup_state',
      400,
      'Bad Request',
      'Bad Request - Backup 3101 cannot be restored while it is still being created',
      { backup_status: 'in_progress' },
    ),
  },
  backup_not_found: {
    summary: 'Absent, deleted, another account’s, or not an id',
    value: problem('backup_not_found', 404, 'Not Found', 'Not Found - Backup does not exist'),
  },
  backup_not_found_cy: {
    summary: 'The same with Accept-Language: cy',
    value: problem('backup_not_found', 404, 'Not Found', "Heb ei Ganfod - Nid yw'r copi wrth gefn yn bodoli"),
  },
  snapshot_not_found: {
    summary: 'Absent, deleted, another account’s, or not an id',
    value: problem('snapshot_not_found', 404, 'Not Found', 'Not Found - Snapshot does not exist'),
  },
  snapshot_not_found_cy: {
    summary: 'The same with Accept-Language: cy',
    value: problem('snapshot_not_found', 404, 'Not Found', "Heb ei Ganfod - Nid yw'r ciplun yn bodoli"),
  },
  server_not_found: {
    summary: 'Absent, another account’s, or not an id',
    value: problem('server_not_found', 404, 'Not Found', 'Not Found - Server does not exist'),
  },
  action_not_found: {
    summary: 'Absent, another account’s, or not an id',
    value: problem('action_not_found', 404, 'Not Found', 'Not Found - Action does not exist'),
  },
  token_not_found: {
    summary: 'Absent, another account’s, or not an id',
    value: problem('token_not_found', 404, 'Not Found', 'Not Found - Token does not exist'),
  },
  account_not_found: {
    summary: 'No such account',
    value: problem('account_not_found', 404, 'Not Found', 'Not Found - Account does not exist'),
  },
  node_not_found: {
    summary: 'No such node',
    value: problem('node_not_found', 404, 'Not Found', 'Not Found - Node does not exist'),
  },
  page_not_found: {
    summary: 'A page past the last one',
    value: problem('page_not_found', 404, 'Not Found', 'Not Found - Invalid page'),
  },
  conflict: {
    summary: 'The name is taken',
    value: problem('conflict', 409, 'Conflict', 'Conflict - node "hv1" exists'),
  },
  unauthorized_token_outside_header: {
    summary: 'A token sent as an access_token query parameter or body member (header only)',
    value: problem(
      'unauthorized',
      401,
      'Unauthorized',
      message('token_outside_header', 'en', { where: 'query' }),
    ),
  },
  uri_too_long: {
    summary: `A URL over ${MAX_URL_BYTES} bytes`,
    value: problem(
      'uri_too_long',
      414,
      'URI Too Long',
      message('uri_too_long', 'en', { limit: MAX_URL_BYTES }),
    ),
  },
  payload_too_large: {
    summary: 'The body exceeds BODY_LIMIT',
    value: problem(
      'payload_too_large',
      413,
      'Payload Too Large',
      'Payload Too Large - The request body exceeds 65536 bytes',
    ),
  },
  unsupported_media_type: {
    summary: 'A body that is not application/json',
    value: problem(
      'unsupported_media_type',
      415,
      'Unsupported Media Type',
      'Unsupported Media Type - Send the request body as application/json',
    ),
  },
  rate_limited: {
    summary: 'Too many writes for this token',
    value: problem(
      'rate_limited',
      429,
      'Too Many Requests',
      'Too Many Requests - Rate limit of 120 writes per minute for this token exceeded; retry in 12 s',
      { limit: 120, retry_after: 12, limit_scope: 'token', limit_kind: 'writes' },
    ),
  },
  rate_limited_account: {
    summary: 'Too many requests for the account, all its tokens together',
    value: problem(
      'rate_limited',
      429,
      'Too Many Requests',
      'Too Many Requests - Rate limit of 3000 requests per minute for this account exceeded; retry in 40 s',
      { limit: 3000, retry_after: 40, limit_scope: 'account', limit_kind: 'requests' },
    ),
  },
  internal_error: {
    summary: 'A fault on our side',
    value: problem(
      'internal_error',
      500,
      'Internal Server Error',
      'Internal Server Error - Something went wrong on our side; quote the request id when reporting it',
    ),
  },
  service_unavailable: {
    summary: 'A dependency is down',
    value: problem(
      'service_unavailable',
      503,
      'Service Unavailable',
      'Service Unavailable - Redis is not reachable; try again shortly',
      { checks: { postgres: 'up', redis: 'down' } },
    ),
  },
};

export type ProblemExampleKey = keyof typeof PROBLEM_EXAMPLES;
