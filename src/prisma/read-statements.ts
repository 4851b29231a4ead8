import { Injectable, OnModuleDestroy } from '@nestjs/common';
import type pg from 'pg';
import { AppConfig } from '../config/app-config';
import { StatementPool } from './statement-pool';

/**
 * The named prepared statements of the API's polled reads (parsed and planned once per connection), on a
 * small pool of their own beside Prisma's: Prisma's query compiler and its separate queries for
 * relations cost more CPU than these reads themselves (docs/benchmarks.md, "Where a request's CPU
 * goes"). Opened on first use, so processes that never read this way hold no connection.
 */
@Injectable()
export class ReadStatements implements OnModuleDestroy {
  private readonly pool: StatementPool;

  constructor(config: AppConfig) {
    this.pool = new StatementPool(config.databaseUrl, 4);
  }

  async rows<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]): Promise<R[]> {
    return (await this.pool.query<R>({ name, text, values })).rows;
  }

  async onModuleDestroy(): Promise<void> {
    await this.pool.close();
  }
}
