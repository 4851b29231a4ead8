/**
 * Turns a driver's frequent progress callbacks into at most one write per interval (and never a write
 * for an unchanged value). Writes are serialised; a failing write is logged by the caller's `write` and
 * does not fail the copy.
 */
export class ProgressReporter {
  private lastWritten = -1;
  private lastAt: number;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly intervalMs: number,
    private readonly write: (pct: number) => Promise<void>,
    private readonly now: () => number = Date.now,
  ) {
    // The first write comes one interval after the start, not at once: a copy quicker than that is
    // recorded by its result alone (progress 0 is what the row says already).
    this.lastAt = now();
  }

  report = (pct: number): void => {
    const value = Math.max(0, Math.min(99, Math.floor(pct))); // 100 is written with the result.
    if (value <= this.lastWritten) return;
    const t = this.now();
    if (t - this.lastAt < this.intervalMs) return;
    this.lastWritten = value;
    this.lastAt = t;
    this.pending = this.pending.then(() => this.write(value)).catch(() => undefined);
  };

  /** Waits for writes in flight (call before recording the result, so a late progress write cannot land after it). */
  flush(): Promise<void> {
    return this.pending;
  }
}
