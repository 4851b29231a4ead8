import { Injectable } from '@nestjs/common';
import { Clock } from '../common/clock';
import { PrismaService } from '../prisma/prisma.service';
import { Principal, Scope, SCOPES } from './principal';
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
        ...(row.listing_version !== null ? { listingVersion: row.listing_version } : {}),
      });
    }
    for (const h of asked) if (!known.has(h)) this.unknown.add(h, now.getTime());
    if (touch.length) await this.store.touch(touch, now);
    return found;
  }

  /** Creates a token; the returned `token` is the only time the secret exists outside its holder. */
  async create(input: {
    accountId: number;
    name: string;
    scopes: Scope[];
    expiresAt: Date | null;
  }): Promise<{ token: string; record: TokenRecord }> {
    const token = generateToken();
    const hash = hashToken(token);
    this.unknown.forget(hash);
    const record = await this.prisma.apiToken.create({
      data: {
        accountId: input.accountId,
        name: input.name,
        prefix: displayPrefix(token),
        hash,
        scopes: [...new Set(input.scopes)],
        expiresAt: input.expiresAt,
      },
      select: TOKEN_COLUMNS,
    });
    return { token, record };
  }

  list(accountId: number): Promise<TokenRecord[]> {
    return this.prisma.apiToken.findMany({
      where: { accountId },
      orderBy: { id: 'desc' },
      select: TOKEN_COLUMNS,
    });
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
