import { BackupDataMessageKey, Lang, message } from '../../common/messages';

/** Every error code the data path itself rejects with (besides the driver's and the store's). */
export const BACKUP_DATA_ERROR_CODES = [
  /** A manifest or chunk is missing, fails authentication or does not match its hash. */
  'backup_corrupt',
  /** The account's data key cannot be unwrapped (another master key, or its row is damaged). */
  'backup_key_unavailable',
  /**
   * An incremental write found its base backup's data gone (deleted meanwhile) or not matching the
   * disk. Retryable: the next attempt picks another base or reads the whole disk.
   */
  'backup_base_unavailable',
] as const;
export type BackupDataErrorCode = (typeof BACKUP_DATA_ERROR_CODES)[number];

const RETRYABLE: ReadonlySet<BackupDataErrorCode> = new Set(['backup_base_unavailable']);

/**
 * An error of the data path: a stable `code`, a customer-safe sentence from the catalogue, and an
 * operator `detail` (keys, ids) for logs only. Only `backup_base_unavailable` is retryable: otherwise
 * the same data gives the same answer.
 */
export class BackupDataError extends Error {
  readonly retryable: boolean;
  readonly messageKey: BackupDataMessageKey;

  constructor(
    readonly code: BackupDataErrorCode,
    readonly detail?: string,
  ) {
    const key = `backup_data_${code}` as const;
    super(message(key, 'en'));
    this.name = 'BackupDataError';
    this.messageKey = key;
    this.retryable = RETRYABLE.has(code);
  }

  messageIn(lang: Lang): string {
    return message(this.messageKey, lang);
  }
}

export function isBackupDataError(e: unknown): e is BackupDataError {
  return e instanceof BackupDataError;
}
