import { Injectable } from '@nestjs/common';
import { apiTime, Clock } from '../common/clock';
import { FieldError, ProblemException, problems } from '../common/problem';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';
import { ReadStatements } from '../prisma/read-statements';
import { isAdmin, Principal, Scope, SCOPES } from './principal';
import { TokenStore } from './token-store';
import { displayPrefix, generateToken, hashToken, looksLikeToken } from './token-codec';
import { UnknownTokenCache } from './unknown-token-cache';

/** `last_used_at` is written at most this often per token, so reads do not each cost a write. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** A valid token's principal, with its account's listing version when asked for (the hot read path). */
export interface AuthenticatedToken extends Principal {
  /** `<epoch>:<sum>` (see the migration 20261128020000_listing_versions); changes with any listed data. */
  listingVersion?: string;
}

/** The field error of a new token asking for scopes its creator lacks. */
export const scopesNotHeld = (held: readonly string[]): FieldError => ({
  field: 'scopes',
  message: `scopes must be a subset of this token's scopes (${held.join(', ')})`,
});

export interface TokenRecord {
  id: number;
  accountId: number;
  name: string;
  prefix: string;
  scopes: string[];
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
}

interface NewToken {
  accountId: number;
  name: string;
  scopes: Scope[];
  expiresAt: Date | null;
}

/** A token row as SQL returns it (the columns of TokenRecord). */
interface TokenSqlRow {
  id: number;
  name: string;
  prefix: string;
  scopes: string[];
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: Date;
}

/** The row of `api_token_create_checked`: the live tokens counted, then the new token, if it was made. */
type CreatedRow = { used: number } & ({ [K in keyof TokenSqlRow]: null } | TokenSqlRow);

/** An account's tokens, newest first: the tokens list (`GET /api/v1/tokens/`), one prepared statement. */
const TOKENS_OF_ACCOUNT = `SELECT id, name, prefix, scopes, expires_at, last_used_at, revoked_at, created_at
  FROM api_tokens WHERE account_id = $1 ORDER BY id DESC`;

function recordOf(accountId: number, row: TokenSqlRow): TokenRecord {
  return {
    id: row.id,
    accountId,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    createdAt: row.created_at,
  };
}

const TOKEN_COLUMNS = {
  id: true,
  accountId: true,
  name: true,
  prefix: true,
  scopes: true,
  expiresAt: true,
  lastUsedAt: true,
  revokedAt: true,
  createdAt: true,
} as const;

