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
