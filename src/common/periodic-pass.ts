import { Logger } from '@nestjs/common';

/**
 * A housekeeping pass run every `everyMs` (0: never on its own) and on demand, never two at once in
 * this process: a call during a pass shares it. Its timer keeps no process alive; `stop()` ends the
 * timer and waits for the pass in flight, so what the pass uses may be closed after it. A failed pass
 * is logged and the next one tries again.
 */
export class PeriodicPass<T> {
  private timer?: NodeJS.Timeout;
  private running: Promise<T> | null = null;

  constructor(
    private readonly pass: () => Promise<T>,
    private readonly logger: Logger,
    private readonly what: string,
  ) {}

  start(everyMs: number): void {
    if (everyMs === 0 || this.timer) return;
    this.timer = setInterval(
      () =>
        void this.run().catch((err: unknown) => this.logger.warn({ err }, `${this.what} failed; will retry`)),
      everyMs,
    );
    this.timer.unref();
  }

  run(): Promise<T> {
    this.running ??= this.pass().finally(() => (this.running = null));
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }
}
