/**
 * The backup store: the one seam between this service and the storage that holds backups.
 *
 * This file is a specification, like `hypervisor/hypervisor-driver.ts`. Every store (a directory —
 * in production a separate disk or an NFS mount — and any S3-compatible object store) must behave as
 * written here, and `test/contract/` holds the one suite that checks it for each of them.
 *
 * Backup storage must not share a failure with the hypervisor host it protects: a store is chosen per
 * node, and a backup written through one node's store can be read through any node that uses it.
 *
 * General rules, for every method:
 * - A store holds opaque objects under keys. Keys are relative, `/`-separated, made only of
 *   `[a-z0-9._-]` segments, never `.` or `..`, at most 512 bytes (`invalid_key` otherwise). The store
 *   never interprets a body: encryption and chunking happen above it.
 * - `put` is atomic: a reader sees the whole object or nothing, never a prefix, and a failed or
 *   cancelled `put` leaves no object and no visible temporary file behind. Writing a key that exists
 *   replaces it atomically. This is what lets a manifest, written last, make a backup visible at once.
 * - `put` is durable when it resolves (the object survives a crash of the host), unless called with
 *   `durable: false`. Such a put is just as atomic for every reader while the host runs, and a killed
 *   writer process loses nothing, but only `sync` of its key makes it survive a crash of the host:
 *   until then a host crash may leave the key missing or holding a damaged object. Many objects
 *   written that way and synced together cost one flush each instead of a wait per put (the data path
 *   writes a backup's chunks so, and records them as stored only after their `sync`).
 * - `delete` is idempotent: deleting a missing object is success.
 * - Errors are always `BackupStoreError` with a stable `code`; `retryable` says whether the same call
 *   may succeed later. A `message` is safe for customers (no bucket names, paths or endpoints); the
 *   store's own output goes into `detail`, for logs only.
 * - `signal`, when given and aborted, makes the call stop as soon as it can and reject with
 *   `cancelled`, leaving nothing half-written.
 */

export interface StoreCallOptions {
  readonly signal?: AbortSignal;
}

export interface PutOptions extends StoreCallOptions {
  /** false: durable only once `sync` of the key resolved (see above). Default true. */
  readonly durable?: boolean;
}

export interface GetOptions extends StoreCallOptions {
  /**
   * A buffer the caller reuses across gets: a store may read the object into it when it fits and
   * return the start of it that holds the object, or return a buffer of its own; the caller reads
   * whichever is returned.
   */
  readonly into?: Buffer;
}

export interface StoredObject {
  readonly key: string;
  readonly sizeBytes: number;
  readonly modifiedAt: Date;
}

export interface BackupStore {
  /** Which implementation this is, for logs and metrics (`directory`, `s3`). */
  readonly kind: string;

  /**
   * Store `body` under `key`, atomically (see above). The store does not hold on to `body` once the
   * put resolved: the caller may write into it again.
   * Errors: `invalid_key`, `insufficient_storage`, `unavailable`, `cancelled`, `storage_error`.
   */
  put(key: string, body: Buffer, opts?: PutOptions): Promise<void>;

  /**
   * Make the objects under `keys` durable: when it resolves, what resolved puts (`durable: false`)
   * wrote there survives a crash of the host. A key with no object is skipped. Safe to repeat.
   * Errors: `invalid_key`, `unavailable`, `cancelled`, `storage_error`.
   */
  sync(keys: readonly string[], opts?: StoreCallOptions): Promise<void>;

  /**
   * The whole object stored under `key`.
   * Errors: `not_found`, `invalid_key`, `unavailable`, `cancelled`, `storage_error`.
   * Read-only; always safe to repeat.
   */
  get(key: string, opts?: GetOptions): Promise<Buffer>;

  /** The object's size and time, or null when there is none. Read-only. */
  head(key: string, opts?: StoreCallOptions): Promise<StoredObject | null>;

  /** Remove the object. Idempotent. Errors: `invalid_key`, `unavailable`, `storage_error`. */
  delete(key: string, opts?: StoreCallOptions): Promise<void>;

  /**
   * Every object whose key starts with `prefix`, in key order, paged internally (the caller's memory
   * stays bounded whatever the count). Read-only.
   */
  list(prefix: string, opts?: StoreCallOptions): AsyncIterable<StoredObject>;
}

/** Every error code a store may reject with. */
export const BACKUP_STORE_ERROR_CODES = [
  'not_found',
  'invalid_key',
  'insufficient_storage',
  'unavailable',
  'cancelled',
  'storage_error',
] as const;

export type BackupStoreErrorCode = (typeof BACKUP_STORE_ERROR_CODES)[number];

const RETRYABLE: ReadonlySet<BackupStoreErrorCode> = new Set(['unavailable', 'storage_error']);

export class BackupStoreError extends Error {
  readonly retryable: boolean;

  constructor(
    readonly code: BackupStoreErrorCode,
    /** Operator detail (paths, endpoints, the store's own error) for logs only. */
    readonly detail?: string,
  ) {
    super(`backup storage: ${code}`);
    this.name = 'BackupStoreError';
    this.retryable = RETRYABLE.has(code);
  }
}

export function isBackupStoreError(e: unknown): e is BackupStoreError {
  return e instanceof BackupStoreError;
}
