import { message } from '../common/messages';
import { BACKUP_DATA_ERROR_CODES, isBackupDataError } from '../backups/data/backup-data-errors';
import { isBackupStoreError } from '../backup-store/backup-store';
import { HYPERVISOR_ERROR_CODES, isHypervisorError } from '../hypervisor/hypervisor-driver';
import { isSafetyCopyError } from '../restore-undo/safety-copy-taker';

/**
 * Every `error.code` a failed action records: a driver's, the backup data path's, backup storage
 * being out of reach, or the runner's own two.
 */
export const ACTION_ERROR_CODES = [
  ...HYPERVISOR_ERROR_CODES,
  ...BACKUP_DATA_ERROR_CODES,
  'backup_storage_unavailable',
  'safety_copy_failed',
  'backup_storage_full',
  'internal_error',
  'interrupted',
] as const;
export type ActionErrorCode = (typeof ACTION_ERROR_CODES)[number];

export const GENERIC_FAILURE =
  'The operation failed on the hypervisor host; please try again or contact support.';
export const NO_BACKUP_STORAGE =
  'Backup storage is not available on this node; please try again later or contact support.';
/** A store that answered but has no room left (ENOSPC, a quota): retrying does not help until it is freed. */
export const BACKUP_STORAGE_FULL = message('backup_storage_full', 'en');

/** What the runner records of an operation's error, and whether another attempt may succeed. */
export interface OperationFailure {
  readonly code: ActionErrorCode;
  /** Customer-safe: no paths, hosts, buckets or keys. */
  readonly message: string;
  readonly retryable: boolean;
  /** Operator detail, for logs only. */
  readonly detail?: string;
}

/**
 * Classifies what a driver, the backup data path or a backup store rejected with. Anything else is a
 * bug or an unforeseen failure: retryable, and shown only as the generic sentence.
 */
export function operationFailureOf(e: unknown): OperationFailure {
  if (isHypervisorError(e) || isBackupDataError(e)) {
    return { code: e.code, message: e.message, retryable: e.retryable, detail: e.detail };
  }
  if (isSafetyCopyError(e)) {
    return { code: e.code, message: e.message, retryable: e.retryable, detail: e.detail };
  }
  if (isBackupStoreError(e)) {
    // The store's own words name buckets and endpoints: the customer sees that storage was unreachable,
    // or full.
    const full = e.code === 'insufficient_storage';
    return {
      code:
        e.code === 'cancelled' ? 'cancelled' : full ? 'backup_storage_full' : 'backup_storage_unavailable',
      message: full ? BACKUP_STORAGE_FULL : NO_BACKUP_STORAGE,
      retryable: e.retryable,
      detail: `${e.code}: ${e.detail ?? ''}`,
    };
  }
  return { code: 'internal_error', message: GENERIC_FAILURE, retryable: true };
}
