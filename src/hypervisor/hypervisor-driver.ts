/**
 * The hypervisor driver: the one seam between this service and a hypervisor host.
 *
 * This file is a specification (in the manner of OpenStack Nova's `nova/virt/driver.py`). Every driver
 * (the in-memory fake used by tests, the libvirt/qemu-img driver that is the product) must behave as
 * written here, and `test/contract/` holds the one test suite that checks it for each of them.
 *
 * General rules, for every method:
 * - A driver never touches the database. It receives references (`ServerRef`, `SnapshotRef`) carrying
 *   the platform details it needs (libvirt domain name, disk path, snapshot directory) and returns
 *   plain results. The job that calls it owns persistence.
 * - Errors are always instances of `HypervisorError` (below) with a stable `code`. Anything else that
 *   escapes a driver is a bug. `retryable` says whether running the same call again may succeed
 *   (a job retries those with back-off; the others fail the operation at once).
 * - A `message` is safe to show to a customer: it never holds file paths, domain names or host names.
 *   The tool's own output (stderr of `qemu-img`, `virsh`, ...) goes into `detail`, for logs only.
 * - Progress callbacks receive integer-ish percentages in [0, 100], never decreasing within one call.
 *   They may be called often; the caller throttles what it persists. A callback that throws does not
 *   fail the call: its error is dropped.
 * - `signal`, when given and aborted, makes the method stop as soon as it can, kill any child process,
 *   remove anything it had partially written, and reject with code `cancelled`. An abort that happens
 *   before the result is committed (already aborted on entry, or during a progress callback, up to the
 *   final rename) always ends in `cancelled`, never in success: check the signal again just before
 *   committing.
 */

import { HypervisorMessageKey, Lang, message } from '../common/messages';

export type PowerState = 'running' | 'stopped';
/**
 * What the hypervisor says a server's domain is, as customers should see it: `paused` covers
 * suspended guests (also pmsuspended), `crashed` a guest that crashed (held crashed, or shut off for
 * that reason), `missing` a domain the hypervisor no longer knows under the server's UUID and name.
 */
export const OBSERVED_POWER_STATES = ['running', 'stopped', 'paused', 'crashed', 'missing'] as const;
export type ObservedPowerState = (typeof OBSERVED_POWER_STATES)[number];
export type SnapshotConsistency = 'stopped' | 'quiesced' | 'crash_consistent';

/** What a driver needs to know about a server. Built by the job from the server and node rows. */
export interface ServerRef {
  /** The server's id in this service (for logs and fake bookkeeping only). */
  readonly id: number;
  /** libvirt domain name, as registered (never shown to customers). */
  readonly domain: string;
  /**
   * The domain's UUID, recorded when the server was registered (or pinned by the worker before its
   * first operation). Every call that addresses the domain does so by this UUID and first checks that
   * the domain still has the name `domain`: a domain redefined or renamed since is `domain_not_found`,
   * never silently another VM. Null only before the UUID is known: such a ref is refused by every call
   * that addresses the domain (`domain_not_found`); `deleteSnapshot` does not need it.
   */
  readonly domainUuid: string | null;
  /** Absolute path of the server's (single) qcow2 disk on the host. */
  readonly diskPath: string;
}

/** What a driver needs to know about a snapshot. */
export interface SnapshotRef {
  /** The snapshot's id in this service. Files are named by this id, never by the user's name. */
  readonly id: number;
  /** Directory on the host that holds the snapshot files of this node. */
  readonly snapshotDir: string;
}

export interface CreateSnapshotResult {
  /** Allocated bytes of the stored snapshot (`actual-size`), never the virtual disk size. */
  readonly sizeBytes: number;
  /** How the copy was taken. */
  readonly consistency: SnapshotConsistency;
}

export interface DriverCapabilities {
  /** Can copy a running server without stopping it. */
  readonly liveSnapshot: boolean;
  /** Can freeze guest filesystems (QEMU guest agent) during a live copy. */
  readonly quiesce: boolean;
}

export interface OperationOptions {
  readonly signal?: AbortSignal;
}

/** A disk rebuild's options: what `fill` will write lets the driver check its room before it starts. */
export interface RestoreDiskOptions extends OperationOptions {
  /** Bytes `fill` writes at most (the non-hole data); the virtual size when not given. */
  readonly dataBytes?: number;
}

