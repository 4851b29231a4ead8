import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { StatementPool } from '../prisma/statement-pool';

/** The advisory-lock namespace of action runs (the two-key form: this class, the action's id). */
const NAMESPACE = "hashtext('admin-vps:action-run')";

/**
 * One attempt at a time per action, across every worker process: an attempt holds a Postgres
 * session-level advisory lock on its action while it runs. The queue is at-least-once — a worker whose
 * job lock lapses (a starved event loop, a slow Redis) has its job handed to another attempt while the
 * first is still copying — and two restores writing one disk at once leave neither disk. The lock lives
 * as long as the session: a worker that dies releases it with its connection, so a real takeover is
 * never blocked.
 */
@Injectable()
export class ActionRunLocks implements OnModuleDestroy {
  // A session per run inside a hypervisor slot, and per run writing its outcome after leaving it.
  private readonly pool: StatementPool;

  constructor(config: AppConfig) {
    this.pool = new StatementPool(config.databaseUrl, 2 * config.workerConcurrency);
  }

  /**
   * Holds the action's lock, answering its release; null when another attempt holds it now (this one
   * must not run the action: the holder ends it, or, if its process dies, the next attempt does).
   */
  async tryHold(actionId: number): Promise<(() => Promise<void>) | null> {
    const client = await this.pool.connect();
    try {
      const { rows } = await client.query<{ held: boolean }>({
        name: 'action-run-lock',
        text: `SELECT pg_try_advisory_lock(${NAMESPACE}, $1::int) AS held`,
        values: [actionId],
      });
      if (!rows[0]?.held) {
        client.release();
        return null;
      }
    } catch (e) {
      client.release(true);
      throw e;
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      try {
        await client.query({
          name: 'action-run-unlock',
          text: `SELECT pg_advisory_unlock(${NAMESPACE}, $1::int)`,
          values: [actionId],
        });
        client.release();
      } catch {
        client.release(true); // a broken session has dropped its locks with it
      }
    };
  }

  async onModuleDestroy(): Promise<void> {
    await this.pool.close();
  }
}
