import { hvError, toHypervisorError } from '../driver-errors';
import { HypervisorError, HypervisorErrorCode } from '../hypervisor-driver';
import { isProcessRunError, RunResult } from './process-runner';

/**
 * Classification of failures of `virsh`, `qemu-img` and the file system into `HypervisorError`s.
 * Messages come from the code (driver-errors.ts); the tool's own words go to `detail`.
 */

const NOT_FOUND = [/failed to get domain/i, /domain not found/i, /no domain with matching (name|uuid|id)/i];
const NO_SPACE = [/no space left on device/i, /\bENOSPC\b/, /disk quota exceeded/i, /\bEDQUOT\b/];
const NOT_RUNNING = [/domain is not running/i, /requested operation is not valid: domain is not running/i];
const IN_USE = [/failed to get (shared )?"?write"? lock/i, /is another process using the image/i];
const TIMED_OUT = [/timed out during operation/i, /cannot acquire state change lock/i];

export function matchesAny(text: string, patterns: readonly RegExp[]): boolean {
  return patterns.some((p) => p.test(text));
}

export function isNoSpace(text: string): boolean {
  return matchesAny(text, NO_SPACE);
}

export function isDomainNotFound(text: string): boolean {
  return matchesAny(text, NOT_FOUND);
}

export function isNotRunning(text: string): boolean {
  return matchesAny(text, NOT_RUNNING);
}

export function isImageInUse(text: string): boolean {
  return matchesAny(text, IN_USE);
}

function describe(cmd: string, args: readonly string[], r?: Pick<RunResult, 'code' | 'stderr'>): string {
  const head = `${cmd} ${args.join(' ')}`;
  return r ? `${head} (exit ${r.code ?? 'signal'}): ${r.stderr.trim()}` : head;
}

/**
 * A tool exited non-zero. `fallback` is the code to use when nothing more specific is recognised
 * (e.g. `copy_failed` for a copy, `hypervisor_error` for a virsh call).
 */
export function classifyToolFailure(
  cmd: string,
  args: readonly string[],
  r: Pick<RunResult, 'code' | 'stderr'>,
  fallback: HypervisorErrorCode,
): HypervisorError {
  const text = r.stderr;
  const detail = describe(cmd, args, r);
  if (isDomainNotFound(text)) return hvError('domain_not_found', detail);
  if (isNoSpace(text)) return hvError('insufficient_storage', detail);
  if (isImageInUse(text)) {
    return hvError('invalid_power_state', detail, 'hypervisor_disk_in_use');
  }
  // A libvirt lock or call that timed out: worth another try (hypervisor_error is retryable).
  if (matchesAny(text, TIMED_OUT)) return hvError('hypervisor_error', detail);
  return hvError(fallback, detail);
}

/** Anything thrown while running a step: a ProcessRunError, or what `toHypervisorError` converts. */
export function stepError(e: unknown, fallback: HypervisorErrorCode, context = ''): HypervisorError {
  if (isProcessRunError(e)) {
    const prefix = context ? `${context}: ` : '';
    if (e.kind === 'aborted') return hvError('cancelled', `${prefix}${e.command}`);
    if (e.kind === 'timeout') return hvError('timeout', `${prefix}${e.message}; stderr: ${e.stderr.trim()}`);
    return hvError('hypervisor_error', `${prefix}${e.message}`);
  }
  return toHypervisorError(e, fallback, context);
}
