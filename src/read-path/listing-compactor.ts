import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { PrismaService } from '../prisma/prisma.service';

/**
 * Keeps `listing_changes` small: folds the rows of every account that has more than one into a single
 * row carrying their sum, in one statement (so every account's version is the same before and after,
 * for every reader). Rows inserted meanwhile are not seen by the statement and stay. Safe to run on
 * every API replica at once: each statement re-inserts exactly the weights it deleted.
 */
@Injectable()
export class ListingCompactor implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(ListingCompactor.name);
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly prisma: PrismaService,
    private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    const every = this.config.listingCompactIntervalMs;
    if (every === 0) return;
    const tick = () => {
      if (this.running) return;
      this.running = this.compactAll()
        .catch((err: unknown) => this.logger.warn({ err }, 'listing_changes compaction failed; will retry'))
        .finally(() => (this.running = null));
    };
    setImmediate(tick);
    this.timer = setInterval(tick, every);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** Folds every account's rows, `accounts` accounts per statement (so each statement stays short). */
  async compactAll(accounts = 5000): Promise<number> {
    let removed = 0;
    for (;;) {
      const round = await this.compactSome(accounts);
      removed += round.removed;
      if (round.accounts < accounts) return removed; // every account that had rows to fold is done
    }
  }

  /** Folds the rows of up to `accounts` accounts; returns how many rows it removed. */
  async compact(accounts = 5000): Promise<number> {
    return (await this.compactSome(accounts)).removed;
  }

  private async compactSome(accounts: number): Promise<{ accounts: number; removed: number }> {
    const [row] = await this.prisma.$queryRaw<{ removed: bigint; accounts: bigint }[]>`
      WITH heavy AS (
        SELECT account_id FROM listing_changes GROUP BY account_id HAVING count(*) > 1 LIMIT ${accounts}
      ), gone AS (
        DELETE FROM listing_changes c USING heavy h WHERE c.account_id = h.account_id
        RETURNING c.account_id, c.weight
      ), folded AS (
        INSERT INTO listing_changes (account_id, weight)
        SELECT account_id, sum(weight) FROM gone GROUP BY account_id
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM folded) AS removed,
             (SELECT count(*) FROM folded) AS accounts`;
    return { accounts: Number(row?.accounts ?? 0), removed: Number(row?.removed ?? 0) };
  }
}
