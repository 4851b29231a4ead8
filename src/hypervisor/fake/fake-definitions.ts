import { createHash } from 'node:crypto';

import { DriverCapabilities } from '../hypervisor-driver';
import { FailureInjection } from './fault-injection';

/**
 * What a test defines of the fake driver: its options, its domains, and the deterministic names and
 * contents of auto-defined domains (the same in every process).
 */

export interface FakeHypervisorDriverOptions {
  /** Defaults to `{ liveSnapshot: true, quiesce: false }`: running servers are copied crash-consistent. */
  readonly capabilities?: Partial<DriverCapabilities>;
  /** Total simulated duration of one copy (create or restore), spread over the progress steps. Default 0. */
  readonly copyDelayMs?: number;
  /** Number of progress reports after the initial 0 (the last one is 100). Default 4. */
  readonly progressSteps?: number;
  /** `sizeBytes` reported for every created snapshot. Default: the byte length of the copied disk. */
  readonly snapshotSizeBytes?: number;
  /**
   * When a `ServerRef` (or `findDomainUuid`) names an unknown domain, define it instead of failing with
   * `domain_not_found`: stopped, with the ref's disk path, a deterministic 4 KiB disk derived from the
   * domain name (`fakeDiskContent(domain)`) and the UUID `fakeDomainUuid(domain)`. Default false;
   * `fromEnv()` defaults it to true.
   */
  readonly autoDefineDomains?: boolean;
  /** Failures active from the start (as if passed to `injectFailure`). */
  readonly failures?: readonly FailureInjection[];
}

export interface FakeDomainDefinition {
  /** The domain's UUID. Default: `fakeDomainUuid(name)`. */
  readonly uuid?: string;
  /** When given, every `ServerRef` for this domain must carry this disk path (else `hypervisor_error`). */
  readonly diskPath?: string;
  /** Default false (stopped). */
  readonly running?: boolean;
  /** Initial disk content. Default: `fakeDiskContent(name)`. */
  readonly diskBytes?: Buffer;
  /**
   * Whether the guest obeys a graceful shutdown. Default true (`stop` returns `forced: false`); false
   * simulates a guest without ACPI/agent (`stop` returns `forced: true`). The fake never waits
   * `graceSeconds`.
   */
  readonly gracefulShutdown?: boolean;
}

/** Size of the disk of an auto-defined domain. */
export const FAKE_AUTO_DISK_BYTES = 4096;

/** The deterministic disk content of an auto-defined domain: SHA-256 blocks of `<domain>:<i>`, concatenated. */
export function fakeDiskContent(domain: string, size: number = FAKE_AUTO_DISK_BYTES): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0, total = 0; total < size; i++, total += 32) {
    blocks.push(createHash('sha256').update(`${domain}:${i}`).digest());
  }
  return Buffer.concat(blocks).subarray(0, size);
}

/** The deterministic UUID of a fake domain: the same in every process (a test and a worker it started). */
export function fakeDomainUuid(domain: string): string {
  const h = createHash('sha256').update(`fake-domain:${domain}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