export interface HypervisorDriver extends BackupCapableDriver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;

  /**
   * The UUID of the domain whose name is exactly `name` (never read as a domain id or a UUID): how a
   * server registered without its domain's UUID gets one.
   * Errors: `domain_not_found` when no domain has that name.
   * Read-only; always safe to repeat.
   */
  findDomainUuid(name: string): Promise<string>;

  /**
   * The power state of the server's domain.
   * Errors: `domain_not_found` when the hypervisor does not know the domain.
   * Read-only; always safe to repeat.
   */
  getPowerState(server: ServerRef): Promise<PowerState>;

  /**
   * The observed power state of each server's domain, in the order given, from one look at the
   * hypervisor however many servers are asked about (a node's reconciliation asks about all of them).
   * A server whose UUID is null, unknown to the hypervisor, or now names a domain of another name is
   * `missing` (never an error). Read-only; always safe to repeat.
   * Errors: `hypervisor_error` when the hypervisor cannot be asked.
   */
  observePowerStates(servers: readonly ServerRef[]): Promise<ObservedPowerState[]>;

  /**
   * Power the server on. Idempotent: starting a running server succeeds and does nothing.
   * Errors: `domain_not_found`; `hypervisor_error` when the hypervisor refuses.
   */
  start(server: ServerRef): Promise<void>;

  /**
   * Power the server off: a graceful shutdown (ACPI or guest agent) first, then, when the domain is
   * still running after `graceSeconds`, a forced power-off. Resolves once the domain is stopped.
   * Idempotent: stopping a stopped server succeeds and does nothing.
   * Returns whether the forced power-off was needed.
   * Errors: `domain_not_found`; `hypervisor_error`.
   */
  stop(server: ServerRef, opts: { graceSeconds: number }): Promise<{ forced: boolean }>;

  /**
   * Power the server off at once, as pulling the plug would (libvirt: `virsh destroy`): the guest is
   * not asked and may lose what it had not written. Resolves once the domain is stopped.
   * Preconditions: the domain exists. Idempotent: powering off a stopped server succeeds and does
   * nothing. Not cancellable (it is over in moments).
   * Errors: `domain_not_found`; `hypervisor_error` when the hypervisor refuses.
   */
  powerOff(server: ServerRef): Promise<void>;

  /**
   * Ask the guest to shut down (ACPI, or the guest agent when connected) and wait up to `graceSeconds`
   * for the domain to stop; never forces it. Resolves once the domain is stopped.
   * Preconditions: the domain exists. Idempotent: shutting down a stopped server succeeds and does
   * nothing.
   * A guest still running after `graceSeconds` (it ignores ACPI, or is busy) fails `shutdown_timeout`
   * (not retryable: the caller decides whether to power it off); the request stays with the guest,
   * which may still stop later.
   * `signal` aborted while waiting rejects `cancelled` at once; the request cannot be taken back.
   * Errors: `domain_not_found`, `shutdown_timeout`, `cancelled`, `hypervisor_error`.
   */
  shutdown(server: ServerRef, opts: { graceSeconds: number; signal?: AbortSignal }): Promise<void>;

  /**
   * Take a full, standalone point-in-time copy of the server's disk as snapshot `snap`.
   *
   * Preconditions: the domain exists; no snapshot with this id is stored yet (a completed one with the
   * same id makes the call fail with `snapshot_exists`: the caller must not overwrite a good copy).
   * - Server stopped: copy the disk; consistency `stopped`.
   * - Server running: when `capabilities.liveSnapshot`, copy without stopping it; `quiesced` if the
   *   guest's filesystems were frozen for the copy's start (and they are always thawed afterwards, on
   *   success or failure), else `crash_consistent`. When the driver cannot copy live it fails with
   *   `invalid_power_state`.
   * On success the stored copy is complete and verified. On any failure nothing is left behind (no
   * partial file), so the call may simply be repeated.
   * Errors: `domain_not_found`, `insufficient_storage` (checked before copying, or space ran out),
   * `snapshot_exists`, `invalid_power_state`, `copy_failed`, `verification_failed`, `cancelled`,
   * `hypervisor_error`.
   */
  createSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts?: OperationOptions,
  ): Promise<CreateSnapshotResult>;

  /**
   * Overwrite the server's disk with the content of snapshot `snap`.
   *
   * Preconditions: the server is stopped (`invalid_power_state` otherwise: writing under a running
   * guest would be lost or corrupt it); the snapshot exists (`snapshot_not_found`) and verifies
   * (`verification_failed` for a damaged or truncated file).
   * The disk is replaced atomically: on any failure the original disk is untouched. Repeating a
   * successful restore gives the same disk again.
   * Errors: `domain_not_found`, `invalid_power_state`, `snapshot_not_found`, `verification_failed`,
   * `insufficient_storage`, `copy_failed`, `cancelled`, `hypervisor_error`.
   */
  restoreSnapshot(
    server: ServerRef,
    snap: SnapshotRef,
    onProgress: (pct: number) => void,
    opts?: OperationOptions,
  ): Promise<void>;

  /**
   * Remove the stored snapshot and any partial file of it. Idempotent: a snapshot that is already
   * gone (or never finished) is success. Does not need the domain to exist.
   * Errors: `hypervisor_error` (e.g. permission denied).
   */
  deleteSnapshot(server: ServerRef, snap: SnapshotRef): Promise<void>;

  /**
   * Whether a complete stored copy of `snap` exists: how a caller (the contract suite, an operator's
   * check) sees what a call left behind. Crash recovery does not need it: `cleanupInterrupted` does that.
   * Read-only; always safe to repeat.
   */
  snapshotExists(snap: SnapshotRef): Promise<boolean>;

  /**
   * Remove what interrupted operations left behind: partial snapshot files in `snapshotDir` and
   * half-written restore files (and second names of replaced disks) next to the given disks. Called
   * when a worker starts, before it takes jobs. Never touches a complete snapshot or a disk. Returns the
   * snapshot ids whose partial files were removed (so the caller can fail their still-open actions).
   * Idempotent.
   */
  cleanupInterrupted(
    snapshotDir: string,
    diskPaths: readonly string[],
  ): Promise<{ partialSnapshotIds: number[] }>;

  /**
   * Optional. Resolves when housekeeping that calls left running after they returned is done (the
   * libvirt driver frees a replaced disk after its restore has returned). A worker awaits it when it
   * stops. Never rejects.
   */
  idle?(): Promise<void>;
}

