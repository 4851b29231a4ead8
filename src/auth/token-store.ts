import { Injectable, OnModuleDestroy } from '@nestjs/common';
import pg from 'pg';
import { AppConfig } from '../config/app-config';

export interface TokenRow {
  hash: string;
  id: number;
  account_id: number;
  scopes: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  /** `<epoch>:<sum>` when asked for (see the migration 20261128020000_listing_versions). */
  listing_version: string | null;
}

const COLUMNS = 'hash, id, account_id, scopes, expires_at, revoked_at, last_used_at';
// `::char(64)[]`: compared as text, Postgres could not use the unique index on the char(64) column.
const BY_HASH = `SELECT ${COLUMNS}, NULL::text AS listing_version FROM api_tokens t WHERE t.hash = ANY($1::char(64)[])`;
const BY_HASH_WITH_VERSION = `SELECT ${COLUMNS},
  (SELECT last_value FROM listing_epoch)::text || ':' ||
  (SELECT coalesce(sum(c.weight), 0) FROM listing_changes c WHERE c.account_id = t.account_id)::text AS listing_version
  FROM api_tokens t WHERE t.hash = ANY($1::char(64)[])`;

/**
 * The token lookup every authenticated request makes, on a small pool of its own with prepared
 * statements (parsed and planned once per connection): the hottest query of the service, kept off the
 * ORM and out of the way of the main pool. Everything else about tokens goes through Prisma.
 */
@Injectable()
export class TokenStore implements OnModuleDestroy {
  private current: pg.Pool | null = null;

  constructor(private readonly config: AppConfig) {}

  /**
   * Opened on first use, and again if used after close — as Prisma's client does; passport keeps one
   * strategy per name for the whole process, so an application can be handed another's (tests run
   * several in one process).
   */
  private get pool(): pg.Pool {
    if (!this.current) {
      this.current = new pg.Pool({
        connectionString: this.config.databaseUrl,
        max: 4,
        connectionTimeoutMillis: 5000,
      });
      // An idle connection that breaks is dropped by the pool; the next query opens a new one.
      this.current.on('error', () => undefined);
    }
    return this.current;
  }

  async findByHashes(hashes: string[], withListingVersion: boolean): Promise<TokenRow[]> {
    const { rows } = await this.pool.query<TokenRow>({
      name: withListingVersion ? 'tokens-by-hash-v' : 'tokens-by-hash',
      text: withListingVersion ? BY_HASH_WITH_VERSION : BY_HASH,
      values: [hashes],
    });
    return rows;
  }

  async touch(ids: number[], at: Date): Promise<void> {
    await this.pool.query({
      name: 'tokens-touch',
      text: 'UPDATE api_tokens SET last_used_at = $2 WHERE id = ANY($1::int[])',
      values: [ids, at],
    });
  }

  async onModuleDestroy(): Promise<void> {
    const pool = this.current;
    this.current = null;
    await pool?.end();
  }
}