@Injectable()
export class ApiTokenService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly clock: Clock,
    private readonly store: TokenStore,
    private readonly config: AppConfig,
    private readonly reads: ReadStatements,
  ) {}

  /** Hashes that matched no token a moment ago (see UnknownTokenCache). */
  private readonly unknown = new UnknownTokenCache();

  /**
   * The principal of a valid token, or null for a malformed, unknown, expired or revoked one.
   *
   * A token that exists is never cached, on purpose: every request reads its token row (one
   * primary-key-sized index lookup on the unique hash), so a revocation committed by any replica, the
   * CLI or SQL is refused by every replica on the very next request. Only a hash that matched no row
   * is remembered for a few seconds (UnknownTokenCache), so a client repeating a wrong token does not
   * cost a round trip per request. A prepared statement on a pool of its own (TokenStore): the query
   * compiler of Prisma's Rust-free client cost more CPU than the lookup itself on this hottest of paths
   * (docs/benchmarks.md).
   */
  async authenticate(token: string): Promise<Principal | null> {
    return (await this.authenticateMany([token])).get(token) ?? null;
  }

  /**
   * `authenticate` for several tokens in one statement (the hot read path looks up the tokens of all
   * requests that arrived together at once). Same rules, same freshness: the statement runs after
   * every one of those requests arrived.
   */
  async authenticateMany(
    tokens: string[],
    opts: { listingVersion?: boolean } = {},
  ): Promise<Map<string, AuthenticatedToken | null>> {
    const found = new Map<string, AuthenticatedToken | null>();
    const hashOf = new Map<string, string>();
    for (const token of tokens) if (looksLikeToken(token)) hashOf.set(token, hashToken(token));
    const byHash = await this.authenticateHashes([...new Set(hashOf.values())], opts);
    for (const token of tokens) {
      const hash = hashOf.get(token);
      found.set(token, hash === undefined ? null : (byHash.get(hash) ?? null));
    }
    return found;
  }

  /**
   * `authenticateMany` for tokens already hashed (SHA-256 hex of well-formed tokens), keyed by hash.
   * Hashes that matched no row a moment ago are not asked again.
   */
  async authenticateHashes(
    hashes: string[],
    opts: { listingVersion?: boolean } = {},
  ): Promise<Map<string, AuthenticatedToken | null>> {
    const found = new Map<string, AuthenticatedToken | null>(hashes.map((h) => [h, null]));
    const askedAt = this.clock.now().getTime();
    const asked = [...found.keys()].filter((h) => !this.unknown.has(h, askedAt));
    if (asked.length === 0) return found;
    const rows = await this.store.findByHashes(asked, opts.listingVersion === true);
    const now = this.clock.now();
    const touch: number[] = [];
    const known = new Set<string>();
    for (const row of rows) {
      known.add(row.hash);
      if (!found.has(row.hash) || row.revoked_at || (row.expires_at && row.expires_at <= now)) continue;
      if (!row.last_used_at || now.getTime() - row.last_used_at.getTime() >= LAST_USED_RESOLUTION_MS) {
        touch.push(row.id);
      }
      found.set(row.hash, {
        accountId: row.account_id,
        tokenId: row.id,
        scopes: row.scopes.filter(isScope),
        expiresAt: row.expires_at,
        ...(row.listing_version !== null ? { listingVersion: row.listing_version } : {}),
      });
    }
    for (const h of asked) if (!known.has(h)) this.unknown.add(h, now.getTime());
    if (touch.length) await this.store.touch(touch, now);
    return found;
  }

  /**
   * A token made by a token (`POST /api/v1/tokens/`): never more than its parent. Its scopes are a
   * subset of the parent's (default: the parent's; an admin parent may give any), it expires no later
   * than the parent (default: when the parent does), and the account holds at most
   * `TOKENS_PER_ACCOUNT_MAX` live tokens, counted under a lock of the account row (see `create`).
   */
  async createFromToken(
    parent: Principal,
    request: { name: string; scopes?: Scope[]; expiresInDays?: number },
  ): Promise<{ token: string; record: TokenRecord }> {
    const errors: FieldError[] = [];
    const scopes = request.scopes ?? parent.scopes;
    if (!isAdmin(parent) && scopes.some((s) => !parent.scopes.includes(s))) {
      errors.push(scopesNotHeld(parent.scopes));
    }
    const expiresAt =
      request.expiresInDays !== undefined
        ? new Date(this.clock.now().getTime() + request.expiresInDays * 86_400_000)
        : parent.expiresAt;
    if (parent.expiresAt && (!expiresAt || expiresAt > parent.expiresAt)) {
      errors.push({
        field: 'expires_in_days',
        message: `expires_in_days must not take the token past this token's expiry (${apiTime(parent.expiresAt)})`,
      });
    }
    if (errors.length) throw problems.validation(errors);
    const limit = this.config.tokensPerAccountMax;
    const made = await this.create(
      { accountId: parent.accountId, name: request.name, scopes, expiresAt },
      limit,
    );
    if (!made.record) {
      throw new ProblemException({
        status: 400,
        code: 'token_limit_reached',
        params: { limit, used: made.used },
        extra: { limit, used: made.used },
      });
    }
    return { token: made.token, record: made.record };
  }

  /**
   * Creates a token (the operator CLI: any scopes, any expiry, no cap). The returned `token` is the
   * only time the secret exists outside its holder.
   */
  async createAsOperator(input: NewToken): Promise<{ token: string; record: TokenRecord }> {
    const { token, record } = await this.create(input, null);
    if (!record) throw new Error('token not created'); // cannot happen: without a cap the insert always runs
    return { token, record };
  }

  /**
   * One statement, no interactive transaction: lock the account row (FOR NO KEY UPDATE subquery: token
   * creations of the account wait for each other, its other writes' foreign-key checks do not), then,
   * for the locked row, `api_token_create_checked` (prisma/sql/functions) counts the live tokens from
   * a snapshot taken after the lock is held (VOLATILE) and inserts the token only under `limit` (null:
   * no cap). Concurrent creations therefore never exceed the cap. `record` is null when it was reached;
   * `used` is the count of live tokens before this one.
   */
  private async create(
    input: NewToken,
    limit: number | null,
  ): Promise<{ token: string; record: TokenRecord | null; used: number }> {
    const token = generateToken();
    const hash = hashToken(token);
    this.unknown.forget(hash);
    const [row] = await this.prisma.$queryRaw<CreatedRow[]>`
      SELECT c.* FROM (SELECT id FROM accounts WHERE id = ${input.accountId}::int FOR NO KEY UPDATE) a
      CROSS JOIN LATERAL api_token_create_checked(a.id, ${input.name}::varchar, ${displayPrefix(token)}::varchar,
        ${hash}::char(64), ${[...new Set(input.scopes)]}::text[], ${input.expiresAt}::timestamptz,
        ${this.clock.now()}::timestamptz, ${limit}::int) c`;
    if (!row) throw problems.notFound('account_not_found');
    const record = row.id === null ? null : recordOf(input.accountId, row);
    return { token, record, used: row.used };
  }

  /**
   * The account's tokens. A prepared statement (ReadStatements) rather than Prisma: its query compiler
   * cost more CPU than the read itself (docs/benchmarks.md, "Where a request's CPU goes").
   */
  async list(accountId: number): Promise<TokenRecord[]> {
    const rows = await this.reads.rows<TokenSqlRow>('tokens-of-account', TOKENS_OF_ACCOUNT, [accountId]);
    return rows.map((row) => recordOf(accountId, row));
  }

  /** Revokes a token of the account (or any token when accountId is null). Returns false if none matched. */
  async revoke(
    where: { id: number } | { prefix: string },
    accountId: number | null,
  ): Promise<TokenRecord | null> {
    const token = await this.prisma.apiToken.findFirst({
      where: { ...where, ...(accountId === null ? {} : { accountId }) },
      select: { id: true },
    });
    if (!token) return null;
    await this.prisma.apiToken.updateMany({
      where: { id: token.id, revokedAt: null },
      data: { revokedAt: this.clock.now() },
    });
    return this.prisma.apiToken.findUniqueOrThrow({ where: { id: token.id }, select: TOKEN_COLUMNS });
  }
}

function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}