/** A byte range of a disk's guest-visible content. */
export interface DiskExtent {
  readonly offset: number;
  readonly length: number;
}

/** Why a backup read the whole disk instead of only what changed since the previous backup. */
export const FULL_READ_REASONS = [
  /** The server has no previous backup (or the caller asked for no base). */
  'no_previous_backup',
  /** The previous backup's checkpoint is not on the disk any more (deleted, disk replaced or restored). */
  'checkpoint_missing',
  /** The checkpoint's bitmap cannot be trusted (left in use by a crash, inconsistent). */
  'bitmap_inconsistent',
  /** The disk's size is not the previous backup's (resized since): its chunks do not line up. */
  'disk_resized',
] as const;
export type FullReadReason = (typeof FULL_READ_REASONS)[number];

/**
 * A point-in-time, read-only view of a server's disk, opened for one backup. Data read through it is
 * the disk as it was when the view was opened, whatever the guest writes afterwards.
 */
export interface BackupReadSession {
  /** Guest-visible size of the disk in bytes. */
  readonly virtualSizeBytes: number;
  /** `incremental` when `extents` lists everything written since the base checkpoint; else `full`. */
  readonly mode: 'full' | 'incremental';
  /** Why the read is full; null for an incremental read. */
  readonly fullReason: FullReadReason | null;
  /**
   * The extents that may hold data, sorted, non-overlapping, aligned to 64 KiB: for an incremental
   * read the changed ones, for a full read the allocated ones. Everything outside them reads as zero
   * (full) or as it was in the base backup (incremental).
   */
  readonly extents: readonly DiskExtent[];
  readonly consistency: SnapshotConsistency;
  /** The checkpoint this read created: the base of the next incremental backup. */
  readonly checkpoint: string;
  /**
   * Bytes of the view at `offset` (within `virtualSizeBytes`). With `into` (at least `length` long)
   * they are written there, holes as zeros over whatever it held, and the start of `into` that holds
   * them returned: a caller reading many chunks reuses its buffers instead of a fresh one per read.
   */
  read(offset: number, length: number, opts?: BackupReadCallOptions): Promise<Buffer>;
  /**
   * Release the view. `keepCheckpoint: true` once the backup is stored, so the next backup can be
   * incremental from it (older checkpoints of this server are dropped then); `false` drops the new
   * checkpoint, leaving the previous one the base. Idempotent; never rejects.
   */
  close(opts: { readonly keepCheckpoint: boolean }): Promise<void>;
}

export interface BackupReadCallOptions extends OperationOptions {
  /** Where to read to (see `BackupReadSession.read`). */
  readonly into?: Buffer;
}

