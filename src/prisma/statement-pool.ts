import pg from 'pg';

/**
 * A small pg pool of its own for one hot set of named prepared statements (parsed and planned once per
 * connection), beside Prisma's pool: the API's token lookups (TokenStore), the worker's action writes
 * (ActionStore). Opened on first use, and again if used after close — as Prisma's client does (tests run
 * several applications in one process, and passport keeps one strategy per name for the whole process).
 */
export class StatementPool {
  private current: pg.Pool | null = null;

  constructor(
    private readonly connectionString: string,
    private readonly max: number,
  ) {}

  query<R extends pg.QueryResultRow>(q: pg.QueryConfig): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(q);
  }

  /** A connection of its own, for what must stay on one session (an advisory lock); release it. */
  connect(): Promise<pg.PoolClient> {
    return this.pool.connect();
  }

  async close(): Promise<void> {
    const pool = this.current;
    this.current = null;
    await pool?.end();
  }

  private get pool(): pg.Pool {
    if (!this.current) {
      this.current = new pg.Pool({
        connectionString: this.connectionString,
        max: this.max,
        connectionTimeoutMillis: 5000,
      });
      // An idle connection that breaks is dropped by the pool; the next query opens a new one.
      this.current.on('error', () => undefined);
    }
    return this.current;
  }
}
