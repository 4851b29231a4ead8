import { HypervisorMessageKey } from '../../common/messages';
import { cancelled, hvError, sleep } from '../driver-errors';
import { HypervisorError, HypervisorErrorCode } from '../hypervisor-driver';

/** The fake driver's fault injection: which calls fail, wait or hang, and how many were made. */

/** Driver methods that failure injection can target. */
export type FakeInjectableMethod =
  | 'createSnapshot'
  | 'restoreSnapshot'
  | 'deleteSnapshot'
  | 'stop'
  | 'start'
  | 'powerOff'
  | 'shutdown'
  | 'getPowerState'
  | 'observePowerStates'
  | 'openBackupRead'
  | 'restoreDiskFrom';

export const FAKE_INJECTABLE_METHODS: readonly FakeInjectableMethod[] = [
  'createSnapshot',
  'restoreSnapshot',
  'deleteSnapshot',
  'stop',
  'start',
  'powerOff',
  'shutdown',
  'getPowerState',
  'observePowerStates',
  'openBackupRead',
  'restoreDiskFrom',
];

/**
 * A fault to inject. `method: '*'` matches every injectable method.
 * - `fail_nth`: the `n`-th matching call (1-based, counted from the injection) fails, once.
 * - `fail_always`: every matching call fails.
 * - `delay`: every matching call waits `ms` first (abortable through `signal`), then proceeds.
 * - `hang`: every matching call waits until its `signal` aborts (then rejects `cancelled`), or forever
 *   when it has none.
 * A failing call rejects with `error`, or by default `copy_failed` (createSnapshot, restoreSnapshot,
 * restoreDiskFrom) or `hypervisor_error` (the others); both are retryable.
 */
export type FailureInjection =
  | {
      readonly method: FakeInjectableMethod | '*';
      readonly mode: 'fail_nth';
      readonly n: number;
      readonly error?: HypervisorError;
    }
  | {
      readonly method: FakeInjectableMethod | '*';
      readonly mode: 'fail_always';
      readonly error?: HypervisorError;
    }
  | { readonly method: FakeInjectableMethod | '*'; readonly mode: 'delay'; readonly ms: number }
  | { readonly method: FakeInjectableMethod | '*'; readonly mode: 'hang' };

/** Never resolves; rejects `cancelled` when `signal` aborts. Holds no timer, so it keeps no process alive. */
function hang(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (!signal) return;
    if (signal.aborted) return reject(cancelled());
    signal.addEventListener('abort', () => reject(cancelled()), { once: true });
  });
}

interface ActiveInjection {
  readonly spec: FailureInjection;
  calls: number;
}

/** The fake's errors say in their detail that they come from the fake. */
export function fakeError(
  code: HypervisorErrorCode,
  detail: string,
  messageKey?: HypervisorMessageKey,
): HypervisorError {
  return hvError(code, `fake: ${detail}`, messageKey);
}

export class FaultInjector {
  private injections: ActiveInjection[] = [];
  private readonly calls = new Map<FakeInjectableMethod, number>();

  /** Adds a fault. Faults stack; they apply in the order added. */
  inject(failure: FailureInjection): void {
    validateInjection(failure);
    this.injections.push({ spec: failure, calls: 0 });
  }

  /** Removes every fault. Calls already delayed or hanging stay so. */
  clear(): void {
    this.injections = [];
  }

  count(method: FakeInjectableMethod): void {
    this.calls.set(method, this.callCount(method) + 1);
  }

  callCount(method: FakeInjectableMethod): number {
    return this.calls.get(method) ?? 0;
  }

  /** Applies the faults that match `method`, in order: waits, hangs or throws. */
  async apply(method: FakeInjectableMethod, signal: AbortSignal | undefined): Promise<void> {
    for (const injection of [...this.injections]) {
      const { spec } = injection;
      if (spec.method !== '*' && spec.method !== method) continue;
      switch (spec.mode) {
        case 'delay':
          await sleep(spec.ms, signal);
          break;
        case 'hang':
          await hang(signal);
          break;
        case 'fail_always':
          throw spec.error ?? injectedError(method, 'fail_always');
        case 'fail_nth':
          injection.calls += 1;
          if (injection.calls === spec.n) throw spec.error ?? injectedError(method, `fail_nth:${spec.n}`);
          break;
      }
    }
  }
}

function injectedError(method: FakeInjectableMethod, what: string): HypervisorError {
  const copies: readonly FakeInjectableMethod[] = ['createSnapshot', 'restoreSnapshot', 'restoreDiskFrom'];
  const code: HypervisorErrorCode = copies.includes(method) ? 'copy_failed' : 'hypervisor_error';
  return fakeError(code, `injected failure (${what}) in ${method}`);
}

export function nonNegativeInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`FakeHypervisorDriver: ${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function validateInjection(failure: FailureInjection): void {
  if (failure.method !== '*' && !FAKE_INJECTABLE_METHODS.includes(failure.method)) {
    throw new Error(`FakeHypervisorDriver.injectFailure: unknown method "${String(failure.method)}"`);
  }
  switch (failure.mode) {
    case 'fail_nth':
      if (!Number.isSafeInteger(failure.n) || failure.n < 1) {
        throw new Error(
          `FakeHypervisorDriver.injectFailure: n must be a positive integer, got ${String(failure.n)}`,
        );
      }
      return;
    case 'delay':
      nonNegativeInteger(failure.ms, 'delay ms');
      return;
    case 'fail_always':
    case 'hang':
      return;
    default:
      throw new Error(
        `FakeHypervisorDriver.injectFailure: unknown mode "${String((failure as { mode: unknown }).mode)}"`,
      );
  }
}