/** What a backup read is asked for (see `openBackupRead`). */
export interface BackupReadOptions {
  /** The previous backup's checkpoint: the base of an incremental read; null for none. */
  readonly since: string | null;
  /** The checkpoint this read creates. */
  readonly checkpoint: string;
  readonly signal?: AbortSignal;
}

/** Where a rebuilt disk is written: the caller writes data, holes stay sparse (read as zero). */
export interface DiskImageWriter {
  /** Holds no reference to `data` once it resolved: the caller may write into it again. */
  write(offset: number, data: Buffer): Promise<void>;
}

/**
 * The part of the driver that backups use. Every driver implements it (`HypervisorDriver` extends it).
 */
export interface BackupCapableDriver {
  /**
   * Open a point-in-time view of the server's disk for a backup, and create checkpoint `checkpoint`
   * on it. With `since` (the previous backup's checkpoint) the view is incremental when that
   * checkpoint is present and trustworthy, else full with the reason. A running server is read live
   * (quiesced through the guest agent when possible), a stopped one offline.
   * Errors: `domain_not_found`, `hypervisor_error`, `cancelled`.
   */
  openBackupRead(server: ServerRef, opts: BackupReadOptions): Promise<BackupReadSession>;

  /**
   * Replace the server's disk with a new one of `virtualSizeBytes` whose content `fill` writes, with
   * the same atomic steps as `restoreSnapshot`: the server must be stopped; the new disk is built in a
   * temporary file next to it and renamed over it only when `fill` resolves; when `fill` rejects or
   * the call is cancelled the original disk is untouched and the temporary file is removed (a rejection
   * of `fill` is passed through unchanged). Every checkpoint of the old disk is dropped: the next backup
   * of this server reads the whole disk. When the disk's file system cannot hold the rebuild of
   * `opts.dataBytes` next to the disk, the call fails `insufficient_storage` before `fill` is called.
   * Errors: `domain_not_found`, `invalid_power_state`, `insufficient_storage`, `cancelled`,
   * `hypervisor_error`, and whatever `fill` rejects with.
   */
  restoreDiskFrom(
    server: ServerRef,
    virtualSizeBytes: number,
    fill: (disk: DiskImageWriter) => Promise<void>,
    onProgress: (pct: number) => void,
    opts?: RestoreDiskOptions,
  ): Promise<void>;
}

/** Every error code a driver may reject with. */
export const HYPERVISOR_ERROR_CODES = [
  'domain_not_found',
  'invalid_power_state',
  'snapshot_not_found',
  'snapshot_exists',
  'insufficient_storage',
  'copy_failed',
  'verification_failed',
  'cancelled',
  'timeout',
  'shutdown_timeout',
  'hypervisor_error',
] as const;

export type HypervisorErrorCode = (typeof HYPERVISOR_ERROR_CODES)[number];

/** Codes for which the same call may succeed if tried again later. */
const RETRYABLE: ReadonlySet<HypervisorErrorCode> = new Set(['hypervisor_error', 'timeout', 'copy_failed']);

/**
 * A driver's error. It stores its code and the key of its customer-safe sentence, and renders that
 * sentence from the one message catalogue (src/common/messages.ts) when read: `message` in English,
 * `messageIn(lang)` in any language the catalogue has. Build one with `hvError` (driver-errors.ts).
 */
export class HypervisorError extends Error {
  readonly retryable: boolean;
  /** The catalogue key of the customer-safe sentence: `hypervisor_<code>` unless a sharper one fits. */
  readonly messageKey: HypervisorMessageKey;

  constructor(
    readonly code: HypervisorErrorCode,
    /** Operator detail (tool output, paths) for logs only. */
    readonly detail?: string,
    options: { readonly messageKey?: HypervisorMessageKey; readonly retryable?: boolean } = {},
  ) {
    const key = options.messageKey ?? (`hypervisor_${code}` as const);
    super(message(key, 'en'));
    this.name = 'HypervisorError';
    this.messageKey = key;
    this.retryable = options.retryable ?? RETRYABLE.has(code);
  }

  /** The customer-safe sentence in `lang`: no paths, domain or host names. */
  messageIn(lang: Lang): string {
    return message(this.messageKey, lang);
  }
}

export function isHypervisorError(e: unknown): e is HypervisorError {
  return e instanceof HypervisorError;
}

/** DI token under which the configured driver is provided. */
export const HYPERVISOR_DRIVER = Symbol('HYPERVISOR_DRIVER');
