import { Injectable } from '@nestjs/common';
import { Clock } from '../common/clock';
import { StorePings } from './store-pings';

export interface StoreChecks {
  postgres: boolean;
  redis: boolean;
}

/** How long one answer of the stores is reused for every readiness probe that asks. */
export const READINESS_REUSE_MS = 1000;

/**
 * Whether Postgres and Redis answer, as `/readyz` reports it. Readiness is public (no token), so it
 * must not turn each hit into a round trip to both stores: an answer is reused for a second after it
 * came, and probes that arrive while the stores are being asked wait for that one answer. A probe
 * therefore sees an outage (or its end) at most about a second late, and the stores see at most one
 * readiness ping a second from each process, however often it is probed.
 */
@Injectable()
export class Readiness {
  private last: { at: number; checks: StoreChecks } | null = null;
  private asking: Promise<StoreChecks> | null = null;

  constructor(
    private readonly pings: StorePings,
    private readonly clock: Clock,
  ) {}

  check(): Promise<StoreChecks> {
    if (this.last && this.clock.now().getTime() - this.last.at < READINESS_REUSE_MS) {
      return Promise.resolve(this.last.checks);
    }
    this.asking ??= this.ask().finally(() => (this.asking = null));
    return this.asking;
  }

  private async ask(): Promise<StoreChecks> {
    const [postgres, redis] = await Promise.all([this.pings.postgres(), this.pings.redis()]);
    this.last = { at: this.clock.now().getTime(), checks: { postgres, redis } };
    return this.last.checks;
  }
}
