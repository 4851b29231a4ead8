import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { DISK_SIDE_FILE_SUFFIXES } from '../host-paths';
import { requireDiskInRoots } from './disk-roots';
import { stepError } from './errors';
import { fsyncDir, removeIfExists } from './files';

/**
 * What interrupted operations left behind (see `cleanupInterrupted` in hypervisor-driver.ts): partial
 * snapshot files and manifests in `snapshotDir`, side files next to the given disks (only those inside
 * the node's image roots). Returns the ids of the snapshots whose partial files were removed.
 */
export async function removeInterruptedLeftovers(
  snapshotDir: string,
  diskPaths: readonly string[],
  imageRoots: readonly string[],
): Promise<{ partialSnapshotIds: number[] }> {
  const ids = new Set<number>();
  try {
    let names: string[] = [];
    try {
      names = await fsp.readdir(snapshotDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const present = new Set(names);
    for (const name of names) {
      const partial = /^(\d+)\.qcow2\.(partial|stage|json\.partial)$/.exec(name);
      const manifest = /^(\d+)\.qcow2\.json$/.exec(name);
      if (partial) {
        await removeIfExists(path.join(snapshotDir, name));
        ids.add(Number(partial[1]));
      } else if (manifest && !present.has(`${manifest[1]}.qcow2`)) {
        // A manifest whose snapshot never got renamed into place: the create was interrupted.
        await removeIfExists(path.join(snapshotDir, name));
        ids.add(Number(manifest[1]));
      }
    }
    for (const disk of diskPaths) {
      // Never remove anything outside the node's image roots, whatever the database says.
      if (
        !(await requireDiskInRoots(disk, imageRoots).then(
          () => true,
          () => false,
        ))
      )
        continue;
      // Side files of a disk (a second name of one among them), never the disk itself.
      for (const suffix of Object.values(DISK_SIDE_FILE_SUFFIXES)) await removeIfExists(`${disk}${suffix}`);
    }
    if (names.length > 0) await fsyncDir(snapshotDir).catch(() => undefined);
  } catch (e) {
    throw stepError(e, 'hypervisor_error', 'cleanup interrupted');
  }
  return { partialSnapshotIds: [...ids].sort((a, b) => a - b) };
}
