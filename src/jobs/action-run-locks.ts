import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import pg from 'pg';
import { AppConfig } from '../config/app-config';
import { StatementPool } from '../prisma/statement-pool';

/** The advisory-lock namespace of action runs (the two-key form: this class, the action's id). */
const NAMESPACE = "hashtext('admin-vps:action-run')";

/**
 * One attempt at a time per action, across every worker process: an attempt holds a Postgres
 * session-level advisory lock on its action while it runs. The queue is at-least-once — a worker whose
 * job lock lapses (a starved event loop, a slow Redis) has its job handed to another attempt while the
 * first is still copying — and two restores writing one disk at once leave neither disk.
 *
 * All of a worker's locks live on one session of its own, kept open (a pooled connection would be
 * closed when idle, dropping them): taking one costs a query on a warm connection, never a connection's
 * set-up on an operation's start. Session locks are re-entrant within their session, so attempts in this
 * process are also kept apart here. A worker that dies drops its locks with its session, so a real
 * takeover is never blocked; if the session breaks, its locks are gone (logged) and the next one opens.
 */
@Injectable()
export class ActionRunLocks implements OnModuleDestroy {
  private readonly logger = new Logger(ActionRunLocks.name);
  private readonly pool: StatementPool;
  private session: Promise<pg.PoolClient> | null = null;
  /** Actions whose lock this process holds. */
  private readonly held = new Set<number>();

  constructor(config: AppConfig) {
    this.pool = new StatementPool(config.databaseUrl, 1);
  }

  /**
   * Holds the action's lock, answering its release; null when another attempt holds it now (this one
   * must not run the action: the holder ends it, or, if its process dies, the next attempt does).
   */
  async tryHold(actionId: number): Promise<(() => Promise<void>) | null> {
    if (this.held.has(actionId)) return null;
    this.held.add(actionId);
    try {
      const { rows } = await this.query<{ held: boolean }>({
        name: 'action-run-lock',
        text: `SELECT pg_try_advisory_lock(${NAMESPACE}, $1::int) AS held`,
        values: [actionId],
      });
      if (!rows[0]?.held) {
        this.held.delete(actionId);
        return null;
      }
    } catch (e) {
      this.held.delete(actionId);
      throw e;
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.held.delete(actionId);
      await this.query({
        name: 'action-run-unlock',
        text: `SELECT pg_advisory_unlock(${NAMESPACE}, $1::int)`,
        values: [actionId],
      }).catch(() => undefined); // a broken session has dropped its locks with it
    };
  }

  async onModuleDestroy(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session) (await session.catch(() => null))?.release();
    await this.pool.close();
  }

  private async query<R extends pg.QueryResultRow>(q: pg.QueryConfig): Promise<pg.QueryResult<R>> {
    const session = (this.session ??= this.openSession());
    try {
      return await (await session).query<R>(q);
    } catch (e) {
      // A session that failed a query is not trusted with locks again: drop it (and what it held).
      this.dropSession(session);
      throw e;
    }
  }

  private openSession(): Promise<pg.PoolClient> {
    const session: Promise<pg.PoolClient> = this.pool.connect().then((client) => {
      client.on('error', (err) => {
        this.logger.warn({ err, held: [...this.held] }, 'action lock session lost; its locks are gone');
        this.dropSession(session);
      });
      return client;
    });
    return session;
  }

  private dropSession(session: Promise<pg.PoolClient>): void {
    if (this.session !== session) return;
    this.session = null;
    void session.then(
      (client) => client.release(true),
      () => undefined,
    );
  }
}
