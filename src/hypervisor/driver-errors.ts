import { HypervisorMessageKey } from '../common/messages';
import { HypervisorError, HypervisorErrorCode } from './hypervisor-driver';

/**
 * What every driver needs around its errors and progress, written once: building a customer-safe
 * error from its code, cancellation, an abortable sleep, the progress guard, and turning whatever a
 * step threw into a `HypervisorError`.
 */

/** The error of `code`; its sentence is rendered from the message catalogue when read. */
export function hvError(
  code: HypervisorErrorCode,
  detail?: string,
  messageKey?: HypervisorMessageKey,
): HypervisorError {
  return new HypervisorError(code, detail, { messageKey });
}

export function cancelled(detail = 'aborted by caller'): HypervisorError {
  return hvError('cancelled', detail);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled();
}

/**
 * Waits `ms`; rejects `cancelled` as soon as `signal` aborts. Still a macrotask for 0, but the next
 * turn of the event loop (setImmediate), not a timer: Node turns `setTimeout(0)` into 1 ms and runs
 * timers only once per loop, so a "zero-delay" copy of four progress steps took 4–8 ms.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const timer = ms > 0 ? setTimeout(done, ms) : null;
    const immediate = ms > 0 ? null : setImmediate(done);
    const onAbort = (): void => {
      if (timer) clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      reject(cancelled());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The progress guard: what reaches `onProgress` is an integer in [0, 100], never below the last one
 * (repeats are dropped), and an exception the listener throws is dropped: progress is the caller's
 * concern, never a reason for the copy to fail (it is called from timers and stream handlers too).
 */
export function progressGuard(onProgress: (pct: number) => void): (pct: number) => void {
  let last = -1;
  return (pct: number) => {
    const v = Math.max(0, Math.min(100, Math.floor(pct)));
    if (v <= last) return;
    last = v;
    try {
      onProgress(v);
    } catch {
      /* the caller's problem, not the copy's */
    }
  };
}

/** Maps a sub-step's 0..100 into [from, to] of the whole operation. */
export function scaled(report: (pct: number) => void, from: number, to: number): (pct: number) => void {
  return (pct) => report(from + ((to - from) * Math.max(0, Math.min(100, pct))) / 100);
}

/**
 * Anything a step threw, as a `HypervisorError`: one already is; a file system's ENOSPC / EDQUOT is
 * `insufficient_storage`; an AbortError is `cancelled`; anything else is `fallback`. `context` leads
 * the detail.
 */
export function toHypervisorError(
  e: unknown,
  fallback: HypervisorErrorCode = 'hypervisor_error',
  context = '',
): HypervisorError {
  if (e instanceof HypervisorError) return e;
  const prefix = context ? `${context}: ` : '';
  const err = e as NodeJS.ErrnoException;
  const msg = err && typeof err.message === 'string' ? err.message : String(e);
  if (err && (err.code === 'ENOSPC' || err.code === 'EDQUOT'))
    return hvError('insufficient_storage', prefix + msg);
  if (err && err.name === 'AbortError') return hvError('cancelled', prefix + msg);
  return hvError(fallback, prefix + msg);
}

/** The server's disk is not where the node keeps disks: refused, and never worth another try. */
export function diskMisplaced(detail: string): HypervisorError {
  return new HypervisorError('hypervisor_error', detail, {
    messageKey: 'hypervisor_disk_misplaced',
    retryable: false,
  });
}
