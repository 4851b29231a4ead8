import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { StatementPool } from '../prisma/statement-pool';

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
  private readonly pool: StatementPool;

  constructor(config: AppConfig) {
    this.pool = new StatementPool(config.databaseUrl, 4);
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
    await this.pool.close();
  }
}
