/** How long a hash that matched no token is remembered. */
export const UNKNOWN_TOKEN_TTL_MS = 5000;
/** How many such hashes are remembered at most (~150 bytes each); the oldest go first. */
export const UNKNOWN_TOKEN_MAX_ENTRIES = 10_000;

/**
 * SHA-256 hashes of well-formed tokens that matched no row, each remembered for a few seconds, so that
 * a client repeating a wrong or deleted token does not cost a database round trip per request. Only
 * hashes without a row go in: a token that exists — valid, expired or revoked — is looked up every
 * time, so a revocation is never delayed. A token becomes known only by being created, whose secret no
 * one could have sent before; creating one here forgets its hash all the same.
 *
 * Entries expire in the order they were added (one TTL for all), so the oldest are at the front of the
 * Map: adding sweeps expired ones from the front and, when full, drops the oldest. Every operation is
 * O(1) amortised and the size never exceeds `maxEntries`.
 */
export class UnknownTokenCache {
  /** Hash → when it stops counting as unknown (ms since the epoch), in insertion order. */
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs = UNKNOWN_TOKEN_TTL_MS,
    private readonly maxEntries = UNKNOWN_TOKEN_MAX_ENTRIES,
  ) {}

  has(hash: string, nowMs: number): boolean {
    const until = this.until.get(hash);
    if (until === undefined) return false;
    if (until > nowMs) return true;
    this.until.delete(hash);
    return false;
  }

  /**
   * Remembers `hash` for the TTL from `nowMs`. A hash added less than a tenth of the TTL ago stays where
   * it is, with its expiry (at most that much earlier): a hash added again on every request, as the
   * valid tokens' are, costs no Map churn, and the expiries stay in the Map's order.
   */
  add(hash: string, nowMs: number): void {
    const until = this.until.get(hash);
    if (until !== undefined && until - nowMs > this.ttlMs - this.ttlMs / 10) return;
    this.until.delete(hash); // re-added at the back, with a new expiry
    for (const [oldest, until] of this.until) {
      if (until > nowMs && this.until.size < this.maxEntries) break;
      this.until.delete(oldest);
    }
    this.until.set(hash, nowMs + this.ttlMs);
  }

  forget(hash: string): void {
    this.until.delete(hash);
  }

  get size(): number {
    return this.until.size;
  }
}
