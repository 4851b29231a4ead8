import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { Clock } from '../common/clock';
import { AppConfig } from '../config/app-config';
import { ActionStore } from './action-store';

/**
 * Proof of life of the worker's running actions for the reaper: every HEARTBEAT_INTERVAL_MS, one
 * statement stamps all of them (the claim stamps each one when it starts). One timer for the worker,
 * running only while some action does, instead of a timer and a statement per action.
 */
@Injectable()
export class Heartbeats implements OnModuleDestroy {
  private readonly running = new Map<number, number>();
  private timer?: NodeJS.Timeout;
  private beating = false;

  constructor(
    private readonly store: ActionStore,
    private readonly config: AppConfig,
    private readonly clock: Clock,
  ) {}

  /** Keeps `actionId` beating until the returned function is called. */
  track(actionId: number): () => void {
    this.running.set(actionId, (this.running.get(actionId) ?? 0) + 1);
    if (!this.timer) {
      this.timer = setInterval(() => void this.beat(), this.config.heartbeatIntervalMs);
      this.timer.unref();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.running.get(actionId) ?? 1) - 1;
      if (n > 0) this.running.set(actionId, n);
      else this.running.delete(actionId);
      if (this.running.size === 0) this.stop();
    };
  }

  /** One statement for every running action (a failed one is tried again at the next tick). */
  async beat(): Promise<void> {
    if (this.beating || this.running.size === 0) return;
    this.beating = true;
    try {
      await this.store.heartbeat([...this.running.keys()], this.clock.now());
    } catch {
      // Postgres unreachable: the next tick tries again; the reaper allows many missed beats.
    } finally {
      this.beating = false;
    }
  }

  onModuleDestroy(): void {
    this.stop();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
