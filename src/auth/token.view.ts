import { apiTime } from '../common/clock';
import type { TokenRecord } from './api-token.service';

export function tokenView(t: TokenRecord) {
  return {
    id: t.id,
    name: t.name,
    prefix: t.prefix,
    scopes: t.scopes,
    created_at: apiTime(t.createdAt),
    expires_at: apiTime(t.expiresAt),
    last_used_at: apiTime(t.lastUsedAt),
    revoked_at: apiTime(t.revokedAt),
  };
}

/** What the audit log records of a new token, whoever made it (API or CLI): what it may do, until when. */
export function tokenAuditDetail(view: Pick<ReturnType<typeof tokenView>, 'scopes' | 'expires_at'>) {
  return { scopes: view.scopes, expires_at: view.expires_at };
}
