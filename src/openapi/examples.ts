/**
 * Examples of the OpenAPI document. The three `PUBLISHED_*` bodies are the published page's own
 * examples, exactly, so that the document shows what clients were promised.
 */
import { Lang, message } from '../common/messages';
import { PAGE_SIZE_MESSAGE } from '../common/pagination';
import { scopesNotHeld } from '../auth/api-token.service';
import { ProblemException, ProblemSpec, problems } from '../common/problem';
import { deleteProtected } from '../common/delete-protection';
import { RESOURCE_NAME_MESSAGE } from '../common/resource-fields';
import { serverBusy } from '../servers/server-hold';
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
      protection: { delete: true },
    },
    {
      ...PUBLISHED_LIST_EXAMPLE.results[1],
      progress: 100,
      consistency: 'stopped',
      completed_at: '2025-01-08T12:03:40Z',
      error: null,
      protection: { delete: false },
    },
  ],
};

export const FULL_CREATE_EXAMPLE = {
  ...PUBLISHED_CREATE_EXAMPLE,
  progress: 0,
  consistency: null,
  completed_at: null,
  error: null,
  protection: { delete: false },
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
  backup_policy: { enabled: false, next_run_at: null, last_run: null },
};

export const BACKUP_EXAMPLE = {
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
  protection: { delete: false },
};

export const BACKUP_POLICY_EXAMPLE = {
  enabled: true,
  schedule: { frequency: 'weekly', weekday: 0, hour: 2 },
  retention: { daily: 7, weekly: 4, monthly: 0 },
};

/** A power action as `POST /api/v1/servers/{id}/actions/` answers it. */
export const POWER_ACTION_EXAMPLE = {
  id: 9010,
  kind: 'shutdown_server',
  status: 'pending',
  progress: 0,
  server: { id: 12345, name: 'web-server-01' },
  snapshot: null,
  backup: null,
  error: null,
  created_at: '2025-01-16T18:00:00Z',
  started_at: null,
  finished_at: null,
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
      error: { code: 'copy_failed', message: message('hypervisor_copy_failed', 'en') },
      created_at: '2025-01-16T17:00:00Z',
      started_at: '2025-01-16T17:00:01Z',
      finished_at: '2025-01-16T17:02:30Z',
    },
  },
  restored: {
    summary: 'A restore that succeeded, with the safety copy undo restores',
    value: {
      id: 9003,
      kind: 'restore_backup',
      status: 'succeeded',
      progress: 100,
      server: { id: 12345, name: 'web-server-01' },
      snapshot: null,
      backup: { id: 3101, name: 'nightly-2025-01-15' },
      error: null,
      created_at: '2025-01-16T18:00:00Z',
      started_at: '2025-01-16T18:00:01Z',
      finished_at: '2025-01-16T18:04:10Z',
      safety_copy: { type: 'backup', id: 3102, expires_at: '2025-01-23T18:00:02Z' },
      undo_of: null,
    },
  },
  undo: {
    summary: 'The undo of restore 9003, just accepted',
    value: {
      id: 9004,
      kind: 'restore_backup',
      status: 'pending',
      progress: 0,
      server: { id: 12345, name: 'web-server-01' },
      snapshot: null,
      backup: { id: 3102, name: 'pre-restore-9003' },
      error: null,
      created_at: '2025-01-16T19:00:00Z',
      started_at: null,
      finished_at: null,
      safety_copy: null,
      undo_of: 9003,
    },
  },
};

const EXAMPLE_REQUEST_ID = '5f0c6f1e-3b7e-4c55-9a55-2b4f1f1b8a20';

/** A problem example is the body the code itself renders: its title, type and catalogue sentence. */
const problem = (summary: string, p: ProblemException | ProblemSpec, lang: Lang = 'en') => ({
  summary,
  value: (p instanceof ProblemException ? p : new ProblemException(p)).render(lang, EXAMPLE_REQUEST_ID),
});

const rateLimited = (named: {
  limit: number;
  retry_after: number;
  limit_scope: string;
  limit_kind: string;
}) => ({ status: 429, code: 'rate_limited', params: named, extra: named }) satisfies ProblemSpec;

