export const SCOPES = ['read', 'write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling: the account of the token and what the token may do. */
export interface Principal {
  accountId: number;
  tokenId: number;
  scopes: Scope[];
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
