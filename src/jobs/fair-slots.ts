interface Waiter {
  grant: () => void;
}

interface AccountState {
  running: number;
  waiting: Waiter[];
  /** When the account last got a slot (a turn counter): the longest unserved account goes first. */
  servedAt: number;
}

/**
 * The hypervisor slots of one worker, shared fairly between accounts: at most `capacity` operations at
 * once and at most `perAccount` of one account. A free slot goes to the waiting account with the fewest
 * operations running, then to the one served least recently (round-robin), then to its oldest waiter.
 *
 * An account holds at most twice its share here, running and waiting together: `tryEnter` answers
 * null beyond that, and the caller hands the job back to the queue, so one account's jobs never fill the
 * worker while other accounts' jobs sit in the queue. `onRoom(account)` is called each time one of the
 * account's operations ends (it may hold one more job again).
 */
export class FairSlots {
  private free: number;
  private turn = 0;
  private readonly accounts = new Map<number, AccountState>();

  constructor(
    readonly capacity: number,
    readonly perAccount: number,
    private readonly onRoom: (account: number) => void = () => undefined,
  ) {
    for (const [name, v] of [
      ['capacity', capacity],
      ['perAccount', perAccount],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1`);
    }
    this.free = capacity;
  }

  /** Operations running now (all accounts). */
  get inUse(): number {
    return this.capacity - this.free;
  }

  /** Operations of `account` running now. */
  running(account: number): number {
    return this.accounts.get(account)?.running ?? 0;
  }

  /**
   * As `enter`, unless the account already holds twice its share here (running and waiting): then
   * null, and the caller hands the job back to the queue.
   */
  tryEnter(account: number, signal?: AbortSignal): Promise<() => void> | null {
    const a = this.accounts.get(account);
    if (a && a.running + a.waiting.length >= 2 * this.perAccount) return null;
    return this.enter(account, signal);
  }

  /**
   * Resolves with a release function (call it once) when the account may run one more operation;
   * rejects with an AbortError if `signal` aborts first.
   */
  enter(account: number, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError());
    const a = this.stateOf(account);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser(account));
        },
      };
      const onAbort = (): void => {
        const i = a.waiting.indexOf(waiter);
        if (i >= 0) a.waiting.splice(i, 1);
        this.forgetIfIdle(account, a);
        reject(abortError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      a.waiting.push(waiter);
      this.dispatch();
    });
  }

  private stateOf(account: number): AccountState {
    let a = this.accounts.get(account);
    if (!a) {
      a = { running: 0, waiting: [], servedAt: -1 };
      this.accounts.set(account, a);
    }
    return a;
  }

  /** Hands free slots to waiters, fairest first. Linear in the accounts holding jobs (≤ jobs held). */
  private dispatch(): void {
    while (this.free > 0) {
      let best: AccountState | undefined;
      for (const a of this.accounts.values()) {
        if (a.waiting.length === 0 || a.running >= this.perAccount) continue;
        if (!best || a.running < best.running || (a.running === best.running && a.servedAt < best.servedAt))
          best = a;
      }
      if (!best) return;
      this.free--;
      best.running++;
      best.servedAt = this.turn++;
      best.waiting.shift()!.grant();
    }
  }

  private releaser(account: number): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const a = this.accounts.get(account)!;
      a.running--;
      this.free++;
      this.forgetIfIdle(account, a);
      this.dispatch();
      this.onRoom(account);
    };
  }

  /** An account with nothing running or waiting is dropped, so the map holds only accounts in play. */
  private forgetIfIdle(account: number, a: AccountState): void {
    if (a.running === 0 && a.waiting.length === 0) this.accounts.delete(account);
  }
}

function abortError(): Error {
  const e = new Error('aborted while waiting for a hypervisor slot');
  e.name = 'AbortError';
  return e;
}
