import { FULL_READ_REASONS, FullReadReason, SnapshotConsistency } from '../../hypervisor/hypervisor-driver';
import { BackupKind } from '../../generated/prisma/enums';
import { BackupDataError } from './backup-data-errors';
import { CHUNK_ID, chunkCount, CHUNK_SIZE_BYTES } from './backup-layout';

/**
 * A backup's manifest: everything needed to rebuild the whole disk from this backup alone, and (from
 * version 2) everything the database's index holds of the backup, so a store can be reindexed from its
 * manifests alone when the database is lost. Stored as JSON, then sealed with the account's data key
 * (AAD `manifest:<account>:<backup>`), under `accounts/<account>/manifests/<backup>`, written last: its
 * presence is what makes a backup exist.
 */
export const MANIFEST_FORMAT = 'admin-vps-backup-manifest';
/** The version written; version 1 (no `index`) is still read. */
export const MANIFEST_VERSION = 2;

/** What a backup row holds besides its data: written into the manifest, read back by a reindex. */
export interface ManifestIndex {
  readonly serverId: number;
  readonly name: string;
  readonly description: string;
  readonly kind: BackupKind;
  /** ISO 8601 times. */
  readonly createdAt: string;
  /** When the manifest was written: the backup's completion. */
  readonly completedAt: string;
  readonly expiresAt: string | null;
  readonly modeReason: FullReadReason | null;
  readonly consistency: SnapshotConsistency;
  /** The disk checkpoint the backup created (the next backup of the server is incremental from it). */
  readonly checkpoint: string | null;
  readonly sizeBytes: number;
  readonly storedBytes: number;
}

export interface BackupManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: 1 | typeof MANIFEST_VERSION;
  readonly backupId: number;
  readonly accountId: number;
  readonly virtualSizeBytes: number;
  readonly chunkSizeBytes: number;
  readonly mode: 'full' | 'incremental';
  /** One entry per chunk of the disk, in order: the chunk's id (sha256 hex of its plaintext), or null for all zeros. */
  readonly chunks: readonly (string | null)[];
  /** Null only in a version 1 manifest (written before manifests carried it). */
  readonly index: ManifestIndex | null;
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

const MAX_SIZE = Number.MAX_SAFE_INTEGER;
const CONSISTENCIES: readonly SnapshotConsistency[] = ['stopped', 'quiesced', 'crash_consistent'];

const isCount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_SIZE;
const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const isTime = (v: unknown): v is string =>
  typeof v === 'string' && v.length <= 40 && !Number.isNaN(Date.parse(v));

/** Why `index` is not a version 2 index (the column limits of the backups table included), or null. */
function indexProblem(index: Partial<ManifestIndex> | undefined): string | null {
  if (typeof index !== 'object' || index === null) return 'no index';
  const i = index;
  if (!isCount(i.serverId) || i.serverId === 0) return 'bad server id';
  if (!isText(i.name, 64) || !isText(i.description, 1000)) return 'bad name or description';
  if (!(Object.values(BackupKind) as unknown[]).includes(i.kind)) return 'unknown kind';
  if (!isTime(i.createdAt) || !isTime(i.completedAt)) return 'bad times';
  if (i.expiresAt !== null && !isTime(i.expiresAt)) return 'bad expiry';
  if (i.modeReason !== null && !FULL_READ_REASONS.includes(i.modeReason!)) return 'unknown mode reason';
  if (!CONSISTENCIES.includes(i.consistency!)) return 'unknown consistency';
  if (i.checkpoint !== null && !isText(i.checkpoint, 128)) return 'bad checkpoint';
  if (!isCount(i.sizeBytes) || !isCount(i.storedBytes)) return 'bad sizes';
  return null;
}

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
  if (m?.format !== MANIFEST_FORMAT || (m.version !== 1 && m.version !== MANIFEST_VERSION))
    throw bad('unknown format or version');
  if (m.accountId !== expect.accountId || m.backupId !== expect.backupId) throw bad('names another backup');
  if (m.chunkSizeBytes !== CHUNK_SIZE_BYTES) throw bad(`chunk size ${m.chunkSizeBytes}`);
  if (m.mode !== 'full' && m.mode !== 'incremental') throw bad('unknown mode');
  const size = m.virtualSizeBytes;
  if (!isCount(size)) throw bad('bad size');
  const chunks = m.chunks;
  if (!Array.isArray(chunks) || chunks.length !== chunkCount(size))
    throw bad('chunk list does not cover the disk');
  for (const c of chunks)
    if (c !== null && (typeof c !== 'string' || !CHUNK_ID.test(c))) throw bad('bad chunk id');
  if (m.version === 1) return { ...(m as BackupManifest), index: null };
  const problem = indexProblem(m.index ?? undefined);
  if (problem) throw bad(problem);
  return m as BackupManifest;
}