export const PROBLEM_EXAMPLES = {
  unauthorized: problem('Missing, unknown, expired or revoked token', problems.unauthorized()),
  unauthorized_cy: problem('The same with Accept-Language: cy', problems.unauthorized(), 'cy'),
  unauthorized_token_outside_header: problem(
    'A token sent as an access_token query parameter or body member (header only)',
    problems.tokenOutsideHeader('query'),
  ),
  forbidden: problem('A read-only token writing', problems.forbidden('write')),
  forbidden_admin: problem('A customer token on an operator endpoint', problems.forbidden('admin')),
  validation_failed: problem(
    'Invalid parameters',
    problems.validation([{ field: 'name', message: RESOURCE_NAME_MESSAGE }]),
  ),
  validation_failed_query: problem(
    'An invalid query parameter',
    problems.validation([{ field: 'page_size', message: PAGE_SIZE_MESSAGE }]),
  ),
  validation_failed_scopes: problem(
    'A token asking for more than the calling token has',
    problems.validation([scopesNotHeld(['read'])]),
  ),
  token_limit_reached: problem('The account already holds the most live tokens it may', {
    status: 400,
    code: 'token_limit_reached',
    params: { limit: 50, used: 50 },
    extra: { limit: 50, used: 50 },
  }),
  malformed_json: problem('The body is not valid JSON', { status: 400, code: 'malformed_json' }),
  snapshot_limit_reached: problem('The server already has 5 live snapshots', {
    status: 400,
    code: 'snapshot_limit_reached',
    params: { limit: 5, used: 5, server_id: 12345 },
    extra: { limit: 5, used: 5, server_id: 12345 },
  }),
  invalid_server_state: problem(
    'Another create or restore holds the server',
    serverBusy({ id: 12345, status: 'running' }, 'restoration', {
      id: 9001,
      kind: 'create_snapshot',
      status: 'running',
    }),
  ),
  invalid_snapshot_state: problem('The snapshot is not completed', {
    status: 400,
    code: 'invalid_snapshot_state',
    params: { snapshot_id: 802, operation: 'restored', reason: 'it is still being created' },
    extra: { snapshot_status: 'in_progress' },
  }),
  action_not_undoable: problem('Not a succeeded restore, or its safety copy has expired', {
    status: 400,
    code: 'action_not_undoable',
    params: { action_id: 9003, reason: 'expired' },
    extra: { action_id: 9003, reason: 'expired' },
  }),
  idempotency_key_reused: problem('The same Idempotency-Key with a different request', {
    status: 400,
    code: 'idempotency_key_reused',
  }),
  idempotency_key_in_use: problem('The first request with this Idempotency-Key is still being processed', {
    status: 409,
    code: 'idempotency_key_in_use',
  }),
  backup_limit_reached: problem('The server already has 10 live manual backups', {
    status: 400,
    code: 'backup_limit_reached',
    params: { limit: 10, used: 10, server_id: 12345 },
    extra: { limit: 10, used: 10, server_id: 12345 },
  }),
  invalid_backup_state: problem('The backup is not completed, or is being restored from', {
    status: 400,
    code: 'invalid_backup_state',
    params: { backup_id: 3101, operation: 'restored', reason: 'in_progress' },
    extra: { backup_status: 'in_progress' },
  }),
  snapshot_protected: problem('The snapshot is protected against deletion', deleteProtected('snapshot', 801)),
  snapshot_protected_cy: problem('The same with Accept-Language: cy', deleteProtected('snapshot', 801), 'cy'),
  backup_protected: problem('The backup is protected against deletion', deleteProtected('backup', 3101)),
  backup_not_found: problem(
    'Absent, deleted, another account’s, or not an id',
    problems.notFound('backup_not_found'),
  ),
  backup_not_found_cy: problem(
    'The same with Accept-Language: cy',
    problems.notFound('backup_not_found'),
    'cy',
  ),
  snapshot_not_found: problem(
    'Absent, deleted, another account’s, or not an id',
    problems.notFound('snapshot_not_found'),
  ),
  snapshot_not_found_cy: problem(
    'The same with Accept-Language: cy',
    problems.notFound('snapshot_not_found'),
    'cy',
  ),
  server_not_found: problem('Absent, another account’s, or not an id', problems.notFound('server_not_found')),
  action_not_found: problem('Absent, another account’s, or not an id', problems.notFound('action_not_found')),
  token_not_found: problem('Absent, another account’s, or not an id', problems.notFound('token_not_found')),
  account_not_found: problem('No such account', problems.notFound('account_not_found')),
  node_not_found: problem('No such node', problems.notFound('node_not_found')),
  page_not_found: problem('A page past the last one', problems.notFound('page_not_found')),
  conflict: problem('The name is taken', {
    status: 409,
    code: 'conflict',
    params: { what: 'node "hv1" exists' },
  }),
  uri_too_long: problem(`A URL over ${MAX_URL_BYTES} bytes`, {
    status: 414,
    code: 'uri_too_long',
    params: { limit: MAX_URL_BYTES },
  }),
  payload_too_large: problem('The body exceeds BODY_LIMIT (64 KiB by default)', {
    status: 413,
    code: 'payload_too_large',
    params: { limit: 65536 },
  }),
  unsupported_media_type: problem('A body that is not application/json', {
    status: 415,
    code: 'unsupported_media_type',
  }),
  rate_limited: problem(
    'Too many writes for this token',
    rateLimited({ limit: 120, retry_after: 12, limit_scope: 'token', limit_kind: 'writes' }),
  ),
  rate_limited_account: problem(
    'Too many requests for the account, all its tokens together',
    rateLimited({ limit: 3000, retry_after: 40, limit_scope: 'account', limit_kind: 'requests' }),
  ),
  internal_error: problem('A fault on our side', { status: 500, code: 'internal_error' }),
  service_unavailable: problem('A dependency is down', {
    status: 503,
    code: 'service_unavailable',
    params: { what: 'Redis' },
    extra: { checks: { postgres: 'up', redis: 'down' } },
  }),
  webhook_not_found: problem(
    'Absent, another account’s, or not an id',
    problems.notFound('webhook_not_found'),
  ),
  webhook_limit_reached: problem('The account already has the most webhooks it may', {
    status: 400,
    code: 'webhook_limit_reached',
    params: { limit: 10, used: 10 },
    extra: { limit: 10, used: 10 },
  }),
  webhook_url_not_allowed: problem('A URL that resolves to a private address', {
    status: 400,
    code: 'webhook_url_not_allowed',
    messageKey: 'webhook_url_address',
    params: { address: '10.0.0.5' },
    extra: { reason: 'address' },
  }),
  webhook_url_not_allowed_scheme: problem('A plain http URL', {
    status: 400,
    code: 'webhook_url_not_allowed',
    messageKey: 'webhook_url_scheme',
    extra: { reason: 'scheme' },
  }),
  invalid_label_selector: problem('A label_selector that does not parse', {
    status: 400,
    code: 'invalid_label_selector',
    params: { position: 8, reason: 'expected "," or ")"' },
    extra: { label_selector: { position: 8, error: 'expected "," or ")"' } },
  }),
};

export type ProblemExampleKey = keyof typeof PROBLEM_EXAMPLES;
