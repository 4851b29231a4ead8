export const SCOPES = ['read', 'write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling: the account of the token, what the token may do, and until when. */
export interface Principal {
  accountId: number;
  tokenId: number;
  scopes: Scope[];
  /** Null: the token does not expire. */
  expiresAt: Date | null;
}

export function isAdmin(p: Principal): boolean {
  return p.scopes.includes('admin');
}

export function hasScope(p: Principal, scope: Scope): boolean {
  return isAdmin(p) || p.scopes.includes(scope);
}

/** Account filter for queries: admins act across accounts, everyone else on their own. */
export function accountScope(p: Principal): { accountId?: number } {
  return isAdmin(p) ? {} : { accountId: p.accountId };
}

/** Methods that change nothing: they need the `read` scope and count only toward the request limits. */
export function isReadMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

/** The scope a request needs: the one its handler declares (@RequireScope), else by its method. */
export function requiredScope(method: string, declared: Scope | undefined): Scope {
  return declared ?? (isReadMethod(method) ? 'read' : 'write');
}
