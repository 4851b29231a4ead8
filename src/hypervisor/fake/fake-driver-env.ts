import {
  DriverCapabilities,
  HYPERVISOR_ERROR_CODES,
  HypervisorError,
  HypervisorErrorCode,
} from '../hypervisor-driver';
import type { FakeHypervisorDriverOptions } from './fake-hypervisor-driver';
import {
  FAKE_INJECTABLE_METHODS,
  FailureInjection,
  FakeInjectableMethod,
  fakeError,
} from './fault-injection';

/** Environment variables read by `FakeHypervisorDriver.fromEnv`. */
export const FAKE_DRIVER_ENV = {
  /** Total simulated copy time in ms (non-negative integer). */
  delayMs: 'FAKE_DRIVER_DELAY_MS',
  /** Comma-separated faults, `method:mode[:arg][:code]` (see `parseFakeDriverFailures`). */
  fail: 'FAKE_DRIVER_FAIL',
  /** `true|false|1|0`: `capabilities.liveSnapshot` (default true). */
  liveSnapshot: 'FAKE_DRIVER_LIVE_SNAPSHOT',
  /** `true|false|1|0`: `capabilities.quiesce` (default false). */
  quiesce: 'FAKE_DRIVER_QUIESCE',
  /** `true|false|1|0`: `autoDefineDomains` (default true when built from the environment). */
  autoDefine: 'FAKE_DRIVER_AUTO_DEFINE',
} as const;

const KNOWN_ENV: readonly string[] = Object.values(FAKE_DRIVER_ENV);

/**
 * Reads the `FAKE_DRIVER_*` variables into options. Unset or blank variables are ignored; a malformed
 * value, or an unknown `FAKE_DRIVER_*` name (a typo would otherwise silently disable a fault), throws an
 * `Error` that names the variable.
 */
export function parseFakeDriverEnv(
  env: Readonly<Record<string, string | undefined>>,
): FakeHypervisorDriverOptions {
  const unknown = Object.keys(env).filter((k) => k.startsWith('FAKE_DRIVER_') && !KNOWN_ENV.includes(k));
  if (unknown.length > 0) {
    throw new Error(
      `Unknown environment variable ${unknown.sort().join(', ')} (known: ${KNOWN_ENV.join(', ')})`,
    );
  }
  const value = (name: string): string | undefined => {
    const raw = env[name]?.trim();
    return raw ? raw : undefined;
  };
  const options: {
    copyDelayMs?: number;
    failures?: FailureInjection[];
    capabilities?: Partial<DriverCapabilities>;
    autoDefineDomains?: boolean;
  } = {};

  const delay = value(FAKE_DRIVER_ENV.delayMs);
  if (delay !== undefined) {
    if (!/^\d+$/.test(delay) || !Number.isSafeInteger(Number(delay))) {
      throw new Error(
        `Invalid ${FAKE_DRIVER_ENV.delayMs}="${delay}": expected a non-negative integer (milliseconds)`,
      );
    }
    options.copyDelayMs = Number(delay);
  }

  const fail = value(FAKE_DRIVER_ENV.fail);
  if (fail !== undefined) {
    try {
      options.failures = parseFakeDriverFailures(fail);
    } catch (e) {
      throw new Error(`Invalid ${FAKE_DRIVER_ENV.fail}="${fail}": ${(e as Error).message}`);
    }
  }

  const live = parseBoolean(FAKE_DRIVER_ENV.liveSnapshot, value(FAKE_DRIVER_ENV.liveSnapshot));
  const quiesce = parseBoolean(FAKE_DRIVER_ENV.quiesce, value(FAKE_DRIVER_ENV.quiesce));
  if (live !== undefined || quiesce !== undefined) {
    options.capabilities = {
      ...(live === undefined ? {} : { liveSnapshot: live }),
      ...(quiesce === undefined ? {} : { quiesce }),
    };
  }
  const autoDefine = parseBoolean(FAKE_DRIVER_ENV.autoDefine, value(FAKE_DRIVER_ENV.autoDefine));
  if (autoDefine !== undefined) options.autoDefineDomains = autoDefine;
  return options;
}

function parseBoolean(name: string, raw: string | undefined): boolean | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new Error(`Invalid ${name}="${raw}": expected true, false, 1 or 0`);
}

/**
 * Parses a fault list: comma-separated entries `method:mode[:arg][:code]`, where
 * - `method` is one of `FAKE_INJECTABLE_METHODS` or `*`;
 * - `mode` is `fail_nth:<n>` (n ≥ 1), `fail_always`, `delay:<ms>` (ms ≥ 0) or `hang`;
 * - `code` (failing modes only) is a `HypervisorErrorCode` for the injected error (default as in
 *   `FailureInjection`).
 * Examples: `createSnapshot:fail_nth:2`, `createSnapshot:fail_always:insufficient_storage`,
 * `*:delay:200,restoreSnapshot:hang`. Throws an `Error` describing the first malformed entry.
 */
export function parseFakeDriverFailures(spec: string): FailureInjection[] {
  const entries = spec.split(',').map((e) => e.trim());
  return entries.map((entry) => {
    if (entry === '') throw new Error('empty entry');
    const parts = entry.split(':');
    const [method, mode, ...rest] = parts;
    if (method !== '*' && !FAKE_INJECTABLE_METHODS.includes(method as FakeInjectableMethod)) {
      throw new Error(
        `entry "${entry}": unknown method "${method}" (known: ${FAKE_INJECTABLE_METHODS.join(', ')}, *)`,
      );
    }
    const m = method as FakeInjectableMethod | '*';
    const integerArg = (min: number): number => {
      const raw = rest.shift();
      if (
        raw === undefined ||
        !/^\d+$/.test(raw) ||
        !Number.isSafeInteger(Number(raw)) ||
        Number(raw) < min
      ) {
        throw new Error(
          `entry "${entry}": ${mode} needs an integer ≥ ${min}, got ${raw === undefined ? 'nothing' : `"${raw}"`}`,
        );
      }
      return Number(raw);
    };
    const errorArg = (): HypervisorError | undefined => {
      const raw = rest.shift();
      if (raw === undefined) return undefined;
      if (!HYPERVISOR_ERROR_CODES.includes(raw as HypervisorErrorCode)) {
        throw new Error(
          `entry "${entry}": unknown error code "${raw}" (known: ${HYPERVISOR_ERROR_CODES.join(', ')})`,
        );
      }
      return fakeError(raw as HypervisorErrorCode, `injected failure (${entry})`);
    };
    let failure: FailureInjection;
    switch (mode) {
      case 'fail_nth': {
        const n = integerArg(1);
        const error = errorArg();
        failure = error ? { method: m, mode, n, error } : { method: m, mode, n };
        break;
      }
      case 'fail_always': {
        const error = errorArg();
        failure = error ? { method: m, mode, error } : { method: m, mode };
        break;
      }
      case 'delay':
        failure = { method: m, mode, ms: integerArg(0) };
        break;
      case 'hang':
        failure = { method: m, mode };
        break;
      default:
        throw new Error(
          `entry "${entry}": unknown mode "${mode ?? ''}" (known: fail_nth:<n>, fail_always, delay:<ms>, hang)`,
        );
    }
    if (rest.length > 0) throw new Error(`entry "${entry}": unexpected "${rest.join(':')}"`);
    return failure;
  });
}
