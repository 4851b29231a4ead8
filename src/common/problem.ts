import { HttpException } from '@nestjs/common';
import { Lang, message, MessageKey } from './messages';

/** Stable machine-readable codes of every error this API returns (RFC 9457 `code` member). */
export const PROBLEM_CODES = [
  'unauthorized',
  'forbidden',
  'not_found',
  'page_not_found',
  'snapshot_not_found',
  'backup_not_found',
  'server_not_found',
  'action_not_found',
  'token_not_found',
  'node_not_found',
  'account_not_found',
  'validation_failed',
  'malformed_json',
  'unsupported_media_type',
  'payload_too_large',
  'uri_too_long',
  'method_not_allowed',
  'snapshot_limit_reached',
  'backup_limit_reached',
  'token_limit_reached',
  'invalid_server_state',
  'invalid_snapshot_state',
  'invalid_backup_state',
  'action_not_undoable',
  'conflict',
  'rate_limited',
  'idempotency_key_reused',
  'idempotency_key_in_use',
  'service_unavailable',
  'internal_error',
  'webhook_not_found',
  'webhook_limit_reached',
  'webhook_url_not_allowed',
  'protected',
  'invalid_label_selector',
] as const;

export type ProblemCode = (typeof PROBLEM_CODES)[number];

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemSpec {
  status: number;
  code: ProblemCode;
  /** Catalogue key of the `detail` sentence; defaults to `code`. */
  messageKey?: MessageKey;
  params?: Record<string, string | number | null | undefined>;
  errors?: FieldError[];
  /** Extra members, e.g. `limit`, `used`, `server_id`. */
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  request_id: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}

export const PROBLEM_TYPE_BASE = 'https://admin.vps.org/problems/';

/** Throw this from anywhere (services included): the filter turns it into problem details. */
export class ProblemException extends HttpException {
  constructor(readonly spec: ProblemSpec) {
    super(spec.code, spec.status);
  }

  render(lang: Lang, requestId: string): ProblemBody {
    const { status, code, errors, extra } = this.spec;
    return {
      type: PROBLEM_TYPE_BASE + code.replace(/_/g, '-'),
      title: TITLES[status] ?? 'Error',
      status,
      detail: message(this.spec.messageKey ?? (code as MessageKey), lang, this.spec.params),
      code,
      request_id: requestId,
      ...(errors ? { errors } : {}),
      ...(extra ?? {}),
    };
  }
}

export const problems = {
  notFound: (code: Extract<ProblemCode, `${string}not_found`> = 'not_found') =>
    new ProblemException({ status: 404, code }),
  validation: (errors: FieldError[]) =>
    new ProblemException({ status: 400, code: 'validation_failed', errors }),
  unauthorized: () =>
    new ProblemException({
      status: 401,
      code: 'unauthorized',
      headers: { 'WWW-Authenticate': 'Bearer realm="admin.vps.org"' },
    }),
  /** A token sent as an `access_token` query parameter or body member: it goes in the header only. */
  tokenOutsideHeader: (where: 'query' | 'body') =>
    new ProblemException({
      status: 401,
      code: 'unauthorized',
      messageKey: 'token_outside_header',
      params: { where },
      headers: {
        'WWW-Authenticate':
          'Bearer realm="admin.vps.org", error="invalid_request", error_description="send the token in the Authorization header"',
      },
    }),
  forbidden: (scope: string) => new ProblemException({ status: 403, code: 'forbidden', params: { scope } }),
};
