import { promises as fsp } from 'node:fs';
import { SnapshotConsistency } from '../hypervisor-driver';
import { jsonInt, parseJsonObject } from './parsers';

/**
 * The sidecar `<id>.qcow2.json` written next to every stored snapshot, before the snapshot file is
 * renamed into place. It records the exact byte length and sha256 of the file, so a truncated or
 * otherwise altered snapshot is refused on restore even where `qemu-img check` passes (a truncated
 * qcow2 converts with exit 0 into a wrong disk).
 *
 * Commit order at create: `<id>.qcow2.partial` complete + checked + fsynced → manifest written
 * (tmp, fsync, rename, fsync dir) → `<id>.qcow2.partial` renamed to `<id>.qcow2` (fsync dir).
 * Hence: `<id>.qcow2` exists ⇒ its manifest exists and describes it.
 */

export const MANIFEST_KIND = 'vps-snapshot-manifest';
export const MANIFEST_VERSION = 1;

export interface SnapshotManifest {
  readonly kind: typeof MANIFEST_KIND;
  readonly version: typeof MANIFEST_VERSION;
  readonly snapshotId: number;
  /** Base name of the snapshot file. */
  readonly file: string;
  /** Exact byte length of the snapshot file. */
  readonly bytes: number;
  /** sha256 of the whole snapshot file, hex. */
  readonly sha256: string;
  readonly imageFormat: 'qcow2';
  readonly compression: 'none' | 'zstd';
  /** Virtual size of the disk image in bytes. */
  readonly virtualSize: number;
  readonly consistency: SnapshotConsistency;
  readonly createdAt: string;
}

export function serializeManifest(m: SnapshotManifest): string {
  return JSON.stringify(m, null, 2) + '\n';
}

/** Parses and validates a manifest; null when it is not a valid one. */
export function parseManifest(text: string): SnapshotManifest | null {
  const o = parseJsonObject(text);
  if (!o) return null;
  if (o.kind !== MANIFEST_KIND || o.version !== MANIFEST_VERSION) return null;
  const snapshotId = jsonInt(o, 'snapshotId');
  const bytes = jsonInt(o, 'bytes');
  const virtualSize = jsonInt(o, 'virtualSize');
  if (snapshotId === null || bytes === null || virtualSize === null) return null;
  if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256)) return null;
  if (typeof o.file !== 'string' || o.imageFormat !== 'qcow2') return null;
  if (o.compression !== 'none' && o.compression !== 'zstd') return null;
  if (o.consistency !== 'stopped' && o.consistency !== 'quiesced' && o.consistency !== 'crash_consistent')
    return null;
  return {
    kind: MANIFEST_KIND,
    version: MANIFEST_VERSION,
    snapshotId,
    file: o.file,
    bytes,
    sha256: o.sha256,
    imageFormat: 'qcow2',
    compression: o.compression,
    virtualSize,
    consistency: o.consistency,
    createdAt: typeof o.createdAt === 'string' ? o.createdAt : '',
  };
}

export async function readManifest(file: string): Promise<SnapshotManifest | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return parseManifest(text);
}
