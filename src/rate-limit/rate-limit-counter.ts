import { Injectable, Logger } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { MicroBatcher } from '../common/micro-batcher';
import { RateLimiter, RateSubject, RateVerdict } from './rate-limiter';

/** Where a request keeps its count: on itself (see TokenBatcher). */
const COUNT = Symbol('rateLimitCount');
type Counted = IncomingMessage & { [COUNT]?: Promise<RateVerdict | null> };

/**
 * The rate-limit count of every authenticated request, batched: one Redis call per token and turn of
 * the event loop (INCRBY n on the token's and its account's counters), each request getting the verdict
 * of its own position in the count — its own headers and 429, exactly as one by one. Null when Redis
 * could not be reached (the request is let through). Once per request: the front of the pipeline
 * (src/read-path) and the rate-limit guard share the count.
 */
@Injectable()
export class RateLimitCounter {
  private readonly logger = new Logger(RateLimitCounter.name);
  private readonly reads: MicroBatcher<RateSubject, RateVerdict | null>;
  private readonly writes: MicroBatcher<RateSubject, RateVerdict | null>;

  constructor(private readonly limiter: RateLimiter) {
    this.reads = new MicroBatcher((subjects) => this.countBatch(subjects, false));
    this.writes = new MicroBatcher((subjects) => this.countBatch(subjects, true));
  }

  /** Counts one request of `who` (batched with the others of this turn). */
  count(who: RateSubject, isWrite: boolean): Promise<RateVerdict | null> {
    return (isWrite ? this.writes : this.reads).load(who);
  }

  /** The verdict of this request: counted once, however many parts of the pipeline ask. */
  verdictOf(req: IncomingMessage, who: RateSubject, isWrite: boolean): Promise<RateVerdict | null> {
    const known = (req as Counted)[COUNT];
    if (known) return known;
    const verdict = this.count(who, isWrite);
    this.remember(req, verdict);
    return verdict;
  }

  /** Records a count already made for this request (the front of the pipeline counts before it knows it will hand on). */
  remember(req: IncomingMessage, verdict: Promise<RateVerdict | null>): void {
    (req as Counted)[COUNT] = verdict;
  }

  /** One count per token of the batch; each request gets the verdict of its own position. */
  private async countBatch(subjects: RateSubject[], isWrite: boolean): Promise<(RateVerdict | null)[]> {
    const now = Date.now();
    const positions = new Map<number, { who: RateSubject; at: number[] }>();
    subjects.forEach((who, i) => {
      const seen = positions.get(who.tokenId);
      if (seen) seen.at.push(i);
      else positions.set(who.tokenId, { who, at: [i] });
    });
    const out = new Array<RateVerdict | null>(subjects.length).fill(null);
    await Promise.all(
      [...positions.values()].map(async ({ who, at }) => {
        const verdicts = await this.limiter.consume(who, isWrite, at.length, now);
        if (!verdicts) this.logger.warn('rate limit store unreachable; request let through');
        at.forEach((pos, j) => (out[pos] = verdicts ? verdicts[j] : null));
      }),
    );
    return out;
  }
}
