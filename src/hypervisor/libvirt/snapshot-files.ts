import * as path from 'node:path';

import { hvError } from '../driver-errors';
import { SnapshotRef } from '../hypervisor-driver';
import { stepError } from './errors';
import { fileSize, isFile, removeIfExists } from './files';
import { readManifest, SnapshotManifest } from './snapshot-manifest';

/** The files of one snapshot in its node's snapshot directory, all named by the snapshot's id. */
export interface SnapshotFiles {
  /** `<dir>/<id>.qcow2`: the stored, verified snapshot (its presence is the commit point). */
  readonly final: string;
  /** `<id>.qcow2.partial`: being written. */
  readonly partial: string;
  /** `<id>.qcow2.stage`: uncompressed live backup before zstd compression. */
  readonly stage: string;
  /** `<id>.qcow2.json`: the manifest (byte length, sha256). */
  readonly manifest: string;
  readonly manifestTmp: string;
}

export function snapshotFiles(snap: SnapshotRef): SnapshotFiles {
  if (!Number.isSafeInteger(snap.id) || snap.id <= 0) {
    throw hvError('hypervisor_error', `invalid snapshot id ${String(snap.id)}`);
  }
  if (!snap.snapshotDir || !path.isAbsolute(snap.snapshotDir)) {
    throw hvError('hypervisor_error', `snapshot directory must be absolute: ${snap.snapshotDir}`);
  }
  const final = path.join(snap.snapshotDir, `${snap.id}.qcow2`);
  return {
    final,
    partial: `${final}.partial`,
    stage: `${final}.stage`,
    manifest: `${final}.json`,
    manifestTmp: `${final}.json.partial`,
  };
}

export async function refuseExisting(files: SnapshotFiles): Promise<void> {
  let exists: boolean;
  try {
    exists = await isFile(files.final);
  } catch (e) {
    throw stepError(e, 'hypervisor_error', 'stat snapshot');
  }
  if (exists) throw hvError('snapshot_exists', `snapshot file already exists: ${files.final}`);
}

export async function removeLeftovers(files: SnapshotFiles): Promise<void> {
  await removeIfExists(files.partial);
  await removeIfExists(files.stage);
  await removeIfExists(files.manifestTmp);
  await removeIfExists(files.manifest); // no snapshot file: an orphan of an interrupted create
}

/** The snapshot's manifest, refused unless it describes this snapshot file and its byte length. */
export async function readSnapshotManifest(
  snap: SnapshotRef,
  files: SnapshotFiles,
): Promise<SnapshotManifest> {
  const manifest = await readManifest(files.manifest);
  if (!manifest) throw hvError('verification_failed', `missing or invalid manifest ${files.manifest}`);
  if (manifest.snapshotId !== snap.id || manifest.file !== path.basename(files.final)) {
    throw hvError('verification_failed', `manifest ${files.manifest} describes another snapshot`);
  }
  const bytes = await fileSize(files.final);
  if (bytes !== manifest.bytes) {
    throw hvError(
      'verification_failed',
      `snapshot ${files.final} is ${bytes} bytes, manifest says ${manifest.bytes}`,
    );
  }
  return manifest;
}
