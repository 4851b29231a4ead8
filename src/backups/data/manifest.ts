import { BackupDataError } from './backup-data-errors';
import { chunkCount, CHUNK_SIZE_BYTES } from './backup-layout';

/**
 * A backup's manifest: everything needed to rebuild the whole disk from this backup alone. Stored as
 * JSON, then sealed with the account's data key (AAD `manifest:<account>:<backup>`), under
 * `accounts/<account>/manifests/<backup>`, written last: its presence is what makes a backup exist.
 */
export const MANIFEST_FORMAT = 'admin-vps-backup-manifest';
export const MANIFEST_VERSION = 1;

export interface BackupManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: typeof MANIFEST_VERSION;
  readonly backupId: number;
  readonly accountId: number;
  readonly virtualSizeBytes: number;
  readonly chunkSizeBytes: number;
  readonly mode: 'full' | 'incremental';
  /** One entry per chunk of the disk, in order: the chunk's id (sha256 hex of its plaintext), or null for all zeros. */
  readonly chunks: readonly (string | null)[];
}

export function manifestAad(accountId: number, backupId: number): string {
  return `manifest:${accountId}:${backupId}`;
}

export function chunkAad(accountId: number, chunkId: string): string {
  return `chunk:${accountId}:${chunkId}`;
}

export function encodeManifest(manifest: BackupManifest): Buffer {
  return Buffer.from(JSON.stringify(manifest), 'utf8');
}

const CHUNK_ID = /^[0-9a-f]{64}$/;
const MAX_SIZE = Number.MAX_SAFE_INTEGER;

/**
 * The manifest in `json`, checked against the backup it must describe: anything else (another backup's
 * manifest, a format this version does not read, a list that does not cover the disk) is `backup_corrupt`.
 */
export function decodeManifest(
  json: Buffer,
  expect: { accountId: number; backupId: number },
): BackupManifest {
  const bad = (why: string): BackupDataError =>
    new BackupDataError('backup_corrupt', `manifest of backup ${expect.backupId}: ${why}`);
  let m: Partial<BackupManifest>;
  try {
    m = JSON.parse(json.toString('utf8')) as Partial<BackupManifest>;
  } catch {
    throw bad('not JSON');
  }
  if (m?.format !== MANIFEST_FORMAT || m.version !== MANIFEST_VERSION) throw bad('unknown format or version');
  if (m.accountId !== expect.accountId || m.backupId !== expect.backupId) throw bad('names another backup');
  if (m.chunkSizeBytes !== CHUNK_SIZE_BYTES) throw bad(`chunk size ${m.chunkSizeBytes}`);
  if (m.mode !== 'full' && m.mode !== 'incremental') throw bad('unknown mode');
  const size = m.virtualSizeBytes;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_SIZE)
    throw bad('bad size');
  const chunks = m.chunks;
  if (!Array.isArray(chunks) || chunks.length !== chunkCount(size))
    throw bad('chunk list does not cover the disk');
  for (const c of chunks)
    if (c !== null && (typeof c !== 'string' || !CHUNK_ID.test(c))) throw bad('bad chunk id');
  return m as BackupManifest;
}
