/** Sources followed at most in one minute (~100 bytes each); the others share one budget. */
export const AUTH_FAILURE_SOURCES_MAX = 10_000;
/** The key of the budget that sources past AUTH_FAILURE_SOURCES_MAX share. */
const OVERFLOW = '';

/**
 * How many token lookups that found no valid token each client address may cause per minute on this
 * replica: random well-formed tokens are all different, so no cache of unknown hashes can spare the
 * database their lookups; a budget per source can. Minutes are fixed windows; each source's count and
 * the set of sources start empty at each. Memory is bounded by AUTH_FAILURE_SOURCES_MAX; every
 * operation is O(1).
 */
export class AuthFailureBudget {
  private window = -1;
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly perMinute: number,
    private readonly maxSources = AUTH_FAILURE_SOURCES_MAX,
  ) {}

  /** Whether `source` has used up this minute's budget (never, when the budget is 0: off). */
  exhausted(source: string, nowMs: number): boolean {
    if (this.perMinute === 0) return false;
    this.roll(nowMs);
    return (this.failures.get(this.keyOf(source)) ?? 0) >= this.perMinute;
  }

  /** Counts one lookup from `source` that found no valid token. */
  fail(source: string, nowMs: number): void {
    if (this.perMinute === 0) return;
    this.roll(nowMs);
    const key = this.keyOf(source);
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
  }

  private keyOf(source: string): string {
    return this.failures.has(source) || this.failures.size < this.maxSources ? source : OVERFLOW;
  }

  private roll(nowMs: number): void {
    const window = Math.floor(nowMs / 60_000);
    if (window === this.window) return;
    this.window = window;
    this.failures.clear();
  }
}
